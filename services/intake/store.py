"""The intake service's SQL."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any, NamedTuple, TypeAlias
from uuid import UUID

import asyncpg

SCHEMA = "intake"
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def visits_so_far(conn: asyncpg.Connection, person_id: UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM intake.intakes WHERE person_id = $1", person_id
    )
    return count


async def insert_intake(conn: asyncpg.Connection, values: dict[str, object]) -> asyncpg.Record:
    """The contact (`values`: its columns by name, `intake_values`), and the person's last
    activity kept current with it (one statement)."""
    row: asyncpg.Record = await conn.fetchrow(
        f"WITH {_intake_writes(values, 1, '', '*')} SELECT * FROM i", *values.values())
    return row


def new_intake_writes(values: dict[str, object]) -> Callable[[int, str], tuple[str, list[object]]]:
    """`insert_intake`'s writes as items of a `WITH`, made only under a condition
    (`idempotency.once_in_one_statement`)."""
    def writes(first: int, when: str) -> tuple[str, list[object]]:
        return _intake_writes(values, first, when, "person_id, contacted_at"), list(
            values.values())

    return writes


def _intake_writes(values: dict[str, object], first: int, when: str, returning: str) -> str:
    """`i`, the contact (its parameters from `$first`, written only if `when`, if any), and
    `a`, the person's last activity kept current with it."""
    return (f"i AS (INSERT INTO intake.intakes ({', '.join(values)})"
            f" SELECT {_params(first, len(values))}{f' WHERE {when}' if when else ''}"
            f" RETURNING {returning}), a AS ("
            + _TOUCH.format(rows="SELECT person_id, contacted_at FROM i") + ")")


def _params(first: int, count: int) -> str:
    return ", ".join(f"${first + i}" for i in range(count))


async def get_intake(db: Db, intake_id: UUID, orgs: set[str]) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM intake.intakes WHERE id = $1 AND org = ANY($2)", intake_id, sorted(orgs)
    )
    return row


async def page_intakes(db: Db, orgs: set[str], site: str | None, since: datetime | None,
                       after: tuple[datetime, UUID] | None, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM intake.intakes WHERE org = ANY($1)"
        " AND ($2::text IS NULL OR site = $2)"
        " AND ($3::timestamptz IS NULL OR contacted_at >= $3)"
        " AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5::uuid))"
        " ORDER BY created_at, id LIMIT $6",
        sorted(orgs), site, since, after[0] if after else None, after[1] if after else None,
        limit,
    )
    return rows


# --- the vault -----------------------------------------------------------------------------

async def person(db: Db, person_id: UUID, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM intake.people WHERE person_id = $1" + (" FOR UPDATE" if lock else ""),
        person_id,
    )
    return row


async def insert_person(conn: asyncpg.Connection, person_id: UUID, wrapped_key: bytes) -> None:
    await conn.execute(
        "INSERT INTO intake.people (person_id, wrapped_key) VALUES ($1, $2)",
        person_id, wrapped_key,
    )


async def set_identity(conn: asyncpg.Connection, person_id: UUID, sealed: bytes | None
                       ) -> None:
    await conn.execute(
        "UPDATE intake.people SET identity = $2, updated_at = now() WHERE person_id = $1",
        person_id, sealed,
    )


async def notes_of(db: Db, person_id: UUID) -> list[bytes]:
    rows = await db.fetch(
        "SELECT note FROM intake.intakes WHERE person_id = $1 AND note IS NOT NULL"
        " ORDER BY contacted_at, id",
        person_id,
    )
    return [r["note"] for r in rows]


async def orgs_that_met(db: Db, person_id: UUID) -> set[str]:
    """The organisations that met the person on their own grounds (not under a consent)."""
    rows = await db.fetch("SELECT DISTINCT org FROM intake.intakes WHERE person_id = $1"
                          " AND basis = 'met'", person_id)
    return {r["org"] for r in rows}


async def erase(conn: asyncpg.Connection, person_id: UUID) -> None:
    """Crypto-shredding: the key goes, and with it every sealed copy; the person's contacts
    no longer hold an identity or a note, and say so."""
    await conn.execute(
        "UPDATE intake.people SET wrapped_key = NULL, identity = NULL, erased_at = now()"
        " WHERE person_id = $1",
        person_id,
    )
    await conn.execute("UPDATE intake.intakes SET note = NULL, has_identity = false"
                       " WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM intake.cards WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM intake.name_index WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM intake.evidence WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM intake.activity WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM intake.restrictions WHERE person_id = $1", person_id)
    await conn.execute("UPDATE intake.signals SET hint = NULL WHERE id IN"
                       " (SELECT signal_id FROM intake.intakes WHERE person_id = $1)", person_id)


