"""The referral HTTP API: thin handlers over the units of work in `handlers`."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from schemas.api import (
    ActionIn,
    CapacityIn,
    ChainLink,
    DossierOut,
    ForwardIn,
    HistoryEntry,
    PartnerList,
    PartnerOut,
    ReferralDetail,
    ReferralHeld,
    ReferralIn,
    ReferralOut,
    ReferralPage,
)
from schemas.vocab import ReferralAction, ReferralStatus
from services.referral import commission, domain, handlers, lifecycle, routing, stats, store
from services.runtime import access, paging, peers
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.idempotency import Answer, create
from services.runtime.openapi import ORGANISATION, Operation, Query, register
from services.runtime.problem import Problem

TAG = "Referrals"
EXAMPLE_ID = "0e4d3c2b-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
FORWARD_EXAMPLE_ID = "7c1b9e2a-4d3f-4a6b-8c5d-2e1f0a9b8c7d"
"""The example of `forward`: a referral the demo's outreach team sent and a partner refused
(tests/integration/test_openapi.py makes it)."""


def referral_out(row: Any, org: str) -> ReferralOut:
    return ReferralOut.model_validate(domain.as_seen_by(dict(row), org))


async def detail(db: store.Db, row: Any, org: str) -> ReferralDetail:
    history = [HistoryEntry.model_validate(dict(h)) for h in await store.history(db, row["id"])]
    root = await store.chain_root(db, row["id"])
    links = await store.chain(db, root["id"]) if root is not None else []
    if len(links) < 2 or org not in {link["sender_org"] for link in links}:
        links = []  # the chain is for its senders: not for a recipient
    return ReferralDetail.model_validate(domain.as_seen_by(dict(row), org) | {
        "history": history, "chain": [ChainLink.model_validate(dict(r)) for r in links]})


async def held(request: web.Request) -> web.Response:
    """Every referral of the person with its history, whoever sent or received it: for their
    access request (`GET /v1/people/{id}/export` gathers it)."""
    await authenticate(request, "people:export")
    try:
        person_id = uuid.UUID(request.query.get("person_id", ""))
    except ValueError as exc:
        raise Problem(400, "Bad query", "person_id (a UUID) is required.") from exc
    pool = request.app[RUNTIME].pool
    items = []
    for row in await store.every_referral_of(pool, person_id):
        history = [HistoryEntry.model_validate(dict(h)) for h in await store.history(pool,
                                                                                     row["id"])]
        items.append(ReferralDetail.model_validate(dict(row) | {"history": history}))
    return json_response(ReferralHeld(items=items))


def _not_found() -> Problem:
    return Problem(404, "Not found", "No such referral for your organisation.")


async def get_referral(request: web.Request) -> web.Response:
    principal = await authenticate(request, "referral:read")
    pool = request.app[RUNTIME].pool
    row = await store.get_referral(pool, path_uuid(request), principal.org)
    if row is None:
        raise _not_found()
    return json_response(await detail(pool, row, principal.org))


def _choice(request: web.Request, name: str, allowed: set[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise Problem(400, "Bad query", f"{name} must be one of: {', '.join(sorted(allowed))}.")
    return value


async def list_referrals(request: web.Request) -> web.Response:
    principal = await authenticate(request, "referral:read")
    query = request.query
    role = _choice(request, "role", {"sender", "recipient"})
    status = _choice(request, "status", {s.value for s in ReferralStatus})
    try:
        intake_id = uuid.UUID(query["intake_id"]) if "intake_id" in query else None
        after = paging.decode_cursor(query["cursor"]) if "cursor" in query else None
        limit = int(query.get("limit", "50"))
    except ValueError as exc:
        raise Problem(400, "Bad query", "intake_id must be a UUID, cursor one this API gave, "
                      "limit a number.") from exc
    if not 1 <= limit <= 200:
        raise Problem(400, "Bad query", "limit is between 1 and 200.")
    rows = await store.page_referrals(request.app[RUNTIME].pool, principal.org, role, status,
                                      intake_id, after, limit)
    items = [referral_out(r, principal.org) for r in rows]
    cursor = (paging.encode_cursor(items[-1].created_at, items[-1].id)
              if len(items) == limit else None)
    return json_response(ReferralPage(items=items, next_cursor=cursor))


async def post_referral(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]

    async def work(conn: asyncpg.Connection, principal: Principal, body: ReferralIn) -> Answer:
        intake = await store.intake(conn, body.intake_id)
        if intake is None or intake["org"] != principal.org:
            raise Problem(422, "Unknown intake", "No intake of your organisation with this id "
                          "(an intake just recorded may take a moment to arrive).")
        if await store.partner_row(conn, body.target) is None or body.target == principal.org:
            raise Problem(422, "Unknown target", f"'{body.target}' is not a partner of the "
                          "directory: see GET /v1/partners.")
        referral_id = uuid.uuid4()
        await handlers.create(
            conn, referral_id, intake["person_id"], body.intake_id, principal.org, body.target,
            body.purpose, {"rule": "manual", "reason": body.reason, "by": principal.org,
                           "candidates": []}, runtime.clock(), origin="manual",
            actor=principal.org)
        row = await store.get_referral(conn, referral_id, principal.org)
        return Answer(201, (await detail(conn, row, principal.org)).model_dump(mode="json"),
                      {"Location": f"/v1/referrals/{referral_id}"})

    return await create(request, "referral:write", ReferralIn, store.SCHEMA,
                        "post_referral", work)


def action_handler(action: ReferralAction) -> Any:
    async def act(request: web.Request) -> web.Response:
        principal = await authenticate(request, "referral:write")
        referral_id = path_uuid(request)
        body = parse(ActionIn, await read_json(request)) if request.can_read_body else ActionIn()
        runtime = request.app[RUNTIME]
        said = lifecycle.Answer(body.reason, body.text, body.outcome, body.milestone)
        try:
            row = await handlers.act(
                runtime.pool, referral_id, principal, action, said, runtime.clock(),
                routing.rules_for(runtime.settings.routing_rules_file).on_refusal)
        except lifecycle.Refused as refused:
            status_now = await runtime.pool.fetchval(
                "SELECT status FROM referral.referrals WHERE id = $1", referral_id)
            raise Problem(refused.status, refused.title, refused.detail,
                          status_now=status_now) from refused
        if row is None:
            raise _not_found()
        return json_response(await detail(runtime.pool, row, principal.org))

    act.__name__ = f"{action}_referral"
    return act


async def forward_referral(request: web.Request) -> web.Response:
    """The sender sends a rejected or expired referral on to the next partner (201; 200 when
    it was sent on already)."""
    principal = await authenticate(request, "referral:write")
    referral_id = path_uuid(request)
    body = parse(ForwardIn, await read_json(request)) if request.can_read_body else ForwardIn()
    runtime = request.app[RUNTIME]
    before = await store.chain(runtime.pool, referral_id)
    try:
        row = await handlers.send_on(runtime.pool, referral_id, principal, body.target,
                                     body.reason, runtime.clock())
    except lifecycle.Refused as refused:
        raise Problem(refused.status, refused.title, refused.detail) from refused
    if row is None:
        raise _not_found()
    again = row["id"] in {link["id"] for link in before}
    return json_response(await detail(runtime.pool, row, principal.org),
                         status=200 if again else 201,
                         headers={"Location": f"/v1/referrals/{row['id']}"})


# --- the dossier -----------------------------------------------------------------------------


async def get_dossier(request: web.Request) -> web.Response:
    """For the recipient, while the referral is open to it and a consent covers it: the
    categories that consent allows. Identity is read from the intake service under the same
    consent, with the caller's own token (so the intake service checks and logs it too)."""
    principal = await authenticate(request, "referral:read")
    runtime = request.app[RUNTIME]
    try:
        dossier = await handlers.open_dossier(runtime.pool, path_uuid(request), principal,
                                              runtime.clock())
    except lifecycle.Refused as refused:
        raise Problem(refused.status, refused.title, refused.detail) from refused
    if dossier is None:
        raise _not_found()
    return json_response(await dossier_out(request, principal, dossier))


