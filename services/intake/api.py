"""The intake HTTP API: thin handlers over the store and the domain."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp import web

from schemas.api import IntakeIn
from schemas.events import INTAKE_RECORDED
from services.intake import domain, store
from services.runtime import idempotency, outbox
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.events import new_event
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.problem import Problem

SOURCE = "/relais/intake"


async def post_intake(request: web.Request) -> web.Response:
    principal = await authenticate(request, "intake:write")
    key = idempotency.idempotency_key(request)
    payload = await read_json(request)
    body = parse(IntakeIn, payload)

    async def record(conn: asyncpg.Connection) -> idempotency.Answer:
        person_id = body.person_id or uuid.uuid4()
        visits = await store.visits_so_far(conn, person_id) if body.person_id else 0
        if body.person_id and visits == 0:
            raise Problem(422, "Unknown person", "No intake was recorded for this person_id.")
        row = await store.insert_intake(conn, uuid.uuid4(), principal.org, person_id, body,
                                        visits + 1)
        intake = domain.intake_out(row)
        event = new_event(INTAKE_RECORDED, SOURCE, str(person_id), domain.recorded_event(intake))
        await outbox.add(conn, store.SCHEMA, [event])
        return idempotency.Answer(201, intake.model_dump(mode="json"),
                                  {"Location": f"/v1/intakes/{intake.id}"})

    return await idempotency.run_once(request.app[RUNTIME].pool, store.SCHEMA, principal.org,
                                      "intake", key, payload, record)


async def get_intake(request: web.Request) -> web.Response:
    principal = await authenticate(request, "intake:read")
    row = await store.get_intake(request.app[RUNTIME].pool, path_uuid(request), principal.org)
    if row is None:
        raise Problem(404, "Not found", "No such intake.")
    return json_response(domain.intake_out(row))


def routes(app: web.Application) -> None:
    app.router.add_post("/v1/intakes", post_intake)
    app.router.add_get("/v1/intakes/{id}", get_intake)
