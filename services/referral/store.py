"""The referral service's SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, TypeAlias
from uuid import UUID, uuid4

import asyncpg

from schemas.events import IntakeRecordedV1, SignalClosedV1
from services.directory import Directory, Programme, calendar
from services.referral.deadlines import Timer
from services.referral.domain import ConsentScope
from services.referral.lifecycle import ACTIVE, OPEN
from services.referral.routing import Partner
from services.runtime import outbox
from services.runtime.events import Event

SCHEMA = "referral"
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool
ACTIVE_STATUSES = sorted(ACTIVE)
OPEN_STATUSES = sorted(OPEN)

# --- partners --------------------------------------------------------------------------------


async def upsert_partners(conn: Db, directory: Directory) -> None:
    """Reference data from the directory; the capacity the partners declared is kept, and an
    organisation no longer in the directory is no longer a candidate. The sites and
    permanences are kept too, for their names on the statistics page."""
    await upsert_places(conn, directory)
    await conn.execute("DELETE FROM referral.programmes")
    await conn.executemany(
        "INSERT INTO referral.programmes (id, name, organisations, sites, funders,"
        " coordinators) VALUES ($1, $2, $3, $4, $5, $6)",
        [(g.id, g.name, g.organisations, g.sites, g.funders, g.coordinators)
         for g in directory.programmes])
    await conn.execute("UPDATE referral.partners SET active = false WHERE id <> ALL($1::text[])",
                       [o.id for o in directory.organisations])
    await conn.executemany(
        "INSERT INTO referral.partners (id, name, kind, needs, communes, min_age, max_age,"
        " answer_days, members) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (id) DO UPDATE SET"
        " name = EXCLUDED.name, kind = EXCLUDED.kind, needs = EXCLUDED.needs,"
        " communes = EXCLUDED.communes, min_age = EXCLUDED.min_age,"
        " max_age = EXCLUDED.max_age, answer_days = EXCLUDED.answer_days,"
        " members = EXCLUDED.members, active = true",
        [
            (o.id, o.name, o.kind, [str(n) for n in o.needs], o.communes, o.min_age, o.max_age,
             o.answer_days, o.members)
            for o in directory.organisations
        ],
    )


async def has_partners(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM referral.partners)"))


_PARTNERS = (
    "SELECT p.*, (SELECT count(*) FROM referral.referrals r WHERE r.target = p.id"
    f" AND r.status IN ({', '.join(repr(str(s)) for s in ACTIVE_STATUSES)})) AS load"
    " FROM referral.partners p"
)
"""The partners and the referrals each follows now: the statuses written out, as in the
predicate of the index that counts them (migration 010)."""


def _partner(r: asyncpg.Record) -> Partner:
    return Partner(r["id"], frozenset(r["needs"]), frozenset(r["communes"]), r["min_age"],
                   r["max_age"], r["open_places"], r["waiting_list"], r["load"], r["kind"])


async def partners(conn: Db) -> list[Partner]:
    """The candidates: the organisations in the directory now."""
    return [_partner(r) for r in await conn.fetch(_PARTNERS + " WHERE p.active ORDER BY p.id")]


async def partner_rows(db: Db) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(_PARTNERS + " WHERE p.active ORDER BY p.id")
    return rows


async def partner_row(db: Db, partner_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        _PARTNERS + " WHERE p.id = $1 AND p.active", partner_id)
    return row


async def set_capacity(conn: Db, partner_id: str, open_places: int | None,
                       waiting_list: bool) -> None:
    await conn.execute(
        "UPDATE referral.partners SET open_places = $2, waiting_list = $3, capacity_at = now()"
        " WHERE id = $1", partner_id, open_places, waiting_list)


async def coordinators(conn: Db) -> list[str]:
    return [r["id"] for r in await conn.fetch(
        "SELECT id FROM referral.partners WHERE kind = 'coordination' AND active"
        " ORDER BY id")]


DEFAULT_ANSWER_DAYS = 5
"""Days a partner has to answer when the directory does not say."""


# --- intakes (what routing and the statistics need) ----------------------------------------


async def save_intake(conn: asyncpg.Connection, i: IntakeRecordedV1) -> list[Partner]:
    """The contact (a redelivered one is there already), and the partners it may be routed to
    now (`partners`), in one statement."""
    rows = await conn.fetch(
        "WITH saved AS (INSERT INTO referral.intakes (intake_id, person_id, org, site,"
        " permanence, contacted_at, needs, flags, age_bracket, commune, gender, visit_number,"
        " duration_minutes, arrival, for_org)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        " ON CONFLICT (intake_id) DO NOTHING) " + _PARTNERS + " WHERE p.active ORDER BY p.id",
        i.intake_id, i.person_id, i.org, i.site, i.permanence, i.contacted_at,
        [str(n) for n in i.needs], [str(f) for f in i.flags], i.age_bracket, i.commune,
        i.gender, i.visit_number, i.duration_minutes, i.arrival, i.for_org)
    return [_partner(r) for r in rows]


async def intake(db: Db, intake_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM referral.intakes WHERE intake_id = $1", intake_id)
    return row


async def erase_person(conn: asyncpg.Connection, person_id: UUID) -> None:
    """What the statistics keep of an erased person is no longer linkable to their id, and
    is still one person (one new random id for all their contacts)."""
    await conn.execute(
        "UPDATE referral.intakes SET person_id = $2 WHERE person_id = $1", person_id,
        uuid4())


# --- referrals -------------------------------------------------------------------------------


async def insert_referral(
    conn: asyncpg.Connection, referral_id: UUID, person_id: UUID, intake_id: UUID,
    sender_org: str, target: str, purpose: str, explanation: dict[str, Any], *,
    origin: str = "routing", part_of: UUID | None = None, actor: str = "relais",
    events: Sequence[Event] = (),
) -> bool:
    """False when it exists already (a redelivered event, a retried request). The referral,
    the first line of its history and its `events` (in the outbox, only if it is new) in one
    statement."""
    args: list[Any] = [referral_id, person_id, intake_id, sender_org, target, purpose,
                       explanation, origin, part_of, actor, explanation.get("rule"),
                       {"origin": origin}]
    added, more = outbox.adding(SCHEMA, events, len(args) + 1,
                                when="EXISTS (SELECT 1 FROM created)")
    inserted = await conn.fetchval(
        "WITH created AS (INSERT INTO referral.referrals (id, person_id, intake_id, sender_org,"
        " target, purpose, status, explanation, origin, part_of)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'awaiting_consent', $7, $8, $9)"
        " ON CONFLICT (id) DO NOTHING RETURNING id), told AS ("
        + _HISTORY.format(rows="SELECT id, NULL, 'awaiting_consent', 'create', $10, $11, $12"
                          " FROM created") +
        f"), {added} SELECT count(*) > 0 FROM created, woke", *args, *more)
    return bool(inserted)


_HISTORY = ("INSERT INTO referral.referral_history (referral_id, from_status, status, actor,"
            " org, reason, detail) {rows}")


async def add_history(conn: asyncpg.Connection, referral_id: UUID, from_status: str | None,
                      status: str, org: str, action: str, reason: str | None,
                      detail: dict[str, Any] | None = None) -> None:
    await conn.execute(_HISTORY.format(rows="VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                       referral_id, from_status, status, action, org, reason, detail or {})


async def open_referral(conn: asyncpg.Connection, person_id: UUID, sender_org: str,
                        target: str, purpose: str, intake_id: UUID) -> asyncpg.Record | None:
    """The person's referral still open from this sender to this target for this purpose,
    other than the intake's own (locked)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM referral.referrals WHERE person_id = $1 AND sender_org = $2"
        " AND target = $3 AND purpose = $4 AND status = ANY($5::text[]) AND intake_id <> $6"
        " ORDER BY created_at, id LIMIT 1 FOR UPDATE",
        person_id, sender_org, target, purpose, OPEN_STATUSES, intake_id)
    return row


