"""The notify service's SQL."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from services.directory import Directory
from services.notify.domain import Draft

SCHEMA = "notify"
PENDING_CHANNEL = "relais_notify_pending"


async def upsert_recipients(db: asyncpg.Pool | asyncpg.Connection,
                            directory: Directory) -> None:
    await db.executemany(
        "INSERT INTO notify.recipients (org, name, email) VALUES ($1, $2, $3)"
        " ON CONFLICT (org) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email",
        [(o.id, o.name, str(o.email)) for o in directory.organisations],
    )


async def has_recipients(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM notify.recipients)"))


async def recipient(conn: asyncpg.Connection, org: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT org, name, email FROM notify.recipients WHERE org = $1", org
    )
    return row


async def add_notification(conn: asyncpg.Connection, draft: Draft, event_id: str,
                           referral_id: UUID, person_id: UUID, org: str, channel: str,
                           address: str) -> None:
    await conn.execute(
        "INSERT INTO notify.notifications (id, event_id, referral_id, person_id, recipient_org,"
        " channel, address, subject, body) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT DO NOTHING",
        draft.id, event_id, referral_id, person_id, org, channel, address, draft.subject,
        draft.body,
    )
    await conn.execute("SELECT pg_notify($1, '')", PENDING_CHANNEL)


async def lock_due(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT * FROM notify.notifications WHERE status = 'pending' AND next_attempt_at <= now()"
        " ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return rows


async def mark_sent(conn: asyncpg.Connection, notification_id: UUID, message_id: str) -> None:
    await conn.execute(
        "UPDATE notify.notifications SET status = 'sent', sent_at = now(),"
        " attempts = attempts + 1, message_id = $2, last_error = NULL WHERE id = $1",
        notification_id, message_id,
    )


async def mark_failed(conn: asyncpg.Connection, notification_id: UUID, error: str,
                      retry_in: float | None) -> None:
    """`retry_in` None: a permanent failure."""
    await conn.execute(
        "UPDATE notify.notifications SET attempts = attempts + 1, last_error = $2,"
        " status = CASE WHEN $3::float8 IS NULL THEN 'failed' ELSE status END,"
        " next_attempt_at = now() + make_interval(secs => coalesce($3::float8, 0))"
        " WHERE id = $1",
        notification_id, error[:1000], retry_in,
    )


async def for_referral(pool: asyncpg.Pool, referral_id: UUID, org: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM notify.notifications WHERE referral_id = $1 AND recipient_org = $2"
        " ORDER BY created_at",
        referral_id, org,
    )
    return rows
