"""The notify service's SQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg

from services.directory import Directory
from services.runtime import outbox
from services.runtime.events import Event

SCHEMA = "notify"
PENDING_CHANNEL = "relais_notify_pending"
INBOX_CHANNEL = "relais_notify_inbox"
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool

# --- recipients ------------------------------------------------------------------------------


async def upsert_recipients(db: Db, directory: Directory) -> None:
    """Names and team mailboxes from the directory; what was set through the API is kept
    (but the directory's team mailbox is kept too: the mail domain of magic links)."""
    await db.executemany(
        "INSERT INTO notify.recipients (org, name, email, counsellors, directory_email)"
        " VALUES ($1, $2, $3, $4, $3)"
        " ON CONFLICT (org) DO UPDATE SET name = EXCLUDED.name,"
        " directory_email = EXCLUDED.directory_email,"
        " email = CASE WHEN notify.recipients.custom THEN notify.recipients.email"
        " ELSE EXCLUDED.email END,"
        " counsellors = CASE WHEN notify.recipients.custom THEN notify.recipients.counsellors"
        " ELSE EXCLUDED.counsellors END",
        [(o.id, o.name, str(o.email), [str(c) for c in o.counsellors])
         for o in directory.organisations],
    )


async def has_recipients(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM notify.recipients)"))


async def names(db: Db) -> dict[str, str]:
    return {r["org"]: r["name"] for r in await db.fetch("SELECT org, name FROM notify.recipients")}


async def recipient(db: Db, org: str, lock: bool = False) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM notify.recipients WHERE org = $1" + (" FOR UPDATE" if lock else ""), org)
    return row


async def email_notification(db: Db, notification_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT id, recipient_org, address, referral_id, kind FROM notify.notifications"
        " WHERE id = $1 AND channel = 'email'", notification_id)
    return row


async def set_recipient(db: Db, org: str, email: str, counsellors: list[str],
                        channels: list[str], muted: list[str]) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "UPDATE notify.recipients SET email = $2, counsellors = $3, channels = $4, muted = $5,"
        " custom = true WHERE org = $1 RETURNING *", org, email, counsellors, channels, muted)
    return row


# --- webhook endpoints -----------------------------------------------------------------------


async def insert_endpoint(db: Db, endpoint_id: UUID, org: str, url: str, secret: str,
                          kinds: list[str]) -> asyncpg.Record:
    row: asyncpg.Record = await db.fetchrow(
        "INSERT INTO notify.webhook_endpoints (id, org, url, secret, kinds)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING *", endpoint_id, org, url, secret, kinds)
    return row


async def endpoints(db: Db, org: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM notify.webhook_endpoints WHERE org = $1 AND active ORDER BY created_at",
        org)
    return rows


async def recipient_of(conn: asyncpg.Connection, org: str, kind: str
                       ) -> asyncpg.Record | None:
    """The recipient organisation with its active webhook endpoints for this kind of
    notification (`endpoint_ids`, `endpoint_urls`, in the same order), in one statement."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT r.*, e.ids AS endpoint_ids, e.urls AS endpoint_urls FROM notify.recipients r,"
        " LATERAL (SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids,"
        "  coalesce(array_agg(url ORDER BY id), '{}') AS urls FROM notify.webhook_endpoints"
        "  WHERE org = r.org AND active AND (kinds = '{}' OR $2 = ANY(kinds))) e"
        " WHERE r.org = $1", org, kind)
    return row


async def deactivate_endpoint(db: Db, endpoint_id: UUID, org: str) -> bool:
    done = await db.fetchval(
        "UPDATE notify.webhook_endpoints SET active = false WHERE id = $1 AND org = $2"
        " AND active RETURNING true", endpoint_id, org)
    return bool(done)


async def endpoints_shown(db: Db, org: str, limit: int = 50) -> list[asyncpg.Record]:
    """The organisation's endpoints for its settings page, stopped ones too (active first,
    newest first), without their secrets."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT id, org, url, kinds, active, created_at FROM notify.webhook_endpoints"
        " WHERE org = $1 ORDER BY active DESC, created_at DESC LIMIT $2", org, limit)
    return rows


# --- notifications ---------------------------------------------------------------------------