async def add_visit(conn: asyncpg.Connection, referral: asyncpg.Record, intake_id: UUID,
                    org: str, reason: str) -> bool:
    """A new contact joins the open referral: a row to find it by, and a line of its history
    (no change of status). False when it had joined already (a redelivered event)."""
    joined = await conn.fetchval(
        "INSERT INTO referral.visits (intake_id, referral_id) VALUES ($1, $2)"
        " ON CONFLICT (intake_id) DO NOTHING RETURNING true", intake_id, referral["id"])
    if joined:
        await conn.execute("UPDATE referral.referrals SET updated_at = now() WHERE id = $1",
                           referral["id"])
        await add_history(conn, referral["id"], referral["status"], referral["status"], org,
                          "visit", reason, {"intake_id": str(intake_id)})
    return bool(joined)


async def referrals_of_person(conn: asyncpg.Connection, person_id: UUID
                              ) -> tuple[list[asyncpg.Record], list[ConsentScope]]:
    """A person's referrals still running, locked, each with its target's `answer_days`, and
    the person's consents (none read when they have no referral: nothing to settle), in one
    statement. (The consents come as rows of the table's type, which asyncpg learns once per
    connection; after a migration changes that table, the first read on a connection fails
    once, asyncpg forgets the type, and the consumer's retry reads it again.)"""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT r.*, p.answer_days AS target_answer_days,"
        " ARRAY(SELECT c FROM referral.consents c WHERE c.person_id = $1) AS person_consents"
        " FROM referral.referrals r LEFT JOIN referral.partners p ON p.id = r.target"
        " WHERE r.person_id = $1 AND r.stopped_at IS NULL"
        " ORDER BY r.created_at, r.id FOR UPDATE OF r",
        person_id,
    )
    return rows, [_scope(c) for c in rows[0]["person_consents"]] if rows else []


