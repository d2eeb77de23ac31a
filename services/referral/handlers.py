"""Referral units of work: each event, each answer, each due timer is one transaction that
moves the referral, records who did what, and writes its events to the outbox. Correct in
any order of arrival (a consent may come before its intake, a withdrawal before its grant)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from schemas import events as ev
from schemas.vocab import Purpose, ReferralAction, ReferralStatus
from services.directory import Directory
from services.referral import deadlines, domain, lifecycle, routing, store
from services.referral.deadlines import Timer
from services.runtime import outbox
from services.runtime.app import Runtime
from services.runtime.auth import Principal
from services.runtime.consumer import Handler
from services.runtime.events import Event, new_event
from services.runtime.logging import get_logger

log = get_logger("relais.referral")
SOURCE = "/relais/referral"
REFERRAL_IDS = uuid.UUID("6f1d3c1e-5b0a-4c39-9c55-5e0a0f5f7a01")
RELAIS = "relais"
S = ReferralStatus
TIMER_BATCH = 100


def handler(runtime: Runtime) -> Handler:
    rules = routing.load_rules(runtime.settings.routing_rules_file)

    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        now = runtime.clock()
        if event.type == ev.INTAKE_RECORDED:
            await on_intake(conn, ev.IntakeRecordedV1.model_validate(event.data), rules, now)
        elif event.type == ev.CONSENT_GRANTED:
            await on_consent(conn, ev.ConsentGrantedV1.model_validate(event.data), now)
        elif event.type in (ev.CONSENT_WITHDRAWN, ev.CONSENT_EXPIRED):
            await on_consent_change(conn, ev.ConsentChangedV1.model_validate(event.data), now)
        elif event.type == ev.PERSON_ERASED:
            await store.erase_person(conn, ev.PersonErasedV1.model_validate(event.data).person_id)
        elif event.type == ev.DIRECTORY_UPDATED:
            update = ev.DirectoryUpdatedV1.model_validate(event.data)
            await store.upsert_partners(conn, Directory.model_validate(update.directory))
        elif event.type == ev.SIGNAL_RECEIVED:  # the statistics per relay kind
            signal = ev.SignalReceivedV1.model_validate(event.data)
            await store.signal_received(conn, signal.signal_id, signal.org, signal.relay_kind,
                                        signal.site, event.time)
        elif event.type == ev.SIGNAL_CLOSED:
            await store.signal_closed(conn, ev.SignalClosedV1.model_validate(event.data))

    return handle


def facts(intake: Any) -> routing.IntakeFacts:
    return routing.IntakeFacts(intake["needs"], intake["flags"], intake["age_bracket"],
                               intake["commune"])


VISIT = ("Nouveau passage de la personne : ce contact rejoint l'orientation déjà ouverte "
         "vers ce partenaire pour le même motif.")


async def on_intake(conn: asyncpg.Connection, intake: ev.IntakeRecordedV1,
                    rules: routing.Rules, now: datetime) -> None:
    partners = await store.save_intake(conn, intake)
    routed = routing.route(
        routing.IntakeFacts(intake.needs, intake.flags, intake.age_bracket, intake.commune),
        partners, rules)
    if routed is None:
        log.warning("intake_not_routed", intake_id=str(intake.intake_id),
                    why="no partner fits and the directory has no commission")
        return
    if await join_open(conn, intake, routed):
        return
    await create(conn, uuid.uuid5(REFERRAL_IDS, str(intake.intake_id)), intake.person_id,
                 intake.intake_id, intake.org, routed.target, routed.purpose,
                 routed.explanation, now)


async def join_open(conn: asyncpg.Connection, intake: ev.IntakeRecordedV1,
                    routed: routing.Routing) -> bool:
    """A returning person's new contact joins the referral its organisation already has open
    to the same partner for the same purpose, instead of opening a second one: the visit goes
    in that referral's history. No event: a visit changes no status, so nobody is notified
    (the partner sees it in the history; the new contact finds the referral by its id)."""
    referral = await store.open_referral(conn, intake.person_id, intake.org, routed.target,
                                         routed.purpose, intake.intake_id)
    if referral is None:
        return False
    await store.add_visit(conn, referral, intake.intake_id, intake.org, VISIT)
    return True


async def create(conn: asyncpg.Connection, referral_id: uuid.UUID, person_id: uuid.UUID,
                 intake_id: uuid.UUID, sender: str, target: str, purpose: Purpose,
                 explanation: dict[str, Any], now: datetime, *, origin: str = "routing",
                 part_of: uuid.UUID | None = None, actor: str = RELAIS) -> bool:
    """A referral, then straight through the gate if a consent covers it already."""
    created = new_event(ev.REFERRAL_CREATED, SOURCE, str(person_id), ev.ReferralCreatedV1(
        referral_id=referral_id, person_id=person_id, intake_id=intake_id, sender_org=sender,
        target=target, purpose=purpose, status=S.awaiting_consent, explanation=explanation,
        part_of=part_of))
    if not await store.insert_referral(conn, referral_id, person_id, intake_id, sender, target,
                                       purpose, explanation, origin=origin, part_of=part_of,
                                       actor=actor, events=[created]):
        return False
    await settle(conn, person_id, now)
    return True


async def on_consent(conn: asyncpg.Connection, consent: ev.ConsentGrantedV1,
                     now: datetime) -> None:
    await store.upsert_consent(conn, consent.person_id, domain.ConsentScope(
        consent.consent_id, frozenset(consent.purposes), frozenset(consent.recipients),
        consent.valid_until, categories=frozenset(consent.categories)))
    await settle(conn, consent.person_id, now)


async def on_consent_change(conn: asyncpg.Connection, change: ev.ConsentChangedV1,
                            now: datetime) -> None:
    await store.narrow_consent(conn, change.consent_id, change.person_id,
                               list(change.purposes), change.recipients, change.status,
                               change.at)
    await settle(conn, change.person_id, now)


async def settle(conn: asyncpg.Connection, person_id: uuid.UUID, now: datetime) -> None:
    """Apply what the person's consents now allow to each of their referrals."""
    referrals, consents = await store.referrals_of_person(conn, person_id)
    for referral in referrals:
        status = S(referral["status"])
        verdict = domain.judge(status, referral["consent_id"] is not None, referral["target"],
                               referral["purpose"], consents, now)
        if verdict.gate is domain.Gate.request:
            assert verdict.consent is not None
            await hand_off(conn, referral, verdict.consent.consent_id, now)
        elif verdict.gate is domain.Gate.keep:
            assert verdict.consent is not None
            if verdict.consent.consent_id != referral["consent_id"]:
                await conn.execute("UPDATE referral.referrals SET consent_id = $2 WHERE id = $1",
                                   referral["id"], verdict.consent.consent_id)
        elif verdict.gate in (domain.Gate.cancel, domain.Gate.stop):
            await close_to_recipient(conn, referral, verdict, now)


