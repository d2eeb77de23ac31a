"""Notify handlers: turn events into pending notifications (one per event, recipient and
channel), and the sender that delivers them over SMTP."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import aiosmtplib
import asyncpg

from schemas.events import (
    DIRECTORY_UPDATED,
    NOTIFICATION_SENT,
    REFERRAL_REQUESTED,
    DirectoryUpdatedV1,
    NotificationSentV1,
    ReferralRequestedV1,
)
from services.directory import Directory
from services.notify import domain, store
from services.runtime import db, outbox
from services.runtime.app import Runtime
from services.runtime.consumer import Handler
from services.runtime.events import Event, new_event
from services.runtime.logging import get_logger
from services.runtime.settings import Settings
from services.runtime.waiting import wait_for_event

log = get_logger("relais.notify")
SOURCE = "/relais/notify"
BATCH = 50
MAX_RETRY_DELAY = 3600.0


def handler(runtime: Runtime) -> Handler:
    base_url = runtime.settings.base_url

    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type == DIRECTORY_UPDATED:
            update = DirectoryUpdatedV1.model_validate(event.data)
            await store.upsert_recipients(conn, Directory.model_validate(update.directory))
            return
        if event.type != REFERRAL_REQUESTED:
            return
        referral = ReferralRequestedV1.model_validate(event.data)
        target = await store.recipient(conn, referral.target)
        sender = await store.recipient(conn, referral.sender_org)
        if target is None:
            raise LookupError(f"no recipient address for organisation {referral.target}")
        draft = domain.referral_requested(
            event.id, referral, sender["name"] if sender else referral.sender_org, base_url
        )
        await store.add_notification(conn, draft, event.id, referral.referral_id,
                                     referral.person_id, referral.target, "email",
                                     target["email"])

    return handle


async def sender(runtime: Runtime) -> None:
    """Send due notifications as soon as they are written (NOTIFY), else every poll interval."""
    wake = asyncio.Event()
    conn = await db.connect(runtime.dsn)
    try:
        await conn.add_listener(store.PENDING_CHANNEL, lambda *_: wake.set())
        while True:
            wake.clear()
            if await send_due(runtime.pool, runtime.settings) == BATCH:
                continue
            await wait_for_event(wake, runtime.settings.poll_interval)
    finally:
        await conn.close()


async def send_due(pool: asyncpg.Pool, settings: Settings) -> int:
    """Send one batch of due notifications over one SMTP session. Each row stays locked
    until its outcome (and its `notification.sent` event) is committed."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await store.lock_due(conn, BATCH)
        if not rows:
            return 0
        try:
            smtp = aiosmtplib.SMTP(
                hostname=settings.smtp_host, port=settings.smtp_port,
                start_tls=settings.smtp_starttls, username=settings.smtp_username,
                password=settings.smtp_password, timeout=10,
            )
            await smtp.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            for row in rows:
                await store.mark_failed(conn, row["id"], f"SMTP unreachable: {exc}",
                                        retry_delay(row["attempts"]))
            log.warning("smtp_unreachable", error=repr(exc), pending=len(rows))
            return 0
        try:
            for row in rows:
                await _send_one(conn, smtp, settings.smtp_from, row)
        finally:
            try:
                await smtp.quit()
            except aiosmtplib.SMTPException:
                smtp.close()
    return len(rows)


async def _send_one(conn: asyncpg.Connection, smtp: aiosmtplib.SMTP, from_: str,
                    row: asyncpg.Record) -> None:
    msg = domain.email(row["id"], from_, row["address"], row["subject"], row["body"])
    try:
        await smtp.send_message(msg)
    except aiosmtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.code < 600
        await store.mark_failed(conn, row["id"], f"{exc.code} {exc.message}",
                                None if permanent else retry_delay(row["attempts"]))
        log.warning("email_refused", notification_id=str(row["id"]), code=exc.code)
        return
    message_id = domain.message_id(row["id"])
    await store.mark_sent(conn, row["id"], message_id)
    await outbox.add(conn, store.SCHEMA, [new_event(
        NOTIFICATION_SENT, SOURCE, str(row["person_id"]),
        NotificationSentV1(
            notification_id=row["id"], referral_id=row["referral_id"],
            recipient_org=row["recipient_org"], channel=row["channel"],
            message_id=message_id, sent_at=datetime.now(UTC),
        ),
    )])


def retry_delay(attempts: int) -> float:
    return min(2.0 ** attempts, MAX_RETRY_DELAY)
