"""The consent HTTP API."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp import web

from schemas.api import ConsentIn
from schemas.events import CONSENT_GRANTED
from services.consent import domain, store
from services.runtime import idempotency, outbox
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.events import new_event
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.problem import Problem

SOURCE = "/relais/consent"


async def post_consent(request: web.Request) -> web.Response:
    principal = await authenticate(request, "consent:write")
    key = idempotency.idempotency_key(request)
    payload = await read_json(request)
    body = parse(ConsentIn, payload)

    async def record(conn: asyncpg.Connection) -> idempotency.Answer:
        consent = domain.consent_out(
            await store.insert_consent(conn, uuid.uuid4(), principal.org, body)
        )
        event = new_event(CONSENT_GRANTED, SOURCE, str(consent.person_id),
                          domain.granted_event(consent))
        await outbox.add(conn, store.SCHEMA, [event])
        return idempotency.Answer(201, consent.model_dump(mode="json"),
                                  {"Location": f"/v1/consents/{consent.id}"})

    return await idempotency.run_once(request.app[RUNTIME].pool, store.SCHEMA, principal.org,
                                      "consent", key, payload, record)


async def get_consent(request: web.Request) -> web.Response:
    principal = await authenticate(request, "consent:read")
    row = await store.get_consent(request.app[RUNTIME].pool, path_uuid(request), principal.org)
    if row is None:
        raise Problem(404, "Not found", "No such consent.")
    return json_response(domain.consent_out(row))


def routes(app: web.Application) -> None:
    app.router.add_post("/v1/consents", post_consent)
    app.router.add_get("/v1/consents/{id}", get_consent)
