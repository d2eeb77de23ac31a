"""The notify HTTP API (delivery state of a referral's notifications)."""

from __future__ import annotations

import uuid

from aiohttp import web

from schemas.api import NotificationList, NotificationOut
from services.notify import store
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.http import json_response
from services.runtime.openapi import Operation, Query, register
from services.runtime.problem import Problem


async def list_notifications(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    try:
        referral_id = uuid.UUID(request.query.get("referral_id", ""))
    except ValueError as exc:
        raise Problem(400, "Bad query", "referral_id (a UUID) is required.") from exc
    rows = await store.for_referral(request.app[RUNTIME].pool, referral_id, principal.org)
    return json_response(NotificationList(
        items=[NotificationOut.model_validate(dict(r)) for r in rows]))


OPERATIONS = [
    Operation("GET", "/v1/notifications", list_notifications,
              "How your organisation was told of a referral", "Notifications",
              "notification:read", response=NotificationList, query=(
                  Query("referral_id", "The referral (required)",
                        {"type": "string", "format": "uuid"},
                        example="0e4d3c2b-1a2b-4c3d-8e9f-0a1b2c3d4e5f"),), errors=(400,)),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
