"""The commission de remobilisation's pages, for its members: its sessions, opening one with
its agenda, and a decision per referral (refer to a partner, keep with the outreach team,
close). They call the same units of work as the API (`commission.open_session`,
`commission.decide`)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from schemas.api import Decision, DecisionIn, SessionIn
from services.referral import commission, pages, store
from services.runtime import idempotency
from services.runtime import web as screens
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal
from services.runtime.problem import Problem

DECISIONS = {Decision.refer_partner: "Orienter vers un partenaire",
             Decision.keep_with_outreach: "Laisser le suivi à l'équipe d'aller vers",
             Decision.close: "Clore (la personne ne souhaite pas de suite)"}
REFUSALS = {403: "Seuls la commission et ses membres déclarés dans l'annuaire ouvrent ses "
                 "séances et décident.",
            404: "Cette orientation n'est pas à l'ordre du jour de cette séance.",
            409: "Une décision a déjà été prise pour cette orientation, ou elle est close.",
            422: "Vérifiez les informations saisies."}


async def _commissions(request: web.Request, principal: Principal) -> list[Any]:
    sits_on = await store.commissions_of(request.app[RUNTIME].pool, principal.org)
    if not sits_on:
        raise screens.PageError(403, "Pas de commission", "Votre structure ne siège à aucune "
                                "commission de remobilisation de l'annuaire.")
    return sits_on


async def _home(request: web.Request, principal: Principal, *, status: int = 200,
                error: str | None = None) -> web.Response:
    pool = request.app[RUNTIME].pool
    sits_on = await _commissions(request, principal)
    waiting = {c["id"]: len(await store.open_for_commission(pool, c["id"])) for c in sits_on}
    return screens.render(
        request, "referral/commission.html", status=status, commissions=sits_on,
        waiting=waiting, sessions=await store.sessions_of(pool, [c["id"] for c in sits_on]),
        names=await store.partner_names(pool), today=date.today().isoformat(), error=error,
        key=str(uuid.uuid4()))


@screens.page
async def home(request: web.Request) -> web.StreamResponse:
    principal = await screens.require(request, "referral:read")
    return await _home(request, principal)


@screens.page
async def open_session(request: web.Request) -> web.StreamResponse:
    """A double click opens one session (the form's key, as the API's Idempotency-Key)."""
    principal = await screens.require(request, "referral:write")
    fields = await screens.form(request)
    payload = {"commission": fields.get("commission", ""), "held_on": fields.get("date", ""),
               "members": fields.getall("members", [])}
    try:
        body = SessionIn.model_validate(payload)
    except ValidationError:
        return await _home(request, principal, status=422, error="Indiquez la date de la "
                           "séance et au moins un membre présent.")

    async def work(conn: Any) -> idempotency.Answer:
        session_id = await commission.open_session(conn, principal, body)
        return idempotency.Answer(201, {"id": str(session_id)})

    try:
        answer, _replayed = await idempotency.once(
            request.app[RUNTIME].pool, store.SCHEMA, principal.org, "post_session",
            fields.get("cle", "") or str(uuid.uuid4()), payload, work)
    except Problem as problem:
        return await _home(request, principal, status=problem.status,
                           error=REFUSALS.get(problem.status, REFUSALS[422]))
    raise web.HTTPSeeOther(f"/commission/seances/{answer.body['id']}")


def _session_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError as exc:
        raise screens.PageError(404, "Séance introuvable", "Cette séance n'existe pas ou "
                                "votre structure n'y siège pas.") from exc


async def _session(request: web.Request, principal: Principal, session_id: uuid.UUID, *,
                   status: int = 200, error: str | None = None) -> web.Response:
    pool = request.app[RUNTIME].pool
    row = await store.session(pool, session_id, principal.org)
    if row is None:
        raise screens.PageError(404, "Séance introuvable", "Cette séance n'existe pas ou "
                                "votre structure n'y siège pas.")
    names = await store.partner_names(pool)
    partners = [p for p in await store.partner_rows(pool) if p["kind"] != "commission"]
    return screens.render(
        request, "referral/session.html", status=status, session=row,
        agenda=await store.agenda_details(pool, session_id), names=names, partners=partners,
        decisions=DECISIONS, reason=pages.plain_reason, error=error)


@screens.page
async def session(request: web.Request) -> web.StreamResponse:
    principal = await screens.require(request, "referral:read")
    return await _session(request, principal, _session_id(request))


@screens.page
async def decide(request: web.Request) -> web.StreamResponse:
    principal = await screens.require(request, "referral:write")
    session_id = _session_id(request)
    fields = await screens.form(request)
    try:
        body = DecisionIn.model_validate({
            "referral_id": fields.get("referral_id", ""), "decision": fields.get("decision"),
            "partner": fields.get("partner") or None, "text": fields.get("text", "").strip()})
    except ValidationError:
        return await _session(request, principal, session_id, status=422, error=(
            "Écrivez la décision telle qu'elle sera au compte rendu, et choisissez le "
            "partenaire seulement pour une orientation vers un partenaire."))
    runtime = request.app[RUNTIME]
    try:
        await commission.decide(runtime.pool, principal, session_id, body, runtime.clock())
    except Problem as problem:
        return await _session(request, principal, session_id, status=problem.status,
                              error=REFUSALS.get(problem.status, REFUSALS[422]))
    raise web.HTTPSeeOther(f"/commission/seances/{session_id}")


def routes(app: web.Application) -> None:
    app.router.add_get("/commission", home)
    app.router.add_post("/commission/seances", open_session)
    app.router.add_get("/commission/seances/{id}", session)
    app.router.add_post("/commission/seances/{id}/decisions", decide)
