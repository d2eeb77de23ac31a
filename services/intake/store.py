"""The intake service's SQL."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from schemas.api import IntakeIn

SCHEMA = "intake"


async def visits_so_far(conn: asyncpg.Connection, person_id: UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM intake.intakes WHERE person_id = $1", person_id
    )
    return count


async def insert_intake(
    conn: asyncpg.Connection, intake_id: UUID, org: str, person_id: UUID, body: IntakeIn,
    visit_number: int,
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO intake.intakes (id, org, person_id, site, channel, contacted_at,"
        " duration_minutes, needs, flags, age_bracket, commune, visit_number)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING *",
        intake_id, org, person_id, body.site, body.channel, body.contacted_at,
        body.duration_minutes, list(body.needs), list(body.flags), body.age_bracket,
        body.commune, visit_number,
    )
    return row


async def get_intake(conn: asyncpg.Connection | asyncpg.Pool, intake_id: UUID,
                     org: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM intake.intakes WHERE id = $1 AND org = $2", intake_id, org
    )
    return row