async def lock_referral(conn: asyncpg.Connection, referral_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM referral.referrals WHERE id = $1 FOR UPDATE", referral_id)
    return row


async def set_status(conn: asyncpg.Connection, referral_id: UUID, from_status: str,
                     status: str, org: str, action: str, reason: str | None,
                     detail: dict[str, Any], *, timers: dict[Timer, datetime] | None = None,
                     events: Sequence[Event] = (), drop_timers: bool = False,
                     **columns: Any) -> None:
    """Move a referral (already locked) and record who, when and why, with its new `timers`
    (each kind's due time replaced, not fired) or its unfired timers dropped, and its
    `events` in the outbox, in one statement."""
    assert not (timers and drop_timers), "one statement cannot both add and drop timers"
    names = list(columns)
    args: list[Any] = [referral_id, status, from_status, action, org, reason, detail,
                       *[columns[n] for n in names]]
    sets = "".join(f", {name} = ${i + 8}" for i, name in enumerate(names))
    ctes = (f"moved AS (UPDATE referral.referrals SET status = $2, updated_at = now(){sets}"
            " WHERE id = $1 RETURNING id)")
    if timers:
        n = len(args)
        ctes += (", timed AS (INSERT INTO referral.timers (referral_id, kind, due_at)"
                 f" SELECT id, k, d FROM moved, unnest(${n + 1}::text[],"
                 f" ${n + 2}::timestamptz[]) AS u(k, d) {_TIMER_CONFLICT})")
        args += [[str(kind) for kind in timers], list(timers.values())]
    if drop_timers:
        ctes += (", dropped AS (DELETE FROM referral.timers t USING moved"
                 " WHERE t.referral_id = moved.id AND t.fired_at IS NULL)")
    woke = ""
    if events:
        added, more = outbox.adding(SCHEMA, events, len(args) + 1)
        ctes, woke, args = f"{ctes}, {added}", ", woke", args + more
    await conn.execute(f"WITH {ctes} " + _HISTORY.format(
        rows=f"SELECT id, $3, $2, $4, $5, $6, $7 FROM moved{woke}"), *args)


async def mark_stopped(conn: asyncpg.Connection, referral_id: UUID) -> None:
    await conn.execute("UPDATE referral.referrals SET stopped_at = now() WHERE id = $1",
                       referral_id)


async def inbox(db: Db, org: str, status: str | None, now: datetime,
                limit: int = 200) -> list[asyncpg.Record]:
    """The referrals handed off to the organisation, overdue first (by deadline), with what
    the consent lets the page say of the person (needs, age, commune)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT r.*, i.needs, i.age_bracket, i.commune, c.categories AS consent_categories,"
        " (r.status = 'requested' AND r.due_at < $3) AS overdue"
        " FROM referral.referrals r"
        " LEFT JOIN referral.intakes i ON i.intake_id = r.intake_id"
        " LEFT JOIN referral.consents c ON c.consent_id = r.consent_id AND c.status = 'active'"
        " WHERE r.target = $1 AND r.consent_id IS NOT NULL"
        " AND ($2::text IS NULL OR r.status = $2)"
        " ORDER BY overdue DESC, r.due_at ASC NULLS LAST, r.created_at DESC LIMIT $4",
        org, status, now, limit)
    return rows


async def sent(db: Db, org: str, status: str | None, limit: int = 200) -> list[asyncpg.Record]:
    """The referrals the organisation sent, newest first, each with its last step's detail
    (reason, outcome, text, proposal) and the follow-up it led to, if any."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT r.*, h.detail AS last_detail, f.target AS follow_up_target,"
        " f.status AS follow_up_status FROM referral.referrals r"
        " LEFT JOIN LATERAL (SELECT detail FROM referral.referral_history"
        "  WHERE referral_id = r.id ORDER BY id DESC LIMIT 1) h ON true"
        " LEFT JOIN LATERAL (SELECT target, status FROM referral.referrals"
        "  WHERE part_of = r.id ORDER BY created_at LIMIT 1) f ON true"
        " WHERE r.sender_org = $1 AND ($2::text IS NULL OR r.status = $2)"
        " ORDER BY r.updated_at DESC, r.id LIMIT $3", org, status, limit)
    return rows


