"""The referral HTTP API (read side, for now)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from schemas.api import ReferralOut
from services.referral import store
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.http import json_response, path_uuid
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
    return web.json_response(
        {"items": [referral_out(r).model_dump(mode="json") for r in rows]}
    )


def routes(app: web.Application) -> None:
    app.router.add_get("/v1/referrals", list_referrals)
    app.router.add_get("/v1/referrals/{id}", get_referral)