async def hand_off(conn: asyncpg.Connection, referral: Any, consent_id: uuid.UUID,
                   now: datetime) -> None:
    days = referral["target_answer_days"]  # read with the referral (referrals_of_person)
    timers = deadlines.schedule(now, store.DEFAULT_ANSWER_DAYS if days is None else int(days))
    await store.set_status(conn, referral["id"], S.awaiting_consent, S.requested, RELAIS,
                           "request", f"consent {consent_id}", {"consent_id": str(consent_id)},
                           timers=timers, events=[new_event(
                               ev.REFERRAL_REQUESTED, SOURCE, str(referral["person_id"]),
                               ev.ReferralRequestedV1(**fields(referral),
                                                      consent_id=consent_id))],
                           consent_id=consent_id, requested_at=now,
                           due_at=timers[Timer.deadline])


async def close_to_recipient(conn: asyncpg.Connection, referral: Any,
                             verdict: domain.Verdict, now: datetime) -> None:
    """The consent is gone: cancel what is still open and, if the recipient had the dossier,
    tell it to stop processing."""
    cause = verdict.cause or "consent_withdrawn"
    if verdict.gate is domain.Gate.cancel:
        await move(conn, referral, S.cancelled, RELAIS, "cancel", now, cause=cause)
    if referral["consent_id"] is not None:
        await store.mark_stopped(conn, referral["id"])
        await outbox.add(conn, store.SCHEMA, [new_event(
            ev.REFERRAL_STOP_PROCESSING, SOURCE, str(referral["person_id"]),
            ev.ReferralStopProcessingV1(**fields(referral), cause=cause))])