# A person's last activity: their latest contact, or one seen in another service's event
# (the latest one stays; a later one only is written).
_TOUCH = ("INSERT INTO intake.activity (person_id, last_at) {rows} ON CONFLICT (person_id)"
          " DO UPDATE SET last_at = EXCLUDED.last_at"
          " WHERE intake.activity.last_at < EXCLUDED.last_at")


async def touch_activity(conn: asyncpg.Connection, person_id: UUID, at: datetime) -> None:
    """An activity of the person seen in another service's event."""
    await conn.execute(_TOUCH.format(rows="VALUES ($1, $2)"), person_id, at)


# The people past the cut-off, by the index on `activity.last_at` (every contact keeps it
# current): never a read of the whole intakes table (tests/integration/test_hot_queries.py).
# Each candidate's last contact is read too (by intakes_person_contacted): a process of the
# previous version, during a rolling upgrade, records contacts without touching `activity`.
_LAST_ACTIVITY = """
    SELECT a.person_id, greatest(a.last_at, c.last_contact) AS last_activity,
           (SELECT array_agg(DISTINCT i.org ORDER BY i.org) FROM intake.intakes i
            WHERE i.person_id = a.person_id AND i.basis = 'met') AS orgs
    FROM intake.activity a
    CROSS JOIN LATERAL (SELECT max(i.contacted_at) AS last_contact FROM intake.intakes i
                        WHERE i.person_id = a.person_id) c
    LEFT JOIN intake.people p ON p.person_id = a.person_id
    WHERE a.last_at < $1 {where}
      AND greatest(a.last_at, c.last_contact) < $1
      AND c.last_contact IS NOT NULL
      AND p.erased_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM intake.consents k WHERE k.person_id = a.person_id
                      AND k.status = 'active' AND k.valid_until > $2)
      AND NOT EXISTS (SELECT 1 FROM intake.restrictions r WHERE r.person_id = a.person_id)
"""


async def retention_candidates(db: Db, before: datetime, now: datetime
                               ) -> list[asyncpg.Record]:
    """People not erased, with no live consent and no restriction (the person asked that
    their data be kept, not processed: art. 18), whose last activity (contact, or one seen in
    the other services' events) is before `before`: their id, last activity and the
    organisations that met them."""
    rows: list[asyncpg.Record] = await db.fetch(_LAST_ACTIVITY.format(where=""), before, now)
    return rows


async def retention_candidate(conn: asyncpg.Connection, person_id: UUID, before: datetime,
                              now: datetime) -> asyncpg.Record | None:
    """The same for one person (read again under their lock, before erasing them)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        _LAST_ACTIVITY.format(where="AND a.person_id = $3"), before, now, person_id)
    return row


async def contacts_of(db: Db, person_id: UUID) -> list[asyncpg.Record]:
    """Every contact of the person, whichever organisation recorded it (their access
    request)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM intake.intakes WHERE person_id = $1 ORDER BY contacted_at, id",
        person_id)
    return rows


async def reads_of(db: Db, person_id: UUID) -> list[asyncpg.Record]:
    """Who read the person's data, when, under which consent (the access log)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT at, org, client_id, consent_id, categories FROM intake.access_log"
        " WHERE person_id = $1 ORDER BY at, id", person_id)
    return rows


async def restriction(db: Db, person_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        'SELECT person_id, "right", org, since FROM intake.restrictions WHERE person_id = $1',
        person_id)
    return row


async def restrict(conn: asyncpg.Connection, person_id: UUID, right: str, org: str
                   ) -> tuple[asyncpg.Record, bool]:
    """The restriction, and whether it is new (one already there stays as it was)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        'INSERT INTO intake.restrictions (person_id, "right", org) VALUES ($1, $2, $3)'
        ' ON CONFLICT DO NOTHING RETURNING person_id, "right", org, since', person_id, right, org)
    if row is not None:
        return row, True
    known = await restriction(conn, person_id)
    assert known is not None
    return known, False


