"""The partner counsellor's pages: the referrals received (overdue first), one referral with
its history, its dossier behind a deliberate action, and the answers. They call the same
units of work as the API (`handlers.act`, `handlers.open_dossier`)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from schemas import vocab_fr as fr
from schemas.api import ActionIn
from schemas.vocab import Milestone, Outcome, ReferralAction, ReferralStatus, RejectReason
from services.referral import api, domain, handlers, lifecycle, routing, store
from services.runtime import peers
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal
from services.runtime.problem import Problem

FORM_ACTIONS = {a.value: a for a in ReferralAction}


def plain_reason(row: Any, names: dict[str, str]) -> str:
    """Why this referral went to its recipient, in plain French, saying of the person only
    what the consent covers (needs; age and commune are their situation)."""
    said = row["consent_categories"] or []
    facts = []
    if "needs" in said and row["needs"]:
        facts.append("besoin " + ", ".join(fr.NEEDS.get(n, n) for n in row["needs"]))
    if "situation" in said:
        if row["age_bracket"]:
            facts.append(fr.AGES.get(row["age_bracket"], row["age_bracket"]))
        if row["commune"]:
            facts.append(f"commune {row['commune']}")
    explanation = row["explanation"] or {}
    mine = next((c for c in explanation.get("candidates", [])
                 if c.get("partner") == row["target"]), None)
    if mine is not None and mine.get("open_places") is not None:
        places = mine["open_places"]
        plural = "s" if places > 1 else ""
        facts.append(f"{places} place{plural} déclarée{plural}")
    elif explanation.get("rule") == "manual":
        facts.append(f"choisie par {names.get(row['sender_org'], row['sender_org'])}")
    target = names.get(row["target"], row["target"])
    return f"Orientée vers {target}" + (f" car : {', '.join(facts)}" if facts else "")


def _referral_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["id"])
    except ValueError as exc:
        raise _not_found() from exc


def _not_found() -> pages.PageError:
    return pages.PageError(404, "Orientation introuvable", "Cette orientation n'existe pas, ou "
                           "elle n'est pas visible par votre structure.")


def _status_filter(request: web.Request) -> str | None:
    """The list's `statut` filter: a status of the vocabulary, or none (everything)."""
    status = request.query.get("statut") or None
    return status if status in fr.STATUSES else None


@pages.page
async def inbox(request: web.Request) -> web.StreamResponse:
    principal = await pages.require(request, "referral:read")
    status = _status_filter(request)
    runtime = request.app[RUNTIME]
    rows = await store.inbox(runtime.pool, principal.org, status, runtime.clock())
    names = await store.partner_names(runtime.pool)
    return pages.render(request, "referral/inbox.html", rows=rows, names=names,
                        filtre=status, reason=plain_reason, now=runtime.clock(),
                        drawn=f"{time.time():.3f}",
                        statuses=[s for s in fr.STATUSES if s != "awaiting_consent"])


@pages.page
async def sent(request: web.Request) -> web.StreamResponse:
    """For the outreach team: where each person it met stands."""
    principal = await pages.require(request, "referral:read")
    status = _status_filter(request)
    pool = request.app[RUNTIME].pool
    rows = await store.sent(pool, principal.org, status)
    return pages.render(request, "referral/sent.html", rows=rows, filtre=status,
                        names=await store.partner_names(pool), statuses=list(fr.STATUSES))


async def _link_stands(request: web.Request, principal: Principal, row: Any) -> None:
    """A magic link's session opens its referral while it is open to the recipient and the
    person's consent covers it: else a French page, no data."""
    if principal.referral is None:
        return
    runtime = request.app[RUNTIME]
    consents = await store.consents_of(runtime.pool, row["person_id"])
    if (ReferralStatus(row["status"]) not in lifecycle.ACTIVE or row["stopped_at"] is not None
            or domain.covering_consent(row["target"], row["purpose"], consents,
                                       runtime.clock()) is None):
        raise pages.PageError(410, "Lien plus valable", "Cette orientation est close, ou "
                              "l'accord de la personne ne la couvre plus : le lien de l'e-mail "
                              "ne l'ouvre plus. Avec un compte Relais, son historique reste "
                              "dans vos orientations reçues.")
    try:
        listed = await peers.link_listed(request, principal.client_id.removeprefix("link:"))
    except Problem as unavailable:
        raise pages.PageError(503, "Service momentanément indisponible", "L'accès par le lien "
                              "n'a pas pu être vérifié. Réessayez dans quelques "
                              "minutes.") from unavailable
    if not listed:
        raise pages.PageError(410, "Lien retiré", "Cette adresse ne reçoit plus les "
                              "orientations de cette structure : le lien a été retiré.")


