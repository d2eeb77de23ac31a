"""The notify HTTP API: how a referral's notifications went, who is told how, webhook
endpoints and their deliveries, and the live inbox (JSON and Server-Sent Events)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from aiohttp import web

from schemas.api import (
    DeliveryList,
    DeliveryOut,
    EndpointIn,
    EndpointList,
    EndpointOut,
    InboxItem,
    InboxPage,
    NotificationList,
    NotificationOut,
    RecipientIn,
    RecipientOut,
)
from services.notify import domain, handlers, store
from services.runtime import db
from services.runtime.app import RUNTIME
from services.runtime.auth import authenticate
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.openapi import Operation, Query, register
from services.runtime.problem import Problem
from services.runtime.waiting import wait_for_event

EXAMPLE_ID = "0e4d3c2b-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
INBOX_PAGE = 100
HEARTBEAT = 15.0


async def list_notifications(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    try:
        referral_id = uuid.UUID(request.query.get("referral_id", ""))
    except ValueError as exc:
        raise Problem(400, "Bad query", "referral_id (a UUID) is required.") from exc
    rows = await store.for_referral(request.app[RUNTIME].pool, referral_id, principal.org)
    return json_response(NotificationList(
        items=[NotificationOut.model_validate(dict(r)) for r in rows]))


# --- recipients ------------------------------------------------------------------------------


def recipient_out(row: Any) -> RecipientOut:
    return RecipientOut.model_validate(dict(row))


async def get_recipient(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    org = request.match_info["org"]
    if org != principal.org and "directory:write" not in principal.scopes:
        raise Problem(403, "Forbidden", "Your organisation's settings only.")
    row = await store.recipient(request.app[RUNTIME].pool, org)
    if row is None:
        raise Problem(404, "Not found", f"No organisation '{org}' in the directory.")
    return json_response(recipient_out(row))


async def put_recipient(request: web.Request) -> web.Response:
    await authenticate(request, "directory:write")
    body = parse(RecipientIn, await read_json(request))
    unknown = sorted(set(body.muted) - {str(k) for k in domain.Kind})
    mandatory = sorted(set(body.muted) & set(domain.MANDATORY))
    if unknown or mandatory:
        raise Problem(422, "Invalid request", "muted: unknown kinds "
                      f"{unknown} or kinds that cannot be muted {mandatory}.")
    row = await store.set_recipient(
        request.app[RUNTIME].pool, request.match_info["org"], str(body.email),
        [str(c) for c in body.counsellors], sorted(set(body.channels)), sorted(set(body.muted)))
    if row is None:
        raise Problem(404, "Not found", "No such organisation in the directory.")
    return json_response(recipient_out(row))


# --- webhooks --------------------------------------------------------------------------------


async def post_endpoint(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:write")
    body = parse(EndpointIn, await read_json(request))
    runtime = request.app[RUNTIME]
    refused = await handlers.refused_host(body.url, runtime.settings.webhook_allowed_networks,
                                          unresolved_ok=True)
    if refused:
        raise Problem(422, "Endpoint refused", refused)
    unknown = sorted(set(body.kinds) - {str(k) for k in domain.Kind})
    if unknown:
        raise Problem(422, "Invalid request", f"Unknown kinds: {', '.join(unknown)}.")
    secret = domain.new_secret()
    row = await store.insert_endpoint(runtime.pool, uuid.uuid4(), principal.org, body.url,
                                      secret, sorted(set(body.kinds)))
    out = EndpointOut.model_validate(dict(row) | {"secret": secret})
    return json_response(out, status=201, headers={
        "Location": f"/v1/webhooks/endpoints/{row['id']}"})


async def list_endpoints(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    rows = await store.endpoints(request.app[RUNTIME].pool, principal.org)
    return json_response(EndpointList(items=[
        EndpointOut.model_validate(dict(r) | {"secret": None}) for r in rows]))


async def delete_endpoint(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:write")
    if not await store.deactivate_endpoint(request.app[RUNTIME].pool, path_uuid(request),
                                           principal.org):
        raise Problem(404, "Not found", "No such endpoint of your organisation.")
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    try:
        endpoint = request.query.get("endpoint_id")
        endpoint_id = uuid.UUID(endpoint) if endpoint else None
        limit = int(request.query.get("limit", "100"))
    except ValueError as exc:
        raise Problem(400, "Bad query", "endpoint_id is a UUID, limit a number.") from exc
    if not 1 <= limit <= 500:
        raise Problem(400, "Bad query", "limit is between 1 and 500.")
    rows = await store.deliveries(request.app[RUNTIME].pool, principal.org, endpoint_id, limit)
    return json_response(DeliveryList(items=[DeliveryOut.model_validate(dict(r))
                                             for r in rows]))


async def replay_delivery(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:write")
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        notification_id = await store.replay(conn, path_uuid(request), principal.org)
    if notification_id is None:
        raise Problem(404, "Not found", "No such delivery to an active endpoint of yours.")
    return web.json_response({"notification_id": str(notification_id), "status": "pending"},
                             status=202)


# --- the inbox -------------------------------------------------------------------------------


def inbox_item(row: Any) -> InboxItem:
    return InboxItem(seq=row["seq"], id=row["id"], kind=row["kind"],
                     referral_id=row["referral_id"], subject=row["subject"], body=row["body"],
                     link=row["payload"]["link"], created_at=row["created_at"])


async def handed(pool: asyncpg.Pool, rows: list[Any]) -> None:
    """The organisation has them now: delivered (once), with the event."""
    async with pool.acquire() as conn, conn.transaction():
        for row in await store.mark_inbox_delivered(conn, [r["id"] for r in rows]):
            await handlers.emit_outcome(conn, row, True)


def _after(request: web.Request, name: str, value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError as exc:
        raise Problem(400, "Bad query", f"{name} is a sequence number.") from exc


async def get_inbox(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    after = _after(request, "after", request.query.get("after"))
    pool = request.app[RUNTIME].pool
    rows = await store.inbox(pool, principal.org, after, INBOX_PAGE)
    await handed(pool, rows)
    return json_response(InboxPage(items=[inbox_item(r) for r in rows]))


async def inbox_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: what is in the inbox after Last-Event-ID, then each new item as
    it arrives (a comment every 15 s keeps the connection open)."""
    principal = await authenticate(request, "notification:read")
    after = _after(request, "Last-Event-ID", request.headers.get("Last-Event-ID")
                   or request.query.get("after"))
    runtime = request.app[RUNTIME]
    wake = asyncio.Event()
    listener = await db.connect(runtime.dsn)
    try:
        await listener.add_listener(
            store.INBOX_CHANNEL, lambda *args: wake.set() if args[3] == principal.org else None)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        while True:
            wake.clear()
            rows = await store.inbox(runtime.pool, principal.org, after, INBOX_PAGE)
            for row in rows:
                data = inbox_item(row).model_dump_json()
                await response.write(
                    f"id: {row['seq']}\nevent: {row['kind']}\ndata: {data}\n\n".encode())
                after = row["seq"]
            await handed(runtime.pool, rows)
            if len(rows) == INBOX_PAGE:
                continue
            if not await wait_for_event(wake, HEARTBEAT):
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    finally:
        await listener.close()