async def commissions_of(db: Db, org: str) -> list[asyncpg.Record]:
    """The commissions the organisation is, or sits on (the directory's `members`)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT id, name, members FROM referral.partners WHERE kind = 'commission' AND active"
        " AND (id = $1 OR $1 = ANY(members)) ORDER BY name", org)
    return rows


async def sessions_of(db: Db, commissions: list[str]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT s.*, count(a.referral_id) AS items, count(a.decision) AS decided"
        " FROM referral.commission_sessions s LEFT JOIN referral.commission_agenda a"
        " ON a.session_id = s.id WHERE s.commission = ANY($1)"
        " GROUP BY s.id ORDER BY s.held_on DESC, s.created_at DESC LIMIT 100", commissions)
    return rows


async def agenda_details(db: Db, session_id: UUID) -> list[asyncpg.Record]:
    """A session's agenda, each referral with what its consent lets the commission read."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT a.*, r.status, r.sender_org, r.target, r.created_at, r.explanation,"
        " i.needs, i.age_bracket, i.commune, c.categories AS consent_categories,"
        " f.target AS follow_up_target FROM referral.commission_agenda a"
        " JOIN referral.referrals r ON r.id = a.referral_id"
        " LEFT JOIN referral.intakes i ON i.intake_id = r.intake_id"
        " LEFT JOIN referral.consents c ON c.consent_id = r.consent_id AND c.status = 'active'"
        " LEFT JOIN referral.referrals f ON f.id = a.follow_up"
        " WHERE a.session_id = $1 ORDER BY r.requested_at, r.id", session_id)
    return rows


async def overdue(db: Db, now: datetime, limit: int = 200) -> list[asyncpg.Record]:
    """Across the territory: referrals handed off and not answered by their deadline."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT id, sender_org, target, status, requested_at, due_at FROM referral.referrals"
        " WHERE status = 'requested' AND due_at < $1 ORDER BY due_at LIMIT $2", now, limit)
    return rows


async def partner_names(db: Db) -> dict[str, str]:
    return {r["id"]: r["name"] for r in await db.fetch("SELECT id, name FROM referral.partners")}


VISIBLE_TO = "(sender_org = {0} OR (target = {0} AND consent_id IS NOT NULL))"
"""The SQL of `domain.visible_to`: a recipient sees a referral once a consent handed it off."""


async def get_referral(db: Db, referral_id: UUID, org: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        f"SELECT * FROM referral.referrals WHERE id = $1 AND {VISIBLE_TO.format('$2')}",
        referral_id, org,
    )
    return row


async def every_referral_of(db: Db, person_id: UUID) -> list[asyncpg.Record]:
    """Every referral of the person, whoever sent or received it (their access request)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM referral.referrals WHERE person_id = $1 ORDER BY created_at, id",
        person_id)
    return rows


async def history(db: Db, referral_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT from_status, status, at, org, actor AS action, reason, detail"
        " FROM referral.referral_history WHERE referral_id = $1 ORDER BY id", referral_id)
    return rows


async def page_referrals(db: Db, org: str, role: str | None, status: str | None,
                         intake_id: UUID | None, after: tuple[datetime, UUID] | None,
                         limit: int) -> list[asyncpg.Record]:
    who = {"sender": "sender_org = $1",
           "recipient": "target = $1 AND consent_id IS NOT NULL"}.get(
        role or "", VISIBLE_TO.format("$1"))
    rows: list[asyncpg.Record] = await db.fetch(
        f"SELECT * FROM referral.referrals WHERE {who}"
        " AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR intake_id = $3"
        " OR id = (SELECT referral_id FROM referral.visits WHERE intake_id = $3))"
        " AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))"
        " ORDER BY created_at DESC, id DESC LIMIT $6",
        org, status, intake_id, after[0] if after else None, after[1] if after else None,
        limit,
    )
    return rows


# --- consents --------------------------------------------------------------------------------


