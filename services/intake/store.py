"""The intake service's SQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from schemas.api import IntakeIn

SCHEMA = "intake"
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def visits_so_far(conn: asyncpg.Connection, person_id: UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM intake.intakes WHERE person_id = $1", person_id
    )
    return count


async def insert_intake(
    conn: asyncpg.Connection, intake_id: UUID, org: str, person_id: UUID, site: str,
    body: IntakeIn, age_bracket: str | None, visit_number: int, note: bytes | None,
    basis: str,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO intake.intakes (id, org, person_id, site, channel, contacted_at,"
        " duration_minutes, needs, flags, age_bracket, commune, visit_number, note,"
        " has_identity, signal_id, permanence, gender, basis)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,"
        " $18) RETURNING *",
        intake_id, org, person_id, site, body.channel, body.contacted_at,
        body.duration_minutes, list(body.needs), list(body.flags), age_bracket,
        body.commune, visit_number, note, body.identity is not None, body.signal_id,
        body.permanence, body.gender, basis,
    )
    return row


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


async def set_identity(conn: asyncpg.Connection, person_id: UUID, sealed: bytes) -> None:
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
    """Crypto-shredding: the key goes, and with it every sealed copy."""
    await conn.execute(
        "UPDATE intake.people SET wrapped_key = NULL, identity = NULL, erased_at = now()"
        " WHERE person_id = $1",
        person_id,
    )
    await conn.execute("UPDATE intake.intakes SET note = NULL WHERE person_id = $1", person_id)
    await conn.execute("DELETE FROM intake.cards WHERE person_id = $1", person_id)
    await conn.execute("UPDATE intake.signals SET hint = NULL WHERE id IN"
                       " (SELECT signal_id FROM intake.intakes WHERE person_id = $1)", person_id)


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


# --- consents seen (projection of consent.* events) ------------------------------------------

async def upsert_consent(conn: asyncpg.Connection, data: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO intake.consents (consent_id, person_id, purposes, recipients, categories,"
        " valid_until, status, org) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7)"
        " ON CONFLICT (consent_id) DO UPDATE SET org = EXCLUDED.org",
        data["consent_id"], data["person_id"], data["purposes"], data["recipients"],
        data["categories"], data["valid_until"], data["org"],
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


async def standing_facts(db: Db, person_id: UUID) -> tuple[set[str], list[asyncpg.Record]]:
    """What the access rule needs about a person: who met them, and their consents."""
    return await orgs_that_met(db, person_id), await consents_of(db, person_id)


async def consents_of(db: Db, person_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM intake.consents WHERE person_id = $1", person_id
    )
    return rows


# --- signals -------------------------------------------------------------------------------

async def insert_signal(conn: asyncpg.Connection, signal_id: UUID, org: str,
                        values: dict[str, Any], hint: bytes | None) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO intake.signals (id, org, relay_kind, relay_name, commune, site,"
        " age_bracket, needs, hint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *",
        signal_id, org, values["relay_kind"], values["relay_name"], values.get("commune"),
        values.get("site"), values.get("age_bracket"), values.get("needs", []), hint,
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


# --- the directory -------------------------------------------------------------------------

async def directory(db: Db) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT version, document FROM intake.directory")
    return row


async def save_directory(conn: asyncpg.Connection, document: dict[str, Any]) -> int:
    version: int = await conn.fetchval(
        "INSERT INTO intake.directory AS d (version, document) VALUES (1, $1)"
        " ON CONFLICT (id) DO UPDATE SET version = d.version + 1, document = EXCLUDED.document,"
        " updated_at = now() RETURNING version",
        document,
    )
    return version