OPERATIONS = [
    Operation("GET", "/v1/notifications", list_notifications,
              "How a referral's recipients and sender were told", "Notifications",
              "notification:read", response=NotificationList, query=(
                  Query("referral_id", "The referral (required)",
                        {"type": "string", "format": "uuid"}, example=EXAMPLE_ID),),
              errors=(400,)),
    Operation("GET", "/v1/recipients/{org}", get_recipient,
              "How an organisation is told (channels, addresses, muted kinds)",
              "Notifications", "notification:read", response=RecipientOut,
              path_example={"org": "equipe-aller-vers"}, errors=(403, 404)),
    Operation("PUT", "/v1/recipients/{org}", put_recipient,
              "Set how an organisation is told", "Notifications", "directory:write",
              request=RecipientIn, response=RecipientOut,
              path_example={"org": "mission-locale"}, errors=(404,), example={
                  "email": "accueil@mission-locale.example.org",
                  "counsellors": ["c.dupont@mission-locale.example.org"],
                  "channels": ["email", "inbox"], "muted": ["reminder"]}),
    Operation("POST", "/v1/webhooks/endpoints", post_endpoint,
              "Register a webhook endpoint (Standard Webhooks signatures)", "Webhooks",
              "notification:write", request=EndpointIn, response=EndpointOut, status=201,
              errors=(422,), example={"url": "https://example.org/relais/webhooks",
                                      "kinds": ["new_referral", "stop_processing"]}),
    Operation("GET", "/v1/webhooks/endpoints", list_endpoints,
              "Your organisation's webhook endpoints", "Webhooks", "notification:read",
              response=EndpointList),
    Operation("DELETE", "/v1/webhooks/endpoints/{id}", delete_endpoint,
              "Stop sending to an endpoint", "Webhooks", "notification:write", status=204,
              path_example={"id": EXAMPLE_ID}, errors=(404,)),
    Operation("GET", "/v1/webhooks/deliveries", list_deliveries,
              "Each attempt to deliver to your endpoints", "Webhooks", "notification:read",
              response=DeliveryList, query=(
                  Query("endpoint_id", "Only this endpoint", {"type": "string",
                                                              "format": "uuid"}),
                  Query("limit", "At most (1-500, 100 by default)",
                        {"type": "integer", "minimum": 1, "maximum": 500})), errors=(400,)),
    Operation("POST", "/v1/webhooks/deliveries/{id}/replay", replay_delivery,
              "Send a delivery's message again now", "Webhooks", "notification:write",
              status=202, path_example={"id": EXAMPLE_ID}, errors=(404,)),
    Operation("GET", "/v1/inbox", get_inbox, "Your organisation's notifications", "Inbox",
              "notification:read", response=InboxPage, query=(
                  Query("after", "Only those after this seq", {"type": "integer"}),),
              errors=(400,)),
    Operation("GET", "/v1/inbox/stream", inbox_stream,
              "The inbox, live (Server-Sent Events; resume with Last-Event-ID)", "Inbox",
              "notification:read", errors=(400,), response_media="text/event-stream"),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)