async def upsert_consent(conn: asyncpg.Connection, person_id: UUID, scope: ConsentScope) -> None:
    """The grant. If its withdrawal came first, the closed record keeps its state and learns
    what the consent first allowed."""
    await conn.execute(
        "INSERT INTO referral.consents (consent_id, person_id, purposes, recipients,"
        " valid_until, status, categories, granted_purposes, granted_recipients)"
        " VALUES ($1, $2, $3, $4, $5, 'active', $6, $3, $4)"
        " ON CONFLICT (consent_id) DO UPDATE SET granted_purposes = $3,"
        " granted_recipients = $4, categories = $6, valid_until = LEAST("
        " referral.consents.valid_until, $5)",
        scope.consent_id, person_id, sorted(scope.purposes), sorted(scope.recipients),
        scope.valid_until, sorted(scope.categories),
    )


async def narrow_consent(conn: asyncpg.Connection, consent_id: UUID, person_id: UUID,
                         purposes: list[str], recipients: list[str], status: str,
                         at: datetime) -> None:
    """After a withdrawal or an expiry the consent allows only what remains. Arriving before
    its grant, it leaves a closed record so that the late grant opens nothing."""
    await conn.execute(
        "INSERT INTO referral.consents (consent_id, person_id, purposes, recipients,"
        " valid_until, status) VALUES ($1, $2, $3, $4, $6, $5)"
        " ON CONFLICT (consent_id) DO UPDATE SET purposes = $3, recipients = $4, status = $5,"
        " valid_until = CASE WHEN $5 = 'active' THEN referral.consents.valid_until"
        " ELSE LEAST(referral.consents.valid_until, $6) END",
        consent_id, person_id, purposes, recipients, status, at)


async def consents_of(conn: Db, person_id: UUID) -> list[ConsentScope]:
    rows = await conn.fetch("SELECT * FROM referral.consents WHERE person_id = $1", person_id)
    return [_scope(r) for r in rows]


def _scope(r: Any) -> ConsentScope:
    return ConsentScope(
        r["consent_id"], frozenset(r["purposes"]), frozenset(r["recipients"]),
        r["valid_until"], r["status"] == "active", r["status"],
        None if r["granted_purposes"] is None else frozenset(r["granted_purposes"]),
        None if r["granted_recipients"] is None else frozenset(r["granted_recipients"]),
        frozenset(r["categories"]))


# --- deadlines -------------------------------------------------------------------------------


_TIMER_CONFLICT = ("ON CONFLICT (referral_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at,"
                   " fired_at = NULL")


DUE_TIMERS = (
    "SELECT t.kind, t.due_at AS timer_due_at, r.* FROM referral.timers t"
    " JOIN referral.referrals r ON r.id = t.referral_id"
    " WHERE t.fired_at IS NULL AND t.due_at <= $1 ORDER BY t.due_at, t.kind"
    " LIMIT $2 FOR UPDATE OF t, r SKIP LOCKED")


