"""The consent HTTP API."""

from __future__ import annotations

import uuid

import asyncpg
from aiohttp import web

from schemas.api import ConsentIn, ConsentOut
from schemas.events import CONSENT_GRANTED
from services.consent import domain, store
from services.runtime import idempotency, outbox
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.events import new_event
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.openapi import Operation, register
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


OPERATIONS = [
    Operation("POST", "/v1/consents", post_consent, "Record a person's consent", "Consents",
              "consent:write", ConsentIn, ConsentOut, 201, {
                  "person_id": "5d0c1f8e-2b7a-4c3d-9e61-3a8f0b2c4d5e",
                  "purposes": ["referral_partner", "share_dossier"],
                  "recipients": ["mission-locale"],
                  "categories": ["identity", "contact", "situation", "needs"],
                  "notice_version": "2026-01", "method": "signed_screen",
                  "captured_by": "conseillere-camion", "captured_at_site": "qpv-etouvie"},
              idempotency_key=True),
    Operation("GET", "/v1/consents/{id}", get_consent, "A consent your organisation recorded",
              "Consents", "consent:read", response=ConsentOut,
              path_example={"id": "9a7e3c2b-1d4f-4e8a-b6c5-0f2e1d3c4b5a"}, errors=(404,)),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
