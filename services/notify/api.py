"""The notify HTTP API: how a referral's notifications went, who is told how, webhook
endpoints and their deliveries, and the live inbox (JSON and Server-Sent Events)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
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
from services.notify import configuration, domain, handlers, live, store
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import VERIFIER, authenticate
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.logging import get_logger
from services.runtime.openapi import ORGANISATION, Operation, Query, register
from services.runtime.problem import Problem
from services.runtime.waiting import wait_for_event
from services.runtime.web import bearer

log = get_logger("relais.notify.inbox")
EXAMPLE_ID = "0e4d3c2b-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
INBOX_PAGE = 100
HEARTBEAT = 15.0
ALIVE_CHECK = 1.0
PAGE_CLOCK_MARGIN = timedelta(seconds=2)
"""The page's time is the server's, an item's the database's: a little earlier, so that an
item is never missed (one seen twice only redraws the list)."""
"""Seconds between looks at whether a quiet stream's client is still there."""
STREAM_RETRY_AFTER = 10


async def list_notifications(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    try:
        referral_id = uuid.UUID(request.query.get("referral_id", ""))
    except ValueError as exc:
        raise Problem(400, "Bad query", "referral_id (a UUID) is required.") from exc
    rows = await store.for_referral(request.app[RUNTIME].pool, referral_id, principal.org)
    return json_response(NotificationList(
        items=[NotificationOut.model_validate(dict(r)) for r in rows]))


async def held(request: web.Request) -> web.Response:
    """Every notification about the person's referrals: for their access request
    (`GET /v1/people/{id}/export` gathers it)."""
    await authenticate(request, "people:export")
    try:
        person_id = uuid.UUID(request.query.get("person_id", ""))
    except ValueError as exc:
        raise Problem(400, "Bad query", "person_id (a UUID) is required.") from exc
    rows = await store.about_person(request.app[RUNTIME].pool, person_id)
    return json_response(NotificationList(
        items=[NotificationOut.model_validate(dict(r)) for r in rows]))


# --- recipients ------------------------------------------------------------------------------


def recipient_out(row: Any) -> RecipientOut:
    return RecipientOut.model_validate(dict(row))


async def get_recipient(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    org = request.match_info["org"]
    if not configuration.may_read(principal, org):
        raise Problem(403, "Forbidden", "Your organisation's settings only.")
    row = await store.recipient(request.app[RUNTIME].pool, org)
    if row is None:
        raise Problem(404, "Not found", f"No organisation '{org}' in the directory.")
    return json_response(recipient_out(row))


async def put_recipient(request: web.Request) -> web.Response:
    principal = await authenticate(request, configuration.SETS_RECIPIENTS)
    body = parse(RecipientIn, await read_json(request))
    runtime = request.app[RUNTIME]
    try:
        row, notice = await configuration.set_recipient(runtime.pool, request.match_info["org"],
                                                        body, principal.who)
    except configuration.MutedRefused as exc:
        raise Problem(422, "Invalid request", "muted: unknown kinds "
                      f"{exc.unknown} or kinds that cannot be muted {exc.mandatory}.") from exc
    if row is None:
        raise Problem(404, "Not found", "No such organisation in the directory.")
    handlers.tell_later(runtime.settings, notice)
    return json_response(recipient_out(row))


# --- webhooks --------------------------------------------------------------------------------


async def post_endpoint(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:write")
    body = parse(EndpointIn, await read_json(request))
    runtime = request.app[RUNTIME]
    try:
        row, secret = await configuration.add_endpoint(
            runtime.pool, runtime.settings.webhook_allowed_networks, principal.org, body)
    except configuration.EndpointRefused as exc:
        raise Problem(422, "Endpoint refused", exc.reason) from exc
    except configuration.UnknownKinds as exc:
        raise Problem(422, "Invalid request", f"Unknown kinds: {', '.join(exc.kinds)}.") from exc
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
        delivered = await store.mark_inbox_delivered(conn, [r["id"] for r in rows])
        await handlers.emit(conn, [handlers.outcome_event(row, True) for row in delivered])


def _sequence(name: str, value: str | None) -> int:
    after = domain.sequence_number(value)
    if after is None:
        raise Problem(400, "Bad query", f"{name} is a sequence number (0 to {domain.MAX_SEQ}).")
    return after


async def get_inbox(request: web.Request) -> web.Response:
    principal = await authenticate(request, "notification:read")
    after = _sequence("after", request.query.get("after"))
    pool = request.app[RUNTIME].pool
    rows = await store.inbox(pool, principal.org, after, INBOX_PAGE)
    await handed(pool, rows)
    return json_response(InboxPage(items=[inbox_item(r) for r in rows]))


async def inbox_stream(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: what is in the inbox after Last-Event-ID, then each new item as
    it arrives (a comment every 15 s keeps the connection open). The process's one database
    listener wakes the stream; a client and its organisation hold a few streams at most."""
    principal = await authenticate(request, "notification:read")
    header = request.headers.get("Last-Event-ID")
    after = _sequence("Last-Event-ID" if header else "after",
                      header or request.query.get("after"))
    settings = request.app[RUNTIME].settings
    hub, pool = request.app[live.HUB], request.app[RUNTIME].pool
    try:
        stream = await hub.open(pool, principal.org, principal.client_id,
                                settings.sse_max_per_client, settings.sse_max_per_org)
    except live.TooManyStreams as exc:
        raise Problem(429, "Too many streams", str(exc),
                      headers={"Retry-After": str(STREAM_RETRY_AFTER)}) from exc
    try:
        return await _stream(request, hub, stream, after, bearer(request))
    finally:
        await hub.close(pool, stream)


@pages.page
async def page_stream(request: web.Request) -> web.StreamResponse:
    """The inbox page's live list (`static/inbox.js`): the same stream, for the signed-in
    person's session, from the moment the page was drawn (`depuis`, a Unix time)."""
    principal = await pages.require(request, "notification:read")
    try:
        since = datetime.fromtimestamp(float(request.query["depuis"]), UTC) - PAGE_CLOCK_MARGIN
    except (KeyError, ValueError, OverflowError, OSError) as exc:
        raise pages.PageError(400, "Adresse incomplète", "Rechargez la page.") from exc
    header = request.headers.get("Last-Event-ID")
    pool = request.app[RUNTIME].pool
    after = domain.sequence_number(header) if header else await store.inbox_seq_before(
        pool, principal.org, since)
    settings = request.app[RUNTIME].settings
    hub = request.app[live.HUB]
    try:
        stream = await hub.open(pool, principal.org, principal.client_id,
                                settings.sse_max_per_client, settings.sse_max_per_org,
                                page=True)
    except live.TooManyStreams as exc:
        raise pages.PageError(429, "Trop de pages ouvertes", "Fermez les onglets de Relais "
                              "dont vous n'avez plus besoin.") from exc
    try:
        return await _stream(request, hub, stream, after or 0,
                             pages.session_token(request) or "")
    finally:
        await hub.close(pool, stream)


async def _stream(request: web.Request, hub: live.InboxHub, stream: live.Stream,
                  after: int, token: str) -> web.StreamResponse:
    """The stream, checking again at every wake the token it was opened with."""
    pool = request.app[RUNTIME].pool
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        while not hub.stopping:
            stream.wake.clear()
            # checked again at every wake and heartbeat: a revoked client, an ended session
            # or an expired token ends the stream (cached, so this costs a lookup)
            await request.app[VERIFIER].verify(token)
            rows = await store.inbox(pool, stream.org, after, INBOX_PAGE)
            for row in rows:
                data = inbox_item(row).model_dump_json()
                await response.write(
                    f"id: {row['seq']}\nevent: {row['kind']}\ndata: {data}\n\n".encode())
                after = row["seq"]
            await handed(pool, rows)
            if len(rows) < INBOX_PAGE:
                await _quiet(request, response, stream)
    except ConnectionError:  # the client closed the stream: its normal end (reset between
        # writes, or "Connection lost" while a write waited for the client to read)
        if not _gone(request):  # another connection (the database's) failed
            raise
        log.debug("inbox_stream_closed", org=stream.org, client_id=stream.client_id)
    except Problem:  # its token is no longer valid: the stream ends
        log.info("inbox_stream_ended", org=stream.org, client_id=stream.client_id,
                 reason="token no longer valid")
    return response


async def _quiet(request: web.Request, response: web.StreamResponse,
                 stream: live.Stream) -> None:
    """Until the stream is woken, or HEARTBEAT seconds (then a keep-alive comment, and the
    caller looks in the inbox anyway). ConnectionResetError as soon as the client has gone,
    which between writes only the transport shows."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEARTBEAT
    while not await wait_for_event(stream.wake, min(ALIVE_CHECK,
                                                    max(0.0, deadline - loop.time()))):
        if _gone(request):
            raise ConnectionResetError("the client closed the stream")
        if loop.time() >= deadline:
            await response.write(b": keep-alive\n\n")
            return


def _gone(request: web.Request) -> bool:
    """Whether the client has closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


OPERATIONS = [
    Operation("GET", "/v1/notifications", list_notifications,
              "How a referral's recipients and sender were told", "Notifications",
              "notification:read", response=NotificationList, query=(
                  Query("referral_id", "The referral (required)",
                        {"type": "string", "format": "uuid"}, example=EXAMPLE_ID),),
              errors=(400,)),
    Operation("GET", "/v1/notifications:held", held,
              "Every notification about a person's referrals (their access request)",
              "Notifications", "people:export", response=NotificationList, query=(
                  Query("person_id", "The person (required)",
                        {"type": "string", "format": "uuid"},
                        example="5d0c1f8e-2b7a-4c3d-9e61-3a8f0b2c4d5e"),), errors=(400,)),
    Operation("GET", "/v1/recipients/{org}", get_recipient,
              "How an organisation is told (channels, addresses, muted kinds)",
              "Notifications", "notification:read", response=RecipientOut,
              path_example={"org": "equipe-aller-vers"},
              path_params={"org": ORGANISATION}, errors=(403, 404)),
    Operation("PUT", "/v1/recipients/{org}", put_recipient,
              "Set how an organisation is told", "Notifications", "directory:write",
              request=RecipientIn, response=RecipientOut,
              path_example={"org": "mission-locale"},
              path_params={"org": ORGANISATION}, errors=(404,), example={
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
                  Query("after", "Only those after this seq", {
                      "type": "integer", "minimum": 0, "maximum": domain.MAX_SEQ}),),
              errors=(400,)),
    Operation("GET", "/v1/inbox/stream", inbox_stream,
              "The inbox, live (Server-Sent Events; resume with Last-Event-ID)", "Inbox",
              "notification:read", errors=(400,), response_media="text/event-stream"),
]


async def link_standing(request: web.Request) -> web.Response:
    """For the auth service (scope `links:check`, which no client can be given) and for the
    link's own session: the email a magic link came with, and whether its address still
    receives its organisation's referrals. Not a partner's operation: not in the OpenAPI
    document."""
    principal = await authenticate(request, None, link=True)
    link_id = path_uuid(request)
    if "links:check" not in principal.scopes and principal.client_id != f"link:{link_id}":
        raise Problem(403, "Forbidden", "For the auth service and the link's own session.")
    pool = request.app[RUNTIME].pool
    row = await store.email_notification(pool, link_id)
    if row is None or row["kind"] not in domain.LINKED:
        raise Problem(404, "Not found", "No email with a magic link has this id.")
    recipient = await store.recipient(pool, row["recipient_org"])
    addresses = {a.lower() for a in [recipient["email"], *recipient["counsellors"]]} \
        if recipient is not None else set()
    listed = row["address"].lower() in addresses and recipient is not None \
        and domain.gets_magic_link(row["address"], recipient["directory_email"])
    return web.json_response({
        "org": row["recipient_org"], "referral_id": str(row["referral_id"]),
        "address": row["address"], "listed": listed})


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
    live.install(app)
    app.router.add_get("/internal/links/{id}", link_standing)
    app.router.add_get("/flux/orientations", page_stream)