async def dossier_out(request: web.Request, principal: Principal,
                      dossier: handlers.Dossier) -> DossierOut:
    """The dossier as the recipient may read it: identity, contact and notes from the intake
    service, as the caller and under the dossier's consent, so exactly the categories that
    consent covers (the intake service checks it and logs the read too)."""
    row, consent, intake, categories = (dossier.referral, dossier.consent, dossier.intake,
                                        dossier.categories)
    person = None
    if consent.categories & access.PERSONAL and "people:read" in principal.scopes:
        person = await peers.person(request, row["person_id"], consent.consent_id)
    return DossierOut(
        referral=referral_out(row, principal.org), consent_id=consent.consent_id,
        categories=sorted(consent.categories),
        needs=intake["needs"] if intake is not None and "needs" in categories else None,
        situation=({"flags": intake["flags"], "age_bracket": intake["age_bracket"],
                    "commune": intake["commune"], "visit_number": intake["visit_number"]}
                   if intake is not None and "situation" in categories else None),
        person=person)


# --- partners and their capacity -------------------------------------------------------------


async def list_partners(request: web.Request) -> web.Response:
    await authenticate(request, "referral:read")
    rows = await store.partner_rows(request.app[RUNTIME].pool)
    return json_response(PartnerList(items=[PartnerOut.model_validate(dict(r)) for r in rows]))