async def _show(request: web.Request, principal: Principal, referral_id: uuid.UUID, *,
                status: int = 200, error: str | None = None,
                dossier: Any = None) -> web.Response:
    pool = request.app[RUNTIME].pool
    row = await store.get_referral(pool, referral_id, principal.org)
    if row is None:
        raise _not_found()
    await _link_stands(request, principal, row)
    detail = await api.detail(pool, row, principal.org)
    roles = lifecycle.roles_of(principal.org, row["sender_org"], row["target"])
    actions = [a.value for a in lifecycle.available(ReferralStatus(row["status"]), roles)]
    if "referral:write" not in principal.scopes:
        actions = []
    can_read = (row["target"] == principal.org
                and ReferralStatus(row["status"]) in lifecycle.ACTIVE)
    names = await store.partner_names(pool)
    return pages.render(
        request, "referral/referral.html", status=status, referral=detail, names=names,
        why=pages.rule_in_words(row["explanation"] or {}, names), actions=actions, error=error,
        dossier=dossier,
        can_read=can_read, reasons=list(RejectReason), outcomes=[
            o for o in Outcome if o not in (Outcome.oriented_to_partner,
                                            Outcome.kept_with_outreach)],
        milestones=list(Milestone))


@pages.page
async def referral(request: web.Request) -> web.StreamResponse:
    referral_id = _referral_id(request)
    principal = await pages.require(request, "referral:read", link=referral_id)
    return await _show(request, principal, referral_id)


@pages.page
async def answer(request: web.Request) -> web.StreamResponse:
    """One answer, from a form; an illegal move is explained on the page, never a 500."""
    referral_id = _referral_id(request)
    principal = await pages.require(request, "referral:write", link=referral_id)
    fields = await pages.form(request)
    action = FORM_ACTIONS.get(request.match_info["action"])
    if action is None:
        raise _not_found()
    if principal.referral is not None:
        row = await store.get_referral(request.app[RUNTIME].pool, referral_id,
                                     principal.org)
        if row is None:
            raise _not_found()
        await _link_stands(request, principal, row)
    try:  # the API's model: the same lists, lengths and refusal of a social security number
        body = ActionIn.model_validate({k: fields[k] for k in ("reason", "outcome", "milestone")
                                        if fields.get(k)} | (
            {"text": fields["text"].strip()} if fields.get("text", "").strip() else {}))
    except ValidationError as invalid:
        message = ("Le message ne doit contenir ni numéro de sécurité sociale ni plus de 500 "
                   "caractères." if any(e["loc"] == ("text",) for e in invalid.errors())
                   else "Choisissez une valeur de la liste.")
        return await _show(request, principal, referral_id, status=422, error=message)
    said = lifecycle.Answer(body.reason, body.text, body.outcome, body.milestone)
    runtime = request.app[RUNTIME]
    try:
        row = await handlers.act(
            runtime.pool, referral_id, principal, action, said, runtime.clock(),
            routing.rules_for(runtime.settings.routing_rules_file).on_refusal)
    except lifecycle.Refused as refused:
        return await _show(request, principal, referral_id, status=refused.status,
                           error=_refusal(refused, action))
    if row is None:
        raise _not_found()
    raise web.HTTPSeeOther(f"/orientations/{referral_id}#historique")


def _refusal(refused: lifecycle.Refused, action: ReferralAction) -> str:
    if refused.status == 422:
        return {ReferralAction.reject: "Pour refuser, choisissez un motif (et précisez-le "
                                       "s'il s'agit d'un autre motif).",
                ReferralAction.complete: "Pour terminer, choisissez le résultat de "
                                         "l'accompagnement.",
                ReferralAction.start: "Choisissez ce qui a commencé l'accompagnement."}.get(
            action, "Il manque une information.")
    if refused.status == 403:
        return "Cette action revient à l'autre structure de l'orientation."
    return (f"« {fr.ACTIONS[action]} » n'est plus possible : l'orientation a changé d'état "
            "entre-temps. Voici son état actuel.")


@pages.page
async def dossier(request: web.Request) -> web.StreamResponse:
    """A deliberate read: logged on the consent trail, like the API's."""
    referral_id = _referral_id(request)
    principal = await pages.require(request, "referral:read", link=referral_id)
    await pages.form(request)
    runtime = request.app[RUNTIME]
    try:
        opened = await handlers.open_dossier(runtime.pool, referral_id, principal,
                                             runtime.clock())
    except lifecycle.Refused:
        return await _show(request, principal, referral_id, status=403,
                           error="Le dossier n'est consultable que tant que l'orientation est "
                                 "ouverte et que l'accord de la personne la couvre.")
    if opened is None:
        raise _not_found()
    try:
        content = await api.dossier_out(request, principal, opened)
    except Problem:  # the intake service did not answer (503)
        return await _show(request, principal, referral_id, status=503,
                           error="L'identité de la personne n'a pas pu être lue pour le "
                                 "moment. Réessayez dans quelques instants.")
    return await _show(request, principal, referral_id, dossier=content)


def routes(app: web.Application) -> None:
    pages.templates("referral", "services.referral")
    app.router.add_get("/orientations", inbox)
    app.router.add_get("/orientations/envoyees", sent)
    app.router.add_get("/orientations/{id}", referral)
    app.router.add_post("/orientations/{id}/dossier", dossier)
    app.router.add_post("/orientations/{id}/{action}", answer)