async def lift_restriction(conn: asyncpg.Connection, person_id: UUID) -> bool:
    status: str = await conn.execute("DELETE FROM intake.restrictions WHERE person_id = $1",
                                     person_id)
    return status.endswith(" 1")


async def erased_count(db: Db) -> int:
    count: int = await db.fetchval("SELECT count(*) FROM intake.people"
                                   " WHERE erased_at IS NOT NULL")
    return count


async def erased_people(db: Db) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT person_id, erased_at FROM intake.people WHERE erased_at IS NOT NULL")
    return rows


async def not_erased(conn: asyncpg.Connection, person_ids: list[UUID]) -> list[UUID]:
    """Those of `person_ids` that the database does not show as erased."""
    rows = await conn.fetch(
        "SELECT id FROM unnest($1::uuid[]) AS id WHERE NOT EXISTS (SELECT 1 FROM intake.people"
        " p WHERE p.person_id = id AND p.erased_at IS NOT NULL)", person_ids)
    return [r["id"] for r in rows]


async def add_evidence(conn: asyncpg.Connection, person_id: UUID, sha256: str, kind: str,
                       media_type: str, size: int, sealed: bytes,
                       org: str) -> tuple[asyncpg.Record, bool]:
    """The evidence row, and whether it is new (the same image again is the same row)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO intake.evidence (person_id, sha256, kind, media_type, size, sealed, org)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
        " RETURNING person_id, sha256, kind, media_type, size, created_at",
        person_id, sha256, kind, media_type, size, sealed, org)
    if row is not None:
        return row, True
    return await evidence(conn, person_id, sha256), False


async def evidence(db: Db, person_id: UUID, sha256: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM intake.evidence WHERE person_id = $1 AND sha256 = $2",
        person_id, sha256)
    return row


async def log_access(conn: asyncpg.Connection, person_id: UUID, org: str, client_id: str,
                     consent_id: UUID | None, categories: list[str]) -> None:
    await conn.execute(
        "INSERT INTO intake.access_log (person_id, org, client_id, consent_id, categories)"
        " VALUES ($1, $2, $3, $4, $5)",
        person_id, org, client_id, consent_id, categories,
    )


# --- the person's card -----------------------------------------------------------------------

async def replace_cards(conn: asyncpg.Connection, card_id: UUID, person_id: UUID,
                        code_hash: bytes, org: str, created_by: str) -> int:
    """A new card for the person; their earlier cards stop working. How many it replaced."""
    replaced: str = await conn.execute(
        "UPDATE intake.cards SET revoked_at = now() WHERE person_id = $1"
        " AND revoked_at IS NULL", person_id)
    await conn.execute(
        "INSERT INTO intake.cards (id, person_id, code_hash, org, created_by)"
        " VALUES ($1, $2, $3, $4, $5)",
        card_id, person_id, code_hash, org, created_by)
    return int(replaced.split()[-1])


async def person_of_card(db: Db, code_hash: bytes) -> UUID | None:
    """The person whose valid card has this code's hash."""
    found: UUID | None = await db.fetchval(
        "SELECT person_id FROM intake.cards WHERE code_hash = $1 AND revoked_at IS NULL",
        code_hash)
    return found


# --- the search by name (a keyed blind index, services/intake/names.py) --------------------

async def replace_name_terms(conn: asyncpg.Connection, person_id: UUID,
                             terms: Collection[bytes]) -> None:
    """The person's index terms, as their identity now says (none: not findable by name),
    in one round trip: the others go, the new ones come, those kept stay."""
    await conn.execute(
        "WITH gone AS (DELETE FROM intake.name_index WHERE person_id = $2"
        "  AND term <> ALL($1::bytea[]))"
        " INSERT INTO intake.name_index (term, person_id)"
        " SELECT t, $2 FROM unnest($1::bytea[]) AS t ON CONFLICT DO NOTHING",
        sorted(terms), person_id)


