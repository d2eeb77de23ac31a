"""The consent HTTP API."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from schemas.api import (
    AccessLog,
    AuditKeys,
    CheckpointList,
    CheckReason,
    ConsentCheck,
    ConsentIn,
    ConsentList,
    ConsentOut,
    NoticeIn,
    NoticeOut,
    ProcessingRegister,
    TrailExtract,
    WithdrawIn,
)
from schemas.events import (
    CONSENT_GRANTED,
    CONSENT_WITHDRAWN,
)
from services.consent import art30, audit, domain, lifecycle, recipients, store, trail_store
from services.directory import Directory
from services.runtime import access, idempotency, peers
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.events import new_event
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.openapi import Operation, Query, register
from services.runtime.problem import Problem
from services.runtime.web import html_headers

SOURCE = "/relais/consent"


OPERATION = "consent"
UNKNOWN_RECIPIENT = "unknown_recipient"


def restricted() -> Problem:
    return Problem(409, "Processing restricted", "At the person's request, their data is not "
                   "processed for now (restriction or objection): no consent is recorded "
                   "until the data-protection officer lifts it.")


async def answer_consent(conn: asyncpg.Connection, org: str,
                         body: ConsentIn) -> idempotency.Answer:
    """The consent, its event (written with the key's row), its trail entry and its history
    line, in one transaction."""
    is_restricted, notice_hash = await store.grant_checks(conn, body.person_id,
                                                          body.notice_version)
    if is_restricted:
        raise restricted()
    if notice_hash is None:
        raise Problem(422, "Invalid request", "1 invalid field(s)",
                      type_="https://relais.example/problems/validation", errors=[
                          {"field": "notice_version", "code": "unknown_notice",
                           "message": f"no notice '{body.notice_version}': register it "
                                      "with POST /v1/notices"}])
    consent = domain.consent_out(
        await store.insert_consent(conn, uuid.uuid4(), org, body, notice_hash))
    granted = domain.granted_event(consent)

    async def append(conn: asyncpg.Connection) -> None:
        await trail_store.append(conn, [("consent.granted", consent.person_id,
                                         granted.model_dump(mode="json"))])

    # The trail's entry is appended as the transaction commits (consent migration 013).
    return idempotency.Answer(201, consent.model_dump(mode="json"),
                              {"Location": f"/v1/consents/{consent.id}"}, last=append,
                              events=[new_event(CONSENT_GRANTED, SOURCE,
                                                str(consent.person_id), granted)])


async def may_record(request: web.Request, body: ConsentIn) -> None:
    """Only an organisation that met the person records their consent (the rule of
    services/runtime/access.py, asked of the intake service, which knows who met whom, as
    the caller)."""
    standing = await peers.standing(request, body.person_id)
    if standing is None:
        raise Problem(422, "Unknown person", "1 invalid field(s)",
                      type_="https://relais.example/problems/validation", errors=[{
                          "field": "person_id", "code": "unknown_person",
                          "message": "no person with this id met by your organisation: "
                          "record the contact first (POST /v1/intakes)"}])
    if not standing.met:
        raise Problem(403, "Forbidden", "Only an organisation that met the person records "
                      "their consent; a recipient cannot grant itself anything.")
    if standing.restricted:  # asked of the intake service, which holds it: no window
        raise restricted()
    unknown = await request.app[recipients.KNOWN].unknown(request, body.recipients)
    if unknown:
        raise UnknownRecipients(unknown)


class UnknownRecipients(Problem):
    """A consent names organisations that are not in the directory: nothing could ever be
    handed off to them, so it is refused (422) and nothing is written."""

    def __init__(self, unknown: list[str]) -> None:
        super().__init__(
            422, "Unknown recipient", f"Not in the directory: {', '.join(unknown)}.",
            type_="https://relais.example/problems/validation", errors=[{
                "field": "recipients", "code": UNKNOWN_RECIPIENT,
                "message": f"'{name}' is not an organisation of the directory (GET "
                           "/v1/directory lists them): nothing could be handed off to it"}
                for name in unknown])
        self.recipients = unknown


async def record_once(request: web.Request, org: str, key: str, payload: object,
                      body: ConsentIn) -> tuple[ConsentOut, bool]:
    """A consent recorded once per (organisation, key), as POST /v1/consents does: the
    consent (the first one for a key used again with the same payload) and whether it is a
    replay. A key used again with another payload is a 422 problem; nothing is written."""
    await may_record(request, body)

    async def work(conn: asyncpg.Connection) -> idempotency.Answer:
        return await answer_consent(conn, org, body)

    answer, replayed = await idempotency.once(request.app[RUNTIME].pool, store.SCHEMA, org,
                                              OPERATION, key, payload, work)
    return ConsentOut.model_validate(answer.body), replayed


async def post_consent(request: web.Request) -> web.Response:
    async def record(conn: asyncpg.Connection, principal: Principal,
                     body: ConsentIn) -> idempotency.Answer:
        return await answer_consent(conn, principal.org, body)

    async def check(_principal: Principal, body: ConsentIn) -> None:
        await may_record(request, body)

    return await idempotency.create(request, "consent:write", ConsentIn, store.SCHEMA,
                                    OPERATION, record, check)


async def get_consent(request: web.Request) -> web.Response:
    principal = await authenticate(request, "consent:read")
    row = await store.get_consent(request.app[RUNTIME].pool, path_uuid(request), principal.org)
    if row is None:
        raise Problem(404, "Not found", "No such consent.")
    return json_response(domain.consent_out(row))


async def withdraw(request: web.Request) -> web.Response:
    """As easy as granting: the organisation that recorded the consent withdraws it whole or
    in part, as the person asks; a recipient the person tells withdraws its own part (an
    empty body from a recipient means that). See services/runtime/access.py."""
    principal = await authenticate(request, "consent:write")
    body = parse(WithdrawIn, await read_json(request))
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await store.lock_consent(conn, path_uuid(request), principal.org)
        if row is None:
            raise Problem(404, "Not found", "No such consent.")
        recipients = body.recipients
        if row["org"] != principal.org and not body.purposes and not recipients:
            recipients = [principal.org]
        refused = access.withdrawal_refused(principal.org, row["org"], recipients,
                                            [str(p) for p in body.purposes])
        if refused:
            raise Problem(403, "Forbidden", refused)
        consent = await withdraw_locked(conn, row, [str(p) for p in body.purposes],
                                        recipients, principal.org, body)
    return json_response(consent)


async def withdraw_locked(conn: asyncpg.Connection, row: Any, purposes: list[str],
                          recipients: list[str], org: str, body: WithdrawIn) -> ConsentOut:
    """The withdrawal's unit of work, in the caller's transaction, the consent locked and the
    caller allowed: these purposes and/or recipients (all of it when none is named) taken
    back, on the history, the trail and the event that stops processing everywhere. `org`
    is who records it; the person's own page records it as `person_pages.BY_THE_PERSON`."""
    if row["status"] != "active":
        raise Problem(409, "Not active", f"This consent is already {row['status']}.")
    change = domain.withdraw(row["purposes"], row["recipients"], purposes, recipients)
    if not change.removed_purposes and not change.removed_recipients:
        raise Problem(422, "Nothing to withdraw",
                      "The consent does not cover these purposes or recipients.")
    return await lifecycle.apply_change(conn, row, "withdrawn", CONSENT_WITHDRAWN, change, org,
                                        body.requested_by, body.channel)


def notice_out(row: Any) -> NoticeOut:
    return NoticeOut(version=row["version"], language=row["language"], text=row["text"],
                     hash=row["hash"].hex(), created_at=row["created_at"])


async def post_notice(request: web.Request) -> web.Response:
    """Register a notice. A version never changes: the same text again is accepted, another
    text is refused (409)."""
    principal = await authenticate(request, "consent:write")
    body = parse(NoticeIn, await read_json(request))
    digest = hashlib.sha256(body.text.encode()).digest()
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await store.insert_notice(conn, body.version, body.language, body.text, digest,
                                        principal.org)
        if row is None:
            row = await store.notice(conn, body.version)
            assert row is not None
            if row["hash"] != digest:
                raise Problem(409, "Notice exists", f"Notice {body.version} exists with "
                              "another text; give the new text a new version.")
            return json_response(notice_out(row))
    return json_response(notice_out(row), status=201)


async def get_notice(request: web.Request) -> web.Response:
    await authenticate(request, None)
    version, pool = request.match_info["version"], request.app[RUNTIME].pool
    row = await (store.current_notice(pool) if version == "current"
                 else store.notice(pool, version))
    if row is None:
        raise Problem(404, "Not found", "No such notice.")
    return json_response(notice_out(row))


async def list_consents(request: web.Request) -> web.Response:
    principal = await authenticate(request, "consent:read")
    person_id = _query_uuid(request, "person_id")
    pool = request.app[RUNTIME].pool
    rows = await store.consents_of(pool, person_id, principal.org)
    return json_response(ConsentList(items=await audit.histories(pool, rows)))


async def check(request: web.Request) -> web.Response:
    """May `recipient` receive this person for `purpose` now, and under which consent? If
    not, why: it is no organisation of the directory, or no live consent covers it."""
    principal = await authenticate(request, "consent:read")
    person_id = _query_uuid(request, "person_id")
    purpose, recipient = request.query.get("purpose"), request.query.get("recipient")
    if not purpose or not recipient:
        raise Problem(400, "Bad query", "purpose and recipient are required.")
    rows = await store.consents_of(request.app[RUNTIME].pool, person_id, principal.org)
    now = datetime.now(UTC)
    allowed = [r for r in rows if domain.covers(r, purpose, recipient, now)]
    if allowed:
        best = max(allowed, key=lambda r: r["valid_until"])
        return json_response(ConsentCheck(allowed=True, consent_id=best["id"]))
    if await request.app[recipients.KNOWN].unknown(request, [recipient]):
        return json_response(ConsentCheck(
            allowed=False, consent_id=None, reason=CheckReason.unknown_recipient,
            detail=f"'{recipient}' is not an organisation of the directory: no consent can "
                   "name it, nothing is handed off to it."))
    return json_response(ConsentCheck(
        allowed=False, consent_id=None, reason=CheckReason.not_covered,
        detail=f"No live consent of this person covers '{purpose}' for '{recipient}'."))


async def trail_extract(request: web.Request) -> web.Response:
    """A person's trail entries, each with its inclusion proof to the last signed tree head:
    an auditor checks them without the rest of the trail."""
    await authenticate(request, "audit:read")
    person_id = _query_uuid(request, "person_id")
    try:
        since, until = (datetime.fromisoformat(request.query[k]) if k in request.query else None
                        for k in ("from", "to"))
    except ValueError as exc:
        raise Problem(400, "Bad query", "from and to: ISO 8601 date-times.") from exc
    return json_response(await audit.extract(request.app[RUNTIME].pool, person_id,
                                             _aware(since), _aware(until)))


async def list_checkpoints(request: web.Request) -> web.Response:
    """The last signed tree heads, each with its consistency proof from the one before: the
    trail only ever grew between them."""
    await authenticate(request, "audit:read")
    return json_response(await audit.heads(request.app[RUNTIME].pool, CHECKPOINTS))


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def _query_uuid(request: web.Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.query.get(name, ""))
    except ValueError as exc:
        raise Problem(400, "Bad query", f"{name} (a UUID) is required.") from exc


async def audit_keys(request: web.Request) -> web.Response:
    """The public keys that sign the trail's checkpoints (for `relais audit verify --key`)."""
    return web.json_response({"keys": await trail_store.public_keys(request.app[RUNTIME].pool)})


async def export_trail(request: web.Request) -> web.StreamResponse:
    await authenticate(request, "audit:read")
    return await audit.send_export(request, request.app[RUNTIME].pool, "consent-trail.jsonl")


async def held(request: web.Request) -> web.Response:
    """Every consent of the person, whoever recorded or receives it, with its history: for
    their access request (`GET /v1/people/{id}/export` gathers it)."""
    await authenticate(request, "people:export")
    pool = request.app[RUNTIME].pool
    rows = await store.every_consent_of(pool, _query_uuid(request, "person_id"))
    return json_response(ConsentList(items=await audit.histories(pool, rows)))


async def get_register(request: web.Request) -> web.Response:
    """The record of processing activities (GDPR art. 30) as the configuration says it: JSON,
    or a French document with `Accept: text/html` (services/consent/art30.py)."""
    await authenticate(request, "audit:read")
    runtime = request.app[RUNTIME]
    directory = await peers.directory(request) or Directory(organisations=[])
    built = art30.build(directory, runtime.settings, datetime.now(UTC))
    if "text/html" in request.headers.get("Accept", ""):
        return web.Response(text=art30.document(built), content_type="text/html",
                            charset="utf-8", headers=html_headers())
    return json_response(built)


async def access_log(request: web.Request) -> web.Response:
    await authenticate(request, "audit:read")
    person_id = _query_uuid(request, "person_id")
    return json_response(await audit.reads(request.app[RUNTIME].pool, person_id))


CHECKPOINTS = 100
PERSON_QUERY = Query("person_id", "The person (required)", {"type": "string", "format": "uuid"},
                     example="5d0c1f8e-2b7a-4c3d-9e61-3a8f0b2c4d5e")
OPERATIONS = [
    Operation("POST", "/v1/consents", post_consent, "Record a person's consent", "Consents",
              "consent:write", ConsentIn, ConsentOut, 201, {
                  "person_id": "5d0c1f8e-2b7a-4c3d-9e61-3a8f0b2c4d5e",
                  "purposes": ["referral_partner", "share_dossier"],
                  "recipients": ["mission-locale"],
                  "categories": ["identity", "contact", "situation", "needs"],
                  "notice_version": "2026-01", "method": "signed_screen",
                  "captured_by": "conseillere-camion", "captured_at_site": "qpv-etouvie"},
              idempotency_key=True, errors=(403, 409, 422, 503)),
    Operation("POST", "/v1/notices", post_notice, "Register an information notice",
              "Consents", "consent:write", NoticeIn, NoticeOut, 201, {
                  "version": "2026-02", "language": "fr",
                  "text": "Relais : comment vos informations sont utilisées. (...) Vous pouvez "
                          "retirer votre accord à tout moment."}, errors=(409,), also=(200,)),
    Operation("GET", "/v1/notices/{version}", get_notice,
              "A registered notice (`current`: the one people are shown now)", "Consents",
              response=NoticeOut, path_example={"version": "2026-01"}, errors=(404,)),
    Operation("POST", "/v1/consents/{id}/withdraw", withdraw,
              "Withdraw a consent, whole or in part", "Consents", "consent:write", WithdrawIn,
              ConsentOut, 200, {"recipients": ["mission-locale"], "requested_by": "person",
                                "channel": "phone"},
              path_example={"id": "9a7e3c2b-1d4f-4e8a-b6c5-0f2e1d3c4b5a"},
              errors=(403, 404, 409)),
    Operation("GET", "/v1/consents", list_consents,
              "A person's consents you recorded or receive, with their history", "Consents",
              "consent:read", response=ConsentList, query=(PERSON_QUERY,), errors=(400,)),
    Operation("GET", "/v1/consents:check", check,
              "Whether a recipient may receive this person for a purpose now", "Consents",
              "consent:read", response=ConsentCheck, query=(
                  PERSON_QUERY, Query("purpose", "A purpose (required)",
                                      example="referral_partner"),
                  Query("recipient", "An organisation id (required)",
                        example="mission-locale")), errors=(400, 503)),
    Operation("GET", "/v1/consents:held", held,
              "Every consent of a person, with its history (their access request)",
              "Consents", "people:export", response=ConsentList, query=(PERSON_QUERY,),
              errors=(400,)),
    Operation("GET", "/v1/consents/{id}", get_consent, "A consent your organisation recorded",
              "Consents", "consent:read", response=ConsentOut,
              path_example={"id": "9a7e3c2b-1d4f-4e8a-b6c5-0f2e1d3c4b5a"}, errors=(404,)),
    Operation("GET", "/v1/audit/keys", audit_keys, "Keys signing the trail's checkpoints",
              "Audit", response=AuditKeys, authenticated=False),
    Operation("GET", "/v1/audit/consent-trail", trail_extract,
              "A person's trail entries with their inclusion proofs", "Audit", "audit:read",
              response=TrailExtract, query=(
                  PERSON_QUERY,
                  Query("from", "Entries recorded from (ISO 8601)",
                        {"type": "string", "format": "date-time"}),
                  Query("to", "Entries recorded before (ISO 8601)",
                        {"type": "string", "format": "date-time"})), errors=(400,)),
    Operation("GET", "/v1/audit/checkpoints", list_checkpoints,
              f"The last {CHECKPOINTS} signed tree heads, with consistency proofs", "Audit",
              "audit:read", response=CheckpointList),
    Operation("GET", "/v1/audit/consent-trail/export", export_trail,
              "The whole consent trail as JSON Lines (verify it offline with `relais audit "
              "verify`)", "Audit", "audit:read"),
    Operation("GET", "/v1/audit/register", get_register,
              "The record of processing activities (GDPR art. 30), from the configuration: "
              "JSON, or a French document with `Accept: text/html`", "Audit", "audit:read",
              response=ProcessingRegister, also_media="text/html"),
    Operation("GET", "/v1/audit/access-log", access_log,
              "Who read this person's data, when, under which consent", "Audit", "audit:read",
              response=AccessLog, query=(PERSON_QUERY,),
              errors=(400,)),
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
    peers.setup(app)
    recipients.install(app)