async def add_notification(conn: asyncpg.Connection, values: dict[str, Any]) -> bool:
    """False when this (event, recipient, channel, endpoint) has its notification already."""
    names_ = list(values)
    n = len(names_)
    channel = INBOX_CHANNEL if values["channel"] == "inbox" else PENDING_CHANNEL
    inserted = await conn.fetchval(  # the senders (or the inbox's readers) woken if it is new
        f"WITH added AS (INSERT INTO notify.notifications ({', '.join(names_)}) VALUES"
        f" ({', '.join(f'${i + 1}' for i in range(n))}) ON CONFLICT DO NOTHING RETURNING id)"
        f" SELECT count(pg_notify(${n + 1}, ${n + 2})) FROM added",
        *values.values(), channel, values["recipient_org"])
    return bool(inserted)


async def lock_next_due(conn: asyncpg.Connection, channel: str,
                        skip: list[UUID] | None = None) -> asyncpg.Record | None:
    """The next due notification of the channel, locked; not one of `skip` (accepted by its
    receiver, its recording still to commit)."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT n.*, e.url, e.secret, e.active AS endpoint_active FROM notify.notifications n"
        " LEFT JOIN notify.webhook_endpoints e ON e.id = n.endpoint_id"
        " WHERE n.status = 'pending' AND n.channel = $1 AND n.next_attempt_at <= now()"
        " AND n.id <> ALL($2::uuid[])"
        " ORDER BY n.next_attempt_at LIMIT 1 FOR UPDATE OF n SKIP LOCKED", channel, skip or [])
    return row


async def lock_pending(conn: asyncpg.Connection, notification_id: UUID) -> bool:
    """Whether the notification is still pending (locked until the transaction ends)."""
    return bool(await conn.fetchval(
        "SELECT true FROM notify.notifications WHERE id = $1 AND status = 'pending'"
        " FOR UPDATE", notification_id))


async def next_due_in(db: Db, channel: str, skip: list[UUID]) -> float | None:
    """Seconds until the next pending notification of the channel is due, if any; not one of
    `skip` (being sent by a sender of this process, or accepted by its receiver with its
    recording still to commit: an idle sender that counted it would find it due, fail to lock
    it, and try again until it is recorded)."""
    value = await db.fetchval(
        "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM notify.notifications"
        " WHERE status = 'pending' AND channel = $1 AND id <> ALL($2::uuid[])", channel, skip)
    return None if value is None else float(value)


async def mark(conn: asyncpg.Connection, notification_id: UUID, status: str, *,
               attempted: bool = True, error: str | None = None,
               message_id: str | None = None, events: Sequence[Event] = ()) -> None:
    """sent, delivered or failed (with the time of each), and its `events` in the outbox, in
    one statement."""
    added, more = outbox.adding(SCHEMA, events, 6) if events else ("", [])
    await conn.execute(
        (f"WITH {added} " if events else "") + "UPDATE notify.notifications SET status = $2,"
        " attempts = attempts + CASE WHEN $3 THEN 1 ELSE 0 END, last_error = $4,"
        " message_id = coalesce($5, message_id),"
        " sent_at = CASE WHEN $2 IN ('sent', 'delivered') THEN coalesce(sent_at, now())"
        " ELSE sent_at END,"
        " delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END,"
        " failed_at = CASE WHEN $2 = 'failed' THEN now() ELSE failed_at END"
        + (" FROM woke" if events else "") + " WHERE id = $1",
        notification_id, status, attempted, None if error is None else error[:1000],
        message_id, *more)


async def retry_later(conn: asyncpg.Connection, notification_id: UUID, error: str,
                      seconds: float) -> None:
    await conn.execute(
        "UPDATE notify.notifications SET attempts = attempts + 1, last_error = $2,"
        " next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
        notification_id, error[:1000], seconds)


async def add_delivery(conn: asyncpg.Connection, delivery_id: UUID, row: Any, attempt: int,
                       status_code: int | None, error: str | None, duration_ms: int,
                       outcome: str) -> None:
    await conn.execute(
        "INSERT INTO notify.deliveries (id, notification_id, endpoint_id, attempt, status_code,"
        " error, duration_ms, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        delivery_id, row["id"], row["endpoint_id"], attempt, status_code,
        None if error is None else error[:1000], duration_ms, outcome)


async def deliveries(db: Db, org: str, endpoint_id: UUID | None,
                     limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT d.*, n.kind, n.referral_id, n.status AS notification_status, e.url"
        " FROM notify.deliveries d JOIN notify.webhook_endpoints e ON e.id = d.endpoint_id"
        " JOIN notify.notifications n ON n.id = d.notification_id"
        " WHERE e.org = $1 AND ($2::uuid IS NULL OR d.endpoint_id = $2)"
        " ORDER BY d.at DESC, d.attempt DESC LIMIT $3", org, endpoint_id, limit)
    return rows


async def replay(conn: asyncpg.Connection, delivery_id: UUID, org: str) -> UUID | None:
    """Send the delivery's notification again now (the receiver dedupes on webhook-id)."""
    notification_id: UUID | None = await conn.fetchval(
        "UPDATE notify.notifications n SET status = 'pending', next_attempt_at = now()"
        " FROM notify.deliveries d JOIN notify.webhook_endpoints e ON e.id = d.endpoint_id"
        " WHERE d.id = $1 AND e.org = $2 AND e.active AND n.id = d.notification_id"
        " RETURNING n.id", delivery_id, org)
    if notification_id is not None:
        await conn.execute("SELECT pg_notify($1, $2)", PENDING_CHANNEL, org)
    return notification_id


