"""The notify HTTP API (delivery state of a referral's notifications)."""

from __future__ import annotations

import uuid

from aiohttp import web

from schemas.api import NotificationOut
from services.notify import store
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.problem import Problem


async def list_notifications(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    try:
        referral_id = uuid.UUID(request.query.get("referral_id", ""))
    except ValueError as exc:
        raise Problem(400, "Bad query", "referral_id (a UUID) is required.") from exc
    rows = await store.for_referral(request.app[RUNTIME].pool, referral_id, principal.org)
    items = [NotificationOut.model_validate(dict(r)).model_dump(mode="json") for r in rows]
    return web.json_response({"items": items})


def routes(app: web.Application) -> None:
    app.router.add_get("/v1/notifications", list_notifications)