def fields(referral: Any) -> dict[str, Any]:
    return {k: referral[k] for k in ("person_id", "intake_id", "sender_org", "target",
                                     "purpose")} | {"referral_id": referral["id"]}


async def move(conn: asyncpg.Connection, referral: Any, to: ReferralStatus, org: str,
               action: str, now: datetime, *, answer: lifecycle.Answer | None = None,
               cause: str | None = None, proposal: str | None = None,
               by: str | None = None) -> None:
    """Record a change of status (the referral is locked) and tell the other services."""
    answer = answer or lifecycle.Answer()
    from_status = S(referral["status"])
    columns: dict[str, Any] = {}
    if to in lifecycle.ANSWERED and referral["answered_at"] is None:
        columns["answered_at"] = now
    if answer.reason is not None:
        columns["reject_reason"] = answer.reason
    if answer.outcome is not None:
        columns["outcome"] = answer.outcome
    detail = {k: v for k, v in {
        "reason": answer.reason, "text": answer.text, "outcome": answer.outcome,
        "milestone": answer.milestone, "cause": cause, "proposal": proposal,
        "by": by}.items()
        if v is not None}
    root = (await store.chain_root(conn, referral["id"])
            if referral["part_of"] is not None else None)
    changed = new_event(
        ev.REFERRAL_STATUS_CHANGED, SOURCE, str(referral["person_id"]),
        ev.ReferralStatusChangedV1(
            **fields(referral), from_status=from_status, status=to, actor_org=org,
            action=action, reason=answer.reason, outcome=answer.outcome,
            milestone=answer.milestone, cause=cause, proposal=proposal, at=now,
            first_referral_id=root["id"] if root else None,
            first_sender=root["sender_org"] if root and root["sender_org"] not in (
                referral["sender_org"], referral["target"]) else None))
    await store.set_status(conn, referral["id"], from_status, to, org, action,
                           answer.text or cause, detail, events=[changed],
                           drop_timers=to is not S.requested, **columns)


async def answer(conn: asyncpg.Connection, referral: Any, action: ReferralAction, org: str,
                 said: lifecycle.Answer, now: datetime, by: str | None = None,
                 on_refusal: routing.OnRefusal | None = None) -> bool:
    """A sender's or recipient's action; raises lifecycle.Refused. False: nothing changed.
    A refusal names the next candidate with places (`proposal`) and, when the rules file's
    `on_refusal` says so for its reason, is sent on to it at once."""
    roles = lifecycle.roles_of(org, referral["sender_org"], referral["target"])
    change = lifecycle.decide(S(referral["status"]), action, roles, said)
    if change.changed:
        proposal = await next_candidate(conn, referral) if change.to is S.rejected else None
        await move(conn, referral, change.to, org, str(action), now, answer=said, by=by,
                   proposal=proposal)
        if proposal and on_refusal is not None and on_refusal.forward \
                and said.reason in on_refusal.reasons:
            refused = await store.lock_referral(conn, referral["id"])
            assert refused is not None
            await forward(conn, refused, refused["sender_org"], proposal, on_refusal.reason,
                          now, actor=RELAIS)
    return change.changed


FORWARDABLE = frozenset({S.rejected, S.expired})


