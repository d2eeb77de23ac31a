"""The referral HTTP API (read side, for now)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from schemas.api import ReferralList, ReferralOut
from services.referral import store
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.http import json_response, path_uuid
from services.runtime.openapi import Operation, Query, register
from services.runtime.problem import Problem


def referral_out(row: Any) -> ReferralOut:
    return ReferralOut.model_validate(dict(row))


async def get_referral(request: web.Request) -> web.Response:
    principal = await authenticate(request, "referral:read")
    row = await store.get_referral(request.app[RUNTIME].pool, path_uuid(request), principal.org)
    if row is None:
        raise Problem(404, "Not found", "No such referral.")
    return json_response(referral_out(row))


async def list_referrals(request: web.Request) -> web.Response:
    principal = await authenticate(request, "referral:read")
    intake = request.query.get("intake_id")
    try:
        intake_id = uuid.UUID(intake) if intake else None
    except ValueError as exc:
        raise Problem(400, "Bad query", "intake_id must be a UUID.") from exc
    rows = await store.list_referrals(request.app[RUNTIME].pool, principal.org, intake_id, 100)
    return json_response(ReferralList(items=[referral_out(r) for r in rows]))


OPERATIONS = [
    Operation("GET", "/v1/referrals", list_referrals,
              "Referrals your organisation sent or received", "Referrals", "referral:read",
              response=ReferralList, query=(
                  Query("intake_id", "Only the referral of this intake",
                        {"type": "string", "format": "uuid"}),), errors=(400,)),
    Operation("GET", "/v1/referrals/{id}", get_referral, "A referral, with its explanation",
              "Referrals", "referral:read", response=ReferralOut,
              path_example={"id": "0e4d3c2b-1a2b-4c3d-8e9f-0a1b2c3d4e5f"}, errors=(404,)),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