async def put_capacity(request: web.Request) -> web.Response:
    """A partner says how many places it has left (its own, or any with directory:write)."""
    principal = await authenticate(request, None)
    body = parse(CapacityIn, await read_json(request))
    partner_id = request.match_info["id"]
    try:
        row = await handlers.set_capacity(request.app[RUNTIME].pool, principal, partner_id,
                                          body.open_places, body.waiting_list)
    except lifecycle.Refused as refused:
        raise Problem(refused.status, refused.title, refused.detail) from refused
    if row is None:
        raise Problem(404, "Not found", f"No partner '{partner_id}' in the directory.")
    return json_response(PartnerOut.model_validate(dict(row)))


def _action_op(action: ReferralAction, summary: str, example: dict[str, Any]) -> Operation:
    return Operation("POST", f"/v1/referrals/{{id}}/{action}", action_handler(action), summary,
                     TAG, "referral:write", request=ActionIn, response=ReferralDetail,
                     example=example, path_example={"id": EXAMPLE_ID},
                     errors=(403, 404, 409, 422))


OPERATIONS = [
    Operation("GET", "/v1/referrals", list_referrals,
              "Referrals your organisation sent or received", TAG, "referral:read",
              response=ReferralPage, query=(
                  Query("role", "sender or recipient (both when omitted)",
                        {"type": "string", "enum": ["sender", "recipient"]},
                        example="recipient"),
                  Query("status", "Only this status",
                        {"type": "string", "enum": [s.value for s in ReferralStatus]}),
                  Query("intake_id", "Only the referrals of this intake",
                        {"type": "string", "format": "uuid"}),
                  Query("cursor", "From the previous page's next_cursor", {"type": "string"}),
                  Query("limit", "Page size (1-200, 50 by default)",
                        {"type": "integer", "minimum": 1, "maximum": 200}),
              ), errors=(400,)),
    Operation("POST", "/v1/referrals", post_referral, "Refer an intake by hand", TAG,
              "referral:write", request=ReferralIn, response=ReferralDetail, status=201,
              idempotency_key=True, also=(200,), errors=(422,), example={
                  "intake_id": EXAMPLE_ID, "target": "ccas",
                  "reason": "Besoin urgent d'un logement, vu avec la personne."}),
    Operation("GET", "/v1/referrals:held", held,
              "Every referral of a person, with its history (their access request)", TAG,
              "people:export", response=ReferralHeld, query=(
                  Query("person_id", "The person (required)",
                        {"type": "string", "format": "uuid"},
                        example="5d0c1f8e-2b7a-4c3d-9e61-3a8f0b2c4d5e"),), errors=(400,)),
    Operation("GET", "/v1/referrals/{id}", get_referral,
              "A referral, with its explanation and history", TAG, "referral:read",
              response=ReferralDetail, path_example={"id": EXAMPLE_ID}, errors=(404,)),
    _action_op(ReferralAction.receive, "Acknowledge receipt (recipient)", {}),
    _action_op(ReferralAction.accept, "Accept to follow the person (recipient)",
               {"text": "Premier rendez-vous proposé mardi."}),
    _action_op(ReferralAction.reject, "Reject, with a reason from the list (recipient)",
               {"reason": "no_place"}),
    _action_op(ReferralAction.start, "First appointment held or contract signed (recipient)",
               {"milestone": "first_appointment"}),
    _action_op(ReferralAction.complete, "Close with the outcome (recipient)",
               {"outcome": "contrat_engagement_jeune"}),
    _action_op(ReferralAction.cancel, "Cancel (sender)", {"text": "Orientée ailleurs."}),
    _action_op(ReferralAction.hold, "Put on hold (sender or recipient)",
               {"text": "La personne est hospitalisée."}),
    Operation("POST", "/v1/referrals/{id}/forward", forward_referral,
              "Send a rejected or expired referral on to the partner proposed (sender)", TAG,
              "referral:write", request=ForwardIn, response=ReferralDetail, status=201,
              also=(200,), path_example={"id": FORWARD_EXAMPLE_ID},
              errors=(403, 404, 409, 422), example={
                  "reason": "Refus faute de place : envoyée au partenaire proposé."}),
    Operation("GET", "/v1/referrals/{id}/dossier", get_dossier,
              "The dossier, as far as the consent allows (recipient; logged)", TAG,
              "referral:read", response=DossierOut, path_example={"id": EXAMPLE_ID},
              errors=(403, 404, 503)),
    Operation("GET", "/v1/partners", list_partners,
              "Partners: what they serve, their deadline, places and load", "Partners",
              "referral:read", response=PartnerList),
    Operation("PUT", "/v1/partners/{id}/capacity", put_capacity,
              "Say how many places are left (the partner itself)", "Partners",
              "referral:write", request=CapacityIn, response=PartnerOut,
              example={"open_places": 4, "waiting_list": True},
              path_example={"id": "mission-locale"}, path_params={"id": ORGANISATION},
              errors=(403, 404)),
    *commission.OPERATIONS,
    *stats.OPERATIONS,
]


def routes(app: web.Application) -> None:
    register(app, OPERATIONS)
    peers.setup(app)