PEOPLE_NAMED = (
    "SELECT p.person_id, p.wrapped_key, p.identity, v.visits, v.last_at, v.intake_ids"
    " FROM intake.name_index n"
    " JOIN intake.people p ON p.person_id = n.person_id AND p.erased_at IS NULL"
    "  AND p.identity IS NOT NULL AND p.wrapped_key IS NOT NULL"
    " CROSS JOIN LATERAL (SELECT count(*) AS visits, max(i.contacted_at) AS last_at,"
    "  array_agg(i.id ORDER BY i.contacted_at, i.id) AS intake_ids FROM intake.intakes i"
    "  WHERE i.person_id = n.person_id AND i.org = $2) v"
    " WHERE n.term = $1 AND EXISTS (SELECT 1 FROM intake.intakes m"
    "  WHERE m.person_id = n.person_id AND m.org = $2 AND m.basis = 'met')"
    " AND NOT EXISTS (SELECT 1 FROM intake.restrictions r WHERE r.person_id = n.person_id)"
    " ORDER BY v.last_at DESC, p.person_id LIMIT $3"
)
"""The people with this index term whom the organisation met (services/runtime/access.py:
"met", as for a card), with the organisation's contacts with them: one equality on the
indexed `term`, then each match's intakes by their person index. No other person is read;
nor a person whose processing is restricted at their request (services/intake/rights.py)."""


async def people_named(db: Db, term: bytes, org: str, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(PEOPLE_NAMED, term, org, limit)
    return rows


async def visits_by(db: Db, person_id: UUID, org: str) -> asyncpg.Record:
    """How many contacts the organisation recorded with the person, and the last one's time."""
    row: asyncpg.Record = await db.fetchrow(
        "SELECT count(*) AS visits, max(contacted_at) AS last_at FROM intake.intakes"
        " WHERE person_id = $1 AND org = $2", person_id, org)
    return row


async def people_to_index(conn: asyncpg.Connection, after: UUID | None,
                          limit: int) -> list[asyncpg.Record]:
    """The next people with a sealed identity, locked until the caller's transaction ends (a
    contact that changes the identity meanwhile waits, then writes its own terms)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT person_id, wrapped_key, identity FROM intake.people"
        " WHERE identity IS NOT NULL AND wrapped_key IS NOT NULL AND erased_at IS NULL"
        " AND ($1::uuid IS NULL OR person_id > $1) ORDER BY person_id LIMIT $2"
        " FOR UPDATE", after, limit)
    return rows


# --- consents seen (projection of consent.* events) ------------------------------------------

async def upsert_consent(conn: asyncpg.Connection, data: dict[str, Any], at: datetime) -> None:
    """The grant, and the person's activity at `at` (the event's time), in one statement."""
    await conn.execute(
        "WITH granted AS (INSERT INTO intake.consents (consent_id, person_id, purposes,"
        " recipients, categories, valid_until, status, org)"
        " VALUES ($1, $2, $3, $4, $5, $6, 'active', $7)"
        " ON CONFLICT (consent_id) DO UPDATE SET org = EXCLUDED.org) "
        + _TOUCH.format(rows="VALUES ($2, $8)"),
        data["consent_id"], data["person_id"], data["purposes"], data["recipients"],
        data["categories"], data["valid_until"], data["org"], at,
    )


async def narrow_consent(conn: asyncpg.Connection, consent_id: UUID, person_id: UUID,
                         purposes: list[str], recipients: list[str], status: str) -> None:
    """A withdrawal or an expiry; one that arrives before its grant leaves a closed record,
    so that the late grant opens nothing."""
    await conn.execute(
        "INSERT INTO intake.consents AS c (consent_id, person_id, purposes, recipients,"
        " categories, valid_until, status) VALUES ($1, $2, $3, $4, '{}', now(), $5)"
        " ON CONFLICT (consent_id) DO UPDATE SET purposes = $3, recipients = $4, status = $5",
        consent_id, person_id, purposes, recipients, status)


class StandingFacts(NamedTuple):
    met_by: set[str]
    consents: list[asyncpg.Record]
    restricted: bool


async def standing_facts(db: Db, person_id: UUID) -> StandingFacts:
    """What the access rule needs about a person, in one statement: who met them, their
    consents, and whether they restricted the processing of their data (art. 18)."""
    rows = await db.fetch(
        "SELECT c.*, f.met_by, f.restricted FROM (SELECT"
        " ARRAY(SELECT DISTINCT org FROM intake.intakes WHERE person_id = $1"
        "       AND basis = 'met') AS met_by,"
        " EXISTS (SELECT 1 FROM intake.restrictions WHERE person_id = $1) AS restricted) f"
        " LEFT JOIN intake.consents c ON c.person_id = $1", person_id)
    return StandingFacts(set(rows[0]["met_by"]), [r for r in rows if r["consent_id"] is not None],
                         rows[0]["restricted"])


# --- signals -------------------------------------------------------------------------------

async def insert_signal(conn: asyncpg.Connection, signal_id: UUID, org: str,
                        values: dict[str, Any], hint: bytes | None,
                        relay_id: UUID | None = None) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO intake.signals (id, org, relay_kind, relay_name, commune, site,"
        " age_bracket, needs, hint, relay_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        signal_id, org, values["relay_kind"], values["relay_name"], values.get("commune"),
        values.get("site"), values.get("age_bracket"), values.get("needs", []), hint, relay_id,
    )
    return row


async def get_signal(db: Db, signal_id: UUID, org: str,
                     lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM intake.signals WHERE id = $1 AND org = $2"
        + (" FOR UPDATE" if lock else ""),
        signal_id, org,
    )
    return row


async def close_signal(conn: asyncpg.Connection, signal_id: UUID, outcome: str,
                       intake_id: UUID | None) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "UPDATE intake.signals SET status = 'closed', outcome = $2, intake_id = $3,"
        " closed_at = now() WHERE id = $1 RETURNING *",
        signal_id, outcome, intake_id,
    )
    return row


async def list_signals(db: Db, org: str, status: str | None, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM intake.signals WHERE org = $1 AND ($2::text IS NULL OR status = $2)"
        " ORDER BY created_at DESC LIMIT $3",
        org, status, limit,
    )
    return rows


# --- the relays of the network (their personal links, services/intake/relays.py) -------------

async def insert_relay(conn: Db, relay_id: UUID, org: str, kind: str, name: str,
                       link_hash: bytes, created_by: str) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO intake.relays (id, org, kind, name, link_hash, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        relay_id, org, kind, name, link_hash, created_by)
    return row


async def relay_by_link(db: Db, link_hash: bytes) -> asyncpg.Record | None:
    """The relay whose link has this hash, revoked or not."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM intake.relays WHERE link_hash = $1", link_hash)
    return row