async def forward(conn: asyncpg.Connection, referral: Any, org: str, target: str | None,
                  reason: str | None, now: datetime, actor: str | None = None) -> uuid.UUID:
    """The sender sends a refused or expired referral on, in one action, to the partner it
    proposed (or to the one named): a new referral `part_of` it, for the same intake and
    purpose, through the consent gate. The same call again gives the same referral.
    Raises lifecycle.Refused."""
    if org != referral["sender_org"]:
        raise lifecycle.Refused(403, "Not yours to do", "Only the sender can send a referral "
                                "on.")
    if S(referral["status"]) not in FORWARDABLE:
        raise lifecycle.Refused(409, "Not refused", "Only a rejected or expired referral is "
                                f"sent on (this one is '{referral['status']}').")
    proposal = await store.last_proposal(conn, referral["id"])
    chosen = target or proposal
    partner = await store.partner_row(conn, chosen) if chosen else None
    if partner is None or partner["kind"] == "commission" or chosen in (org,
                                                                       referral["target"]):
        raise lifecycle.Refused(422, "No partner to send to", "No partner with places was "
                                "proposed: name a partner of the directory as `target`."
                                if chosen is None else f"'{chosen}' is not another partner of "
                                "the directory: see GET /v1/partners.")
    referral_id = uuid.uuid5(REFERRAL_IDS, f"{referral['id']}/forward")
    await create(conn, referral_id, referral["person_id"], referral["intake_id"], org,
                 str(chosen), Purpose(referral["purpose"]), {
                     "rule": "forward", "from": str(referral["id"]), "proposal": proposal,
                     "reason": reason or "Envoyée au partenaire suivant après "
                     f"{'un refus' if referral['status'] == S.rejected else 'expiration'}.",
                     "by": org, "candidates": []},
                 now, origin="forward", part_of=referral["id"], actor=actor or org)
    return referral_id


async def act(pool: asyncpg.Pool, referral_id: uuid.UUID, principal: Principal,
              action: ReferralAction, said: lifecycle.Answer, now: datetime,
              on_refusal: routing.OnRefusal | None = None) -> Any:
    """The unit of work of an answer, for the API and the pages: the referral as it is after
    (None when the caller does not see it; lifecycle.Refused when the move is not allowed).
    The history records who did it (the person, for a signed-in session)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock_referral(conn, referral_id)
        if row is None or not domain.visible_to(row, principal.org):
            return None
        await answer(conn, row, action, principal.org, said, now, by=principal.who,
                     on_refusal=on_refusal)
        return await store.get_referral(conn, referral_id, principal.org)


async def send_on(pool: asyncpg.Pool, referral_id: uuid.UUID, principal: Principal,
                  target: str | None, reason: str | None, now: datetime) -> Any:
    """The unit of work of `forward`, for the API: the new referral as the sender sees it
    (None when the caller does not see the refused one; lifecycle.Refused otherwise)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.lock_referral(conn, referral_id)
        if row is None or not domain.visible_to(row, principal.org):
            return None
        new_id = await forward(conn, row, principal.org, target, reason, now)
        return await store.get_referral(conn, new_id, principal.org)


@dataclass(frozen=True, slots=True)
class Dossier:
    referral: Any
    consent: domain.ConsentScope
    intake: Any
    categories: list[str]
    """The categories read here (needs, situation); identity, contact and notes are read
    from the intake service under the same consent."""