async def lock_due_timers(conn: asyncpg.Connection, now: datetime,
                          limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(DUE_TIMERS, now, limit)
    return rows


async def fired(conn: asyncpg.Connection, referral_id: UUID, kind: str,
                now: datetime) -> None:
    await conn.execute("UPDATE referral.timers SET fired_at = $3 WHERE referral_id = $1"
                       " AND kind = $2", referral_id, kind, now)


CHAIN_ROOT = (
    "WITH RECURSIVE up AS (SELECT id, part_of, sender_org FROM referral.referrals"
    " WHERE id = $1 UNION ALL SELECT r.id, r.part_of, r.sender_org FROM referral.referrals r"
    " JOIN up ON r.id = up.part_of) SELECT id, sender_org FROM up WHERE part_of IS NULL")
"""The first referral of a chain (itself when it follows none)."""


async def chain_root(db: Db, referral_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(CHAIN_ROOT, referral_id)
    return row


async def chain(db: Db, root_id: UUID) -> list[asyncpg.Record]:
    """The first referral and every referral that follows it, oldest first, with the
    proposal of its last step (no intake, no consent, no free text: what the senders of the
    chain may see of each other's referrals)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "WITH RECURSIVE down AS (SELECT * FROM referral.referrals WHERE id = $1"
        " UNION ALL SELECT r.* FROM referral.referrals r JOIN down ON r.part_of = down.id)"
        " SELECT d.id, d.part_of, d.sender_org, d.target, d.purpose, d.status, d.origin,"
        " d.reject_reason, d.outcome, d.created_at, d.updated_at,"
        " h.detail ->> 'proposal' AS proposal FROM down d"
        " LEFT JOIN LATERAL (SELECT detail FROM referral.referral_history"
        "  WHERE referral_id = d.id ORDER BY id DESC LIMIT 1) h ON true"
        " ORDER BY d.created_at, d.id", root_id)
    return rows


async def last_proposal(db: Db, referral_id: UUID) -> str | None:
    """The next candidate proposed when the referral was rejected or expired, if any."""
    value: str | None = await db.fetchval(
        "SELECT detail ->> 'proposal' FROM referral.referral_history WHERE referral_id = $1"
        " AND status IN ('rejected', 'expired') ORDER BY id DESC LIMIT 1", referral_id)
    return value


async def tried_targets(conn: asyncpg.Connection, intake_id: UUID) -> set[str]:
    return {r["target"] for r in await conn.fetch(
        "SELECT target FROM referral.referrals WHERE intake_id = $1", intake_id)}


# --- the commission --------------------------------------------------------------------------


async def insert_session(conn: asyncpg.Connection, session_id: UUID, commission: str,
                         held_on: date, members: list[str],
                         referral_ids: Iterable[UUID]) -> None:
    await conn.execute(
        "INSERT INTO referral.commission_sessions (id, commission, held_on, members)"
        " VALUES ($1, $2, $3, $4)", session_id, commission, held_on, members)
    await conn.executemany(
        "INSERT INTO referral.commission_agenda (session_id, referral_id) VALUES ($1, $2)",
        [(session_id, r) for r in referral_ids])


async def open_for_commission(conn: asyncpg.Connection, commission: str) -> list[UUID]:
    """The commission's referrals handed off and not decided yet."""
    return [r["id"] for r in await conn.fetch(
        "SELECT id FROM referral.referrals r WHERE target = $1 AND status = ANY($2::text[])"
        " AND NOT EXISTS (SELECT 1 FROM referral.commission_agenda a"
        " WHERE a.referral_id = r.id AND a.decision IS NULL)"
        " ORDER BY requested_at, id", commission, ACTIVE_STATUSES)]


async def session(db: Db, session_id: UUID, org: str) -> asyncpg.Record | None:
    """A session, to its commission and the members present."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM referral.commission_sessions WHERE id = $1"
        " AND (commission = $2 OR $2 = ANY(members))", session_id, org)
    return row


async def agenda(db: Db, session_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT a.*, r.status FROM referral.commission_agenda a"
        " JOIN referral.referrals r ON r.id = a.referral_id WHERE a.session_id = $1"
        " ORDER BY r.requested_at, r.id", session_id)
    return rows


async def lock_agenda_item(conn: asyncpg.Connection, session_id: UUID,
                           referral_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM referral.commission_agenda WHERE session_id = $1 AND referral_id = $2"
        " FOR UPDATE", session_id, referral_id)
    return row


async def record_decision(conn: asyncpg.Connection, session_id: UUID, referral_id: UUID,
                          decision: str, partner: str | None, text: str,
                          follow_up: UUID | None) -> None:
    await conn.execute(
        "UPDATE referral.commission_agenda SET decision = $3, partner = $4, text = $5,"
        " follow_up = $6, decided_at = now() WHERE session_id = $1 AND referral_id = $2",
        session_id, referral_id, decision, partner, text, follow_up)


# --- statistics (counts of distinct people, for the funders) ---------------------------------

def _counted(alias: str = "", at: str = "contacted_at") -> str:
    """The rows of the period ($1 included, $2 excluded), at the site $3 (any if null), in
    the programmes' scope: $4 organisations paired with $5 sites (null: any site; a signal
    given no site counts for its organisation's programmes), every row when $4 is null
    (`stats.scoped` makes them from the programmes)."""
    a = f"{alias}." if alias else ""
    return (f"{a}{at} >= $1 AND {a}{at} < $2 AND ($3::text IS NULL OR {a}site = $3)"
            " AND ($4::text[] IS NULL OR EXISTS (SELECT 1 FROM unnest($4::text[], $5::text[])"
            f" AS p(p_org, p_site) WHERE p_org = {a}org AND (p_site IS NULL"
            f" OR {a}site IS NULL OR p_site = {a}site)))")


_PERIOD = _counted()
_PERIOD_I = _counted("i")


async def intake_counts(db: Db, start: datetime, end: datetime,
                        site: str | None, orgs: list[str] | None = None,
                        at: list[str | None] | None = None) -> list[asyncpg.Record]:
    """(dimension, key, people, intakes) for each figure about the intakes of the period."""
    rows: list[asyncpg.Record] = await db.fetch(
        f"WITH i AS (SELECT * FROM referral.intakes WHERE {_PERIOD})"
        " SELECT 'total' AS dimension, 'all' AS key, count(DISTINCT person_id) AS people,"
        " count(*) AS intakes FROM i"
        " UNION ALL SELECT 'site', site, count(DISTINCT person_id), count(*) FROM i GROUP BY site"
        " UNION ALL SELECT 'permanence', permanence, count(DISTINCT person_id), count(*) FROM i"
        " WHERE permanence IS NOT NULL GROUP BY permanence"
        " UNION ALL SELECT 'visit', CASE WHEN visit_number = 1 THEN 'first' ELSE 'returning'"
        " END, count(DISTINCT person_id), count(*) FROM i GROUP BY 2"
        " UNION ALL SELECT 'age_bracket', coalesce(age_bracket, 'unknown'),"
        " count(DISTINCT person_id), count(*) FROM i GROUP BY 2"
        " UNION ALL SELECT 'gender', coalesce(gender, 'not_given'), count(DISTINCT person_id),"
        " count(*) FROM i GROUP BY 2"
        " UNION ALL SELECT 'need', need, count(DISTINCT person_id), count(*)"
        " FROM i, unnest(needs) AS need GROUP BY need"
        " UNION ALL SELECT 'arrival', coalesce(arrival, 'not_given'), count(DISTINCT person_id),"
        " count(*) FROM i GROUP BY 2"
        " UNION ALL SELECT 'qpv', 'people', count(DISTINCT i.person_id), count(*) FROM i"
        " JOIN referral.sites s ON s.id = i.site WHERE s.qpv IS NOT NULL",
        start, end, site, orgs, at)
    return rows


async def durations(db: Db, start: datetime, end: datetime,
                    site: str | None, orgs: list[str] | None = None,
                    at: list[str | None] | None = None) -> list[asyncpg.Record]:
    """(person_id, duration_minutes) of the period's contacts whose duration was given."""
    rows: list[asyncpg.Record] = await db.fetch(
        f"SELECT person_id, duration_minutes FROM referral.intakes WHERE {_PERIOD}"
        " AND duration_minutes IS NOT NULL", start, end, site, orgs, at)
    return rows


async def referral_counts(db: Db, start: datetime, end: datetime,
                          site: str | None, orgs: list[str] | None = None,
                          at: list[str | None] | None = None) -> list[asyncpg.Record]:
    """(dimension, key, people, referrals) for the referrals of the period's intakes."""
    rows: list[asyncpg.Record] = await db.fetch(
        "WITH r AS (SELECT r.* FROM referral.referrals r JOIN referral.intakes i"
        f" ON i.intake_id = r.intake_id WHERE {_PERIOD_I})"
        " SELECT 'status' AS dimension, status AS key, count(DISTINCT person_id) AS people,"
        " count(*) AS referrals FROM r GROUP BY status"
        " UNION ALL SELECT 'target', target, count(DISTINCT person_id), count(*) FROM r"
        " GROUP BY target",
        start, end, site, orgs, at)
    return rows


async def answers(db: Db, start: datetime, end: datetime,
                  site: str | None, orgs: list[str] | None = None,
                  at: list[str | None] | None = None) -> list[asyncpg.Record]:
    """The handed-off referrals of the period: when asked, by when, when answered, how."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT r.person_id, r.requested_at, r.due_at, r.answered_at, r.status,"
        " EXISTS (SELECT 1 FROM referral.referral_history h WHERE h.referral_id = r.id"
        " AND h.status = 'accepted') AS accepted"
        " FROM referral.referrals r JOIN referral.intakes i ON i.intake_id = r.intake_id"
        f" WHERE r.requested_at IS NOT NULL AND {_PERIOD_I}",
        start, end, site, orgs, at)
    return rows


async def signal_received(conn: asyncpg.Connection, signal_id: UUID, org: str,
                          relay_kind: str, site: str | None, at: datetime) -> None:
    """A relay's signal, for the statistics (its closing may have come first)."""
    await conn.execute(
        "INSERT INTO referral.signals (signal_id, org, relay_kind, site, received_at)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signal_id) DO UPDATE SET"
        " org = EXCLUDED.org, relay_kind = EXCLUDED.relay_kind, site = EXCLUDED.site,"
        " received_at = EXCLUDED.received_at",
        signal_id, org, relay_kind, site, at)


async def signal_closed(conn: asyncpg.Connection, closed: SignalClosedV1) -> None:
    """A signal closed, answered by a contact or not (before or after it is known)."""
    await conn.execute(
        "INSERT INTO referral.signals (signal_id, relay_kind, closed_at, outcome, intake_id)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (signal_id) DO UPDATE SET"
        " closed_at = EXCLUDED.closed_at, outcome = EXCLUDED.outcome,"
        " intake_id = EXCLUDED.intake_id",
        closed.signal_id, closed.relay_kind, closed.closed_at, closed.outcome, closed.intake_id)


async def signal_counts(db: Db, start: datetime, end: datetime,
                        site: str | None, orgs: list[str] | None = None,
                        at: list[str | None] | None = None) -> list[asyncpg.Record]:
    """(relay_kind, received, answered) for the signals received in the period: answered,
    those a contact answered. Counts only: no name, no hint."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT relay_kind, count(*) AS received,"
        " count(*) FILTER (WHERE intake_id IS NOT NULL) AS answered FROM referral.signals"
        f" WHERE {_counted(at='received_at')}"
        " GROUP BY relay_kind",
        start, end, site, orgs, at)
    return rows


async def signal_delays(db: Db, start: datetime, end: datetime,
                        site: str | None, orgs: list[str] | None = None,
                        at: list[str | None] | None = None) -> list[float]:
    """Hours from each signal of the period to the contact that answered it (when the
    referral service knows that contact; never below zero)."""
    rows = await db.fetch(
        "SELECT greatest(extract(epoch FROM i.contacted_at - s.received_at), 0) / 3600"
        " AS hours FROM referral.signals s JOIN referral.intakes i USING (intake_id)"
        f" WHERE {_counted('s', 'received_at')}",
        start, end, site, orgs, at)
    return [float(r["hours"]) for r in rows]


async def upsert_places(conn: Db, directory: Directory) -> None:
    """The directory's sites and permanences; those no longer in it are kept, inactive, so
    that past figures keep their names."""
    await conn.execute("UPDATE referral.sites SET active = false WHERE id <> ALL($1::text[])",
                       [s.id for s in directory.sites])
    await conn.executemany(
        "INSERT INTO referral.sites (id, name, qpv) VALUES ($1, $2, $3) ON CONFLICT (id)"
        " DO UPDATE SET name = EXCLUDED.name, qpv = EXCLUDED.qpv, active = true",
        [(s.id, s.name, s.qpv) for s in directory.sites])
    await conn.execute(
        "UPDATE referral.permanences SET active = false WHERE id <> ALL($1::text[])",
        [p.id for p in directory.permanences])
    await conn.executemany(
        "INSERT INTO referral.permanences (id, site, mobile, weekdays) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (id) DO UPDATE SET site = EXCLUDED.site, mobile = EXCLUDED.mobile,"
        " weekdays = EXCLUDED.weekdays, active = true",
        [(p.id, p.site, p.mobile, [str(d) for d in calendar.weekdays(p)])
         for p in directory.permanences])


async def programmes(db: Db) -> list[Programme]:
    """The programmes of the directory, as the statistics scope them."""
    rows = await db.fetch("SELECT * FROM referral.programmes ORDER BY name")
    return [Programme.model_validate(dict(r)) for r in rows]


async def org_kind(db: Db, org: str) -> str | None:
    """The kind the directory gives an organisation (None: not in the directory)."""
    kind: str | None = await db.fetchval(
        "SELECT kind FROM referral.partners WHERE id = $1 AND active", org)
    return kind


async def stats_sites(db: Db) -> list[asyncpg.Record]:
    """(id, name) of the sites to filter the statistics by: the directory's, and any other
    that intakes name (name: None when the directory never named it)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT ids.id, s.name FROM (SELECT id FROM referral.sites WHERE active"
        " UNION SELECT DISTINCT site FROM referral.intakes) ids"
        " LEFT JOIN referral.sites s USING (id) ORDER BY coalesce(s.name, ids.id)")
    return rows


async def stats_places(db: Db) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Every site (id, name) and permanence (id, site, mobile, weekdays) the directory ever
    named, to name the figures."""
    sites: list[asyncpg.Record] = await db.fetch("SELECT id, name FROM referral.sites")
    permanences: list[asyncpg.Record] = await db.fetch(
        "SELECT id, site, mobile, weekdays FROM referral.permanences")
    return sites, permanences