async def relay_still_active(conn: asyncpg.Connection, relay_id: UUID) -> bool:
    """Whether the relay's link still works, its row share-locked until the caller's
    transaction ends (a revocation waits for a signal being recorded, or stops it)."""
    found: bool | None = await conn.fetchval(
        "SELECT true FROM intake.relays WHERE id = $1 AND revoked_at IS NULL FOR SHARE",
        relay_id)
    return bool(found)


async def relays(db: Db) -> list[asyncpg.Record]:
    """Every relay, the active ones first, with how many signals it sent and how many are
    still open (no hint: the coordination reads no personal data)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT r.id, r.org, r.kind, r.name, r.created_by, r.created_at, r.revoked_by,"
        " r.revoked_at, count(s.id) AS signals,"
        " count(s.id) FILTER (WHERE s.status = 'open') AS open_signals"
        " FROM intake.relays r LEFT JOIN intake.signals s ON s.relay_id = r.id"
        " GROUP BY r.id ORDER BY r.revoked_at IS NOT NULL, r.created_at DESC, r.id")
    return rows


async def revoke_relay(conn: Db, relay_id: UUID, revoked_by: str) -> asyncpg.Record | None:
    """The relay, its link revoked now (or before: revoked once, by whoever did it first)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "UPDATE intake.relays SET revoked_at = coalesce(revoked_at, now()),"
        " revoked_by = coalesce(revoked_by, $2) WHERE id = $1 RETURNING *",
        relay_id, revoked_by)
    return row


# --- the directory -------------------------------------------------------------------------

async def directory(db: Db) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT version, document FROM intake.directory")
    return row


async def directory_for_update(conn: asyncpg.Connection) -> asyncpg.Record | None:
    """The directory, locked until the caller's transaction ends (one edit at a time)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT version, document FROM intake.directory FOR UPDATE")
    return row


async def save_directory(conn: asyncpg.Connection, document: dict[str, Any]) -> int:
    version: int = await conn.fetchval(
        "INSERT INTO intake.directory AS d (version, document) VALUES (1, $1)"
        " ON CONFLICT (id) DO UPDATE SET version = d.version + 1, document = EXCLUDED.document,"
        " updated_at = now() RETURNING version",
        document,
    )
    return version