async def open_dossier(pool: asyncpg.Pool, referral_id: uuid.UUID, principal: Principal,
                       now: datetime) -> Dossier | None:
    """For the recipient, while the referral is open to it and a consent covers it; every
    read is on the consent trail (`dossier_read`). None when the caller does not see it;
    lifecycle.Refused (403) when it is closed."""
    async with pool.acquire() as conn, conn.transaction():
        row = await store.get_referral(conn, referral_id, principal.org)
        if row is None or row["target"] != principal.org:
            return None
        consent = domain.covering_consent(row["target"], row["purpose"],
                                          await store.consents_of(conn, row["person_id"]), now)
        if S(row["status"]) not in lifecycle.ACTIVE or consent is None:
            raise lifecycle.Refused(403, "Dossier closed", "The dossier is open to the "
                                    "recipient only while the referral is open and a consent "
                                    "covers it.")
        intake = await store.intake(conn, row["intake_id"])
        categories = sorted(consent.categories & {"needs", "situation"})
        await outbox.add(conn, store.SCHEMA, [new_event(
            ev.REFERRAL_DOSSIER_READ, SOURCE, str(row["person_id"]), ev.DossierReadV1(
                person_id=row["person_id"], org=principal.org, client_id=principal.client_id,
                consent_id=consent.consent_id, categories=categories, read_at=now,
                read_by=principal.who if principal.name else None,
                referral_id=row["id"]))])
    return Dossier(row, consent, intake, categories)


# --- the chase: reminders, escalation, expiry -------------------------------------------------


async def chaser(runtime: Runtime) -> None:
    while True:
        while await fire_due(runtime.pool, runtime.clock()) == TIMER_BATCH:
            pass
        await asyncio.sleep(min(runtime.settings.chase_interval, 30.0))


async def fire_due(pool: asyncpg.Pool, now: datetime) -> int:
    """Fire the timers due at `now`, each once (rows locked; skipped by a second chaser)."""
    async with pool.acquire() as conn, conn.transaction():
        due = await store.lock_due_timers(conn, now, TIMER_BATCH)
        for row in due:
            if row["status"] == S.requested:
                await fire(conn, row, Timer(row["kind"]), now)
            await store.fired(conn, row["id"], row["kind"], now)
    return len(due)


async def fire(conn: asyncpg.Connection, referral: Any, timer: Timer, now: datetime) -> None:
    key = str(referral["person_id"])
    if timer in (Timer.half_way, Timer.deadline):
        await outbox.add(conn, store.SCHEMA, [new_event(
            ev.REFERRAL_REMINDER_DUE, SOURCE, key, ev.ReferralReminderDueV1(
                **fields(referral), timer=timer, deadline=referral["due_at"]))])
    elif timer is Timer.escalate:
        for coordinator in await store.coordinators(conn) or [referral["sender_org"]]:
            await outbox.add(conn, store.SCHEMA, [new_event(
                ev.REFERRAL_ESCALATED, SOURCE, key, ev.ReferralEscalatedV1(
                    **fields(referral), coordinator=coordinator,
                    deadline=referral["due_at"]))])
    else:
        await move(conn, referral, S.expired, RELAIS, "expire", now, cause="deadline_passed",
                   proposal=await next_candidate(conn, referral))


async def next_candidate(conn: asyncpg.Connection, referral: Any) -> str | None:
    """The best partner not tried yet for this intake that has places left."""
    intake = await store.intake(conn, referral["intake_id"])
    if intake is None:
        return None
    tried = frozenset(await store.tried_targets(conn, referral["intake_id"]))
    ranked = routing.candidates(facts(intake), await store.partners(conn), exclude=tried)
    with_places = [c for c in ranked if c["open_places"] is None or c["open_places"] > 0]
    return str(with_places[0]["partner"]) if with_places else None


async def set_capacity(pool: asyncpg.Pool, principal: Principal, partner_id: str,
                       open_places: int | None, waiting_list: bool) -> Any:
    """A partner says how many places it has left: the partner itself (referral:write) or
    the directory's keeper (directory:write). The partner as it is after; None when there is
    no such partner; lifecycle.Refused (403) for anyone else."""
    if not ("directory:write" in principal.scopes
            or (partner_id == principal.org and "referral:write" in principal.scopes)):
        raise lifecycle.Refused(403, "Forbidden", "Only the partner itself (referral:write) "
                                "or the directory's keeper (directory:write) sets its "
                                "capacity.")
    async with pool.acquire() as conn, conn.transaction():
        await store.set_capacity(conn, partner_id, open_places, waiting_list)
        return await store.partner_row(conn, partner_id)
