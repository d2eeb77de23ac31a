"""The consent service's SQL."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from schemas.api import ConsentIn

SCHEMA = "consent"


async def insert_consent(
    conn: asyncpg.Connection, consent_id: UUID, org: str, body: ConsentIn, notice_hash: bytes
) -> asyncpg.Record:
    """The consent and its `granted` line in the history, in one statement."""
    row: asyncpg.Record = await conn.fetchrow(
        "WITH added AS (INSERT INTO consent.consents (id, org, person_id, purposes, recipients,"
        " categories, notice_version, method, witness, captured_by, captured_at_site,"
        " valid_until, notice_hash, granted_at, evidence_sha256) VALUES ($1, $2, $3, $4, $5, $6,"
        " $7, $8, $9, $10, $11, $12, $13, COALESCE($14, now()), $15) RETURNING *),"
        " changed AS (INSERT INTO consent.consent_changes (consent_id, kind, purposes,"
        " recipients, org) SELECT id, 'granted', purposes, recipients, org FROM added)"
        " SELECT * FROM added",
        consent_id, org, body.person_id, list(body.purposes), body.recipients,
        list(body.categories), body.notice_version, body.method, body.witness,
        body.captured_by, body.captured_at_site, body.valid_until, notice_hash,
        body.granted_at, body.evidence_sha256,
    )
    return row


async def grant_checks(conn: asyncpg.Connection, person_id: UUID, version: str
                       ) -> tuple[bool, bytes | None]:
    """Before a consent is recorded, in one statement: whether the person restricted the
    processing of their data, and the hash of the notice they were shown (None: unknown)."""
    row = await conn.fetchrow(
        "SELECT EXISTS (SELECT 1 FROM consent.restricted WHERE person_id = $1) AS restricted,"
        " (SELECT hash FROM consent.notices WHERE version = $2) AS hash", person_id, version)
    assert row is not None
    return row["restricted"], row["hash"]


async def notice(db: asyncpg.Pool | asyncpg.Connection, version: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM consent.notices WHERE version = $1", version)
    return row


async def current_notice(db: asyncpg.Pool | asyncpg.Connection,
                         language: str = "fr") -> asyncpg.Record | None:
    """The notice people are shown now: the last one registered in their language."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM consent.notices WHERE language = $1"
        " ORDER BY created_at DESC, version DESC LIMIT 1", language)
    return row


async def insert_notice(conn: asyncpg.Connection, version: str, language: str, text: str,
                        digest: bytes, org: str) -> asyncpg.Record | None:
    """None when the version exists already (a notice never changes)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "INSERT INTO consent.notices (version, language, text, hash, org)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING *",
        version, language, text, digest, org)
    return row


async def get_consent(pool: asyncpg.Pool, consent_id: UUID, org: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT * FROM consent.consents WHERE id = $1 AND org = $2", consent_id, org
    )
    return row


async def add_change(conn: asyncpg.Connection, consent_id: UUID, kind: str, purposes: list[str],
                     recipients: list[str], org: str, requested_by: str | None = None,
                     channel: str | None = None) -> None:
    await conn.execute(
        "INSERT INTO consent.consent_changes (consent_id, kind, purposes, recipients,"
        " requested_by, channel, org) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        consent_id, kind, purposes, recipients, requested_by, channel, org,
    )


async def lock_consent(conn: asyncpg.Connection, consent_id: UUID,
                       org: str) -> asyncpg.Record | None:
    """A consent the organisation recorded or is a recipient of."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM consent.consents WHERE id = $1 AND (org = $2 OR $2 = ANY(recipients))"
        " FOR UPDATE", consent_id, org)
    return row


async def set_scope(conn: asyncpg.Connection, consent_id: UUID, purposes: list[str],
                    recipients: list[str], status: str) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "UPDATE consent.consents SET purposes = $2, recipients = $3, status = $4"
        " WHERE id = $1 RETURNING *", consent_id, purposes, recipients, status)
    return row


async def lock_expired(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM consent.consents WHERE status = 'active' AND valid_until <= now()"
        " ORDER BY valid_until LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
    return rows


async def consents_of(pool: asyncpg.Pool, person_id: UUID, org: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM consent.consents WHERE person_id = $1"
        " AND (org = $2 OR $2 = ANY(recipients)) ORDER BY granted_at", person_id, org)
    return rows


async def changes_of(pool: asyncpg.Pool, consent_ids: list[UUID]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM consent.consent_changes WHERE consent_id = ANY($1) ORDER BY id",
        consent_ids)
    return rows


async def every_consent_of(pool: asyncpg.Pool, person_id: UUID) -> list[asyncpg.Record]:
    """A person's consents, whichever organisation recorded them: for auditors only
    (`audit:read` is territory-wide; consents carry no personal data)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM consent.consents WHERE person_id = $1 ORDER BY granted_at", person_id)
    return rows


async def active_consents_of(conn: asyncpg.Connection, person_id: UUID) -> list[asyncpg.Record]:
    """The person's active consents, locked (a restriction withdraws them all)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM consent.consents WHERE person_id = $1 AND status = 'active'"
        " ORDER BY granted_at FOR UPDATE", person_id)
    return rows


async def set_restricted(conn: asyncpg.Connection, person_id: UUID,
                         since: datetime | None) -> None:
    """The person restricted since then, or no longer (None)."""
    if since is None:
        await conn.execute("DELETE FROM consent.restricted WHERE person_id = $1", person_id)
    else:
        await conn.execute("INSERT INTO consent.restricted (person_id, since) VALUES ($1, $2)"
                           " ON CONFLICT DO NOTHING", person_id, since)


async def restricted_since(db: asyncpg.Connection | asyncpg.Pool,
                           person_id: UUID) -> datetime | None:
    since: datetime | None = await db.fetchval(
        "SELECT since FROM consent.restricted WHERE person_id = $1", person_id)
    return since


async def insert_receipt(pool: asyncpg.Pool, receipt_id: UUID, person_id: UUID,
                         consent_id: UUID, org: str, code_hash: bytes, created_by: str) -> None:
    await pool.execute(
        "INSERT INTO consent.receipts (id, person_id, consent_id, org, code_hash, created_by)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        receipt_id, person_id, consent_id, org, code_hash, created_by)


async def receipt(pool: asyncpg.Pool, receipt_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT * FROM consent.receipts WHERE id = $1 AND revoked_at IS NULL", receipt_id)
    return row


async def receipt_by_code(pool: asyncpg.Pool, code_hash: bytes) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT * FROM consent.receipts WHERE code_hash = $1 AND revoked_at IS NULL",
        code_hash)
    return row


async def lock_consent_of_person(conn: asyncpg.Connection, consent_id: UUID,
                                 person_id: UUID) -> asyncpg.Record | None:
    """One of the person's own consents, whichever organisation recorded it."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM consent.consents WHERE id = $1 AND person_id = $2 FOR UPDATE",
        consent_id, person_id)
    return row


async def keep_names(db: asyncpg.Pool | asyncpg.Connection,
                     names: dict[str, str]) -> None:
    """The directory's names of organisations (an organisation that left keeps its name:
    old consents still name it)."""
    if names:
        await db.executemany(
            "INSERT INTO consent.organisations (id, name) VALUES ($1, $2)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name"
            " WHERE organisations.name <> EXCLUDED.name", list(names.items()))


async def names(pool: asyncpg.Pool) -> dict[str, str]:
    return {r["id"]: r["name"] for r in await pool.fetch(
        "SELECT id, name FROM consent.organisations")}
