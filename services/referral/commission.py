"""The commission de remobilisation: its sessions, their agenda, and a decision per referral
(refer to a partner, which creates a follow-up referral `part_of` the first; keep with the
outreach team; close)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from schemas.api import AgendaItem, Decision, DecisionIn, SessionIn, SessionOut
from schemas.vocab import Outcome, Purpose, ReferralStatus
from services.referral import handlers, lifecycle, store
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.http import json_response, parse, path_uuid, read_json
from services.runtime.idempotency import Answer, create
from services.runtime.openapi import Operation
from services.runtime.problem import Problem

TAG = "Commission"
EXAMPLE_ID = "5a1f0c3e-7b2d-4e8f-9a0b-1c2d3e4f5a6b"
OUTCOMES = {Decision.refer_partner: Outcome.oriented_to_partner,
            Decision.keep_with_outreach: Outcome.kept_with_outreach,
            Decision.close: Outcome.stopped}


async def _must_be_commission(conn: store.Db, commission: str) -> Any:
    row = await store.partner_row(conn, commission)
    if row is None or row["kind"] != "commission":
        raise Problem(422, "Not a commission", f"'{commission}' is not a commission de "
                      "remobilisation of the directory.")
    return row


def _sits_on(commission: Any, org: str) -> bool:
    """The commission itself, or a member the directory declares: no one else acts for it."""
    return org == commission["id"] or org in commission["members"]


def _not_a_member(commission: str) -> Problem:
    return Problem(403, "Not a member", f"Only '{commission}' and the members the directory "
                   "declares for it open its sessions and decide.")


async def session_out(db: store.Db, row: Any) -> SessionOut:
    agenda = [AgendaItem.model_validate(dict(a)) for a in await store.agenda(db, row["id"])]
    return SessionOut.model_validate(dict(row) | {"agenda": agenda})


async def open_session(conn: asyncpg.Connection, principal: Principal,
                       body: SessionIn) -> uuid.UUID:
    """The unit of work of a new session, for the API and the pages (raises Problem)."""
    commission = await _must_be_commission(conn, body.commission)
    if not _sits_on(commission, principal.org) or (
            principal.org != body.commission and principal.org not in body.members):
        raise Problem(403, "Not a member", f"Only '{body.commission}' and the members the "
                      "directory declares for it, present at the session, open it.")
    unknown = [m for m in body.members if not _sits_on(commission, m)]
    if unknown:
        raise Problem(422, "Unknown members", "Not members of this commission in the "
                      f"directory: {', '.join(unknown)}.")
    open_ids = await store.open_for_commission(conn, body.commission)
    ids = open_ids if body.referral_ids is None else list(dict.fromkeys(body.referral_ids))
    stray = [str(i) for i in ids if i not in open_ids]
    if stray:
        raise Problem(422, "Not on the agenda", "These referrals are not open before this "
                      f"commission, or are on another agenda: {', '.join(stray)}.")
    session_id = uuid.uuid4()
    await store.insert_session(conn, session_id, body.commission, body.held_on,
                               body.members, ids)
    return session_id


async def post_session(request: web.Request) -> web.Response:
    async def work(conn: asyncpg.Connection, principal: Principal, body: SessionIn) -> Answer:
        session_id = await open_session(conn, principal, body)
        row = await store.session(conn, session_id, principal.org)
        return Answer(201, (await session_out(conn, row)).model_dump(mode="json"),
                      {"Location": f"/v1/commission/sessions/{session_id}"})

    return await create(request, "referral:write", SessionIn, store.SCHEMA, "post_session", work)


async def get_session(request: web.Request) -> web.Response:
    principal = await authenticate(request, "referral:read")
    pool = request.app[RUNTIME].pool
    row = await store.session(pool, path_uuid(request), principal.org)
    if row is None:
        raise Problem(404, "Not found", "No such session of a commission you sit on.")
    return json_response(await session_out(pool, row))


async def post_decision(request: web.Request) -> web.Response:
    principal = await authenticate(request, "referral:write")
    session_id = path_uuid(request)
    body = parse(DecisionIn, await read_json(request))
    runtime = request.app[RUNTIME]
    session = await decide(runtime.pool, principal, session_id, body, runtime.clock())
    return json_response(await session_out(runtime.pool, session))


async def decide(pool: asyncpg.Pool, principal: Principal, session_id: uuid.UUID,
                 body: DecisionIn, now: datetime) -> Any:
    """The unit of work of a decision, for the API and the pages (raises Problem): the
    referral is closed with the decision as its outcome, and a follow-up referral `part_of`
    it is created when the commission refers the person to a partner."""
    async with pool.acquire() as conn, conn.transaction():
        session = await store.session(conn, session_id, principal.org)
        item = await store.lock_agenda_item(conn, session_id, body.referral_id)
        if session is None or item is None:
            raise Problem(404, "Not found", "No such referral on this session's agenda.")
        if not _sits_on(await _must_be_commission(conn, session["commission"]), principal.org):
            raise _not_a_member(session["commission"])
        referral = await store.lock_referral(conn, body.referral_id)
        assert referral is not None
        if item["decision"] is not None or ReferralStatus(referral["status"]) not in \
                lifecycle.ACTIVE:
            raise Problem(409, "Already decided", "This referral was decided or is closed.",
                          status_now=referral["status"])
        follow_up = None
        if body.decision is Decision.refer_partner:
            assert body.partner is not None
            partner = await store.partner_row(conn, body.partner)
            if partner is None or partner["kind"] == "commission":
                raise Problem(422, "Unknown partner", f"'{body.partner}' is not a partner.")
            follow_up = uuid.uuid5(handlers.REFERRAL_IDS, f"{body.referral_id}/{session_id}")
            await handlers.create(
                conn, follow_up, referral["person_id"], referral["intake_id"],
                session["commission"],
                body.partner, Purpose.referral_partner,
                {"rule": "commission_decision", "candidates": [],
                 "reason": f"Décision de la commission du {session['held_on']:%d/%m/%Y}.",
                 "session": str(session_id)},
                now, origin="commission", part_of=body.referral_id, actor=principal.org)
        await store.record_decision(conn, session_id, body.referral_id, body.decision,
                                    body.partner, body.text, follow_up)
        await handlers.move(conn, referral, ReferralStatus.completed, session["commission"],
                            "decide", now, answer=lifecycle.Answer(
                                text=body.text, outcome=OUTCOMES[body.decision]),
                            cause="commission_decision", by=principal.who)
        return session


OPERATIONS = [
    Operation("POST", "/v1/commission/sessions", post_session,
              "Open a session of your commission, with its agenda", TAG, "referral:write",
              request=SessionIn, response=SessionOut, status=201, idempotency_key=True,
              also=(200,), errors=(403, 422), example={
                  "held_on": "2026-12-03", "members": ["mission-locale", "france-travail",
                                                       "ccas", "equipe-aller-vers"]}),
    Operation("GET", "/v1/commission/sessions/{id}", get_session,
              "A session, its agenda and decisions", TAG, "referral:read",
              response=SessionOut, path_example={"id": EXAMPLE_ID}, errors=(404,)),
    Operation("POST", "/v1/commission/sessions/{id}/decisions", post_decision,
              "Decide on a referral of the agenda", TAG, "referral:write",
              request=DecisionIn, response=SessionOut, path_example={"id": EXAMPLE_ID},
              errors=(403, 404, 409, 422), example={
                  "referral_id": "0e4d3c2b-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
                  "decision": "refer_partner", "partner": "mission-locale",
                  "text": "Orientation vers la Mission locale pour un CEJ."}),
]
