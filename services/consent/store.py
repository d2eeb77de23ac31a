"""The consent service's SQL."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from schemas.api import ConsentIn

SCHEMA = "consent"


async def insert_consent(
    conn: asyncpg.Connection, consent_id: UUID, org: str, body: ConsentIn
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO consent.consents (id, org, person_id, purposes, recipients, categories,"
        " notice_version, method, witness, captured_by, captured_at_site, valid_until)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *",
        consent_id, org, body.person_id, list(body.purposes), body.recipients,
        list(body.categories), body.notice_version, body.method, body.witness,
        body.captured_by, body.captured_at_site, body.valid_until,
    )
    return row


async def get_consent(pool: asyncpg.Pool, consent_id: UUID, org: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await pool.fetchrow(
        "SELECT * FROM consent.consents WHERE id = $1 AND org = $2", consent_id, org
    )
    return row