async def inbox(db: Db, org: str, after: int, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM notify.notifications WHERE channel = 'inbox' AND recipient_org = $1"
        " AND seq > $2 ORDER BY seq LIMIT $3", org, after, limit)
    return rows


async def inbox_seq_before(db: Db, org: str, moment: datetime) -> int:
    """The last inbox item of the organisation made before `moment` (0 if none)."""
    seq: int | None = await db.fetchval(
        "SELECT max(seq) FROM notify.notifications WHERE channel = 'inbox'"
        " AND recipient_org = $1 AND created_at < $2", org, moment)
    return seq or 0


async def mark_inbox_delivered(conn: asyncpg.Connection,
                               ids: list[UUID]) -> list[asyncpg.Record]:
    """The first time each is handed to the organisation; returns those newly delivered."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "UPDATE notify.notifications SET status = 'delivered', delivered_at = now()"
        " WHERE id = ANY($1::uuid[]) AND status = 'sent' RETURNING *", ids)
    return rows


async def about_person(db: Db, person_id: UUID) -> list[asyncpg.Record]:
    """Every notification about the person's referrals (their access request)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM notify.notifications WHERE person_id = $1 ORDER BY created_at, seq",
        person_id)
    return rows


async def for_referral(db: Db, referral_id: UUID, org: str) -> list[asyncpg.Record]:
    """A referral's notifications, to the organisations it concerns (sender or recipient)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT * FROM notify.notifications WHERE referral_id = $1"
        " AND (recipient_org = $2 OR sender_org = $2)"
        " ORDER BY created_at, seq",
        referral_id, org,
    )
    return rows


# --- live streams (services/notify/live.py) ----------------------------------------------------

STREAMS_LOCK = 7_240_006
"""First key of the transaction advisory lock taken per organisation while a stream opens."""


async def open_stream(pool: asyncpg.Pool, stream: UUID, org: str, client_id: str, page: bool,
                      stale: float, refused: Callable[[int, int], str | None]) -> str | None:
    """Record a stream open unless `refused(the client's streams, the organisation's streams
    of this kind)` says why not (then nothing is written): one at a time per organisation."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", STREAMS_LOCK, org)
        held = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE client_id = $2) AS client,"
            " count(*) FILTER (WHERE page = $3) AS alike FROM notify.open_streams"
            " WHERE org = $1 AND seen > now() - make_interval(secs => $4)",
            org, client_id, page, stale)
        reason = refused(held["client"], held["alike"])
        if reason is None:
            await conn.execute(
                "INSERT INTO notify.open_streams (id, org, client_id, page)"
                " VALUES ($1, $2, $3, $4)", stream, org, client_id, page)
        return reason


async def close_stream(pool: asyncpg.Pool, stream: UUID) -> None:
    await pool.execute("DELETE FROM notify.open_streams WHERE id = $1", stream)


async def streams_seen(pool: asyncpg.Pool, streams: list[tuple[UUID, str, str, bool]],
                       stale: float) -> None:
    """This instance's streams (id, org, client, page) are still open (recorded again if
    another instance took them for dead while this one was late); those no instance said
    were open for twice `stale` go."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO notify.open_streams (id, org, client_id, page)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::boolean[])"
            " ON CONFLICT (id) DO UPDATE SET seen = now()",
            *([list(column) for column in zip(*streams, strict=True)] or [[], [], [], []]))
        await conn.execute("DELETE FROM notify.open_streams"
                           " WHERE seen < now() - make_interval(secs => $1)", 2 * stale)
