"""Notify units of work: an event becomes one notification per (recipient, channel[,
endpoint]); senders deliver email and webhooks one notification per transaction, so that a
stop never loses an outcome nor sends twice what it committed; the inbox is read by its
organisation. Each outcome emits notification.sent / delivered / failed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import aiosmtplib
import asyncpg
from aiohttp import web

from schemas import events as ev
from services.directory import Directory
from services.notify import domain, egress, store
from services.runtime import db, links, metrics, outbox
from services.runtime.app import Runtime
from services.runtime.consumer import Handler
from services.runtime.events import Event, new_event
from services.runtime.logging import get_logger
from services.runtime.mail import Mailer, send_one
from services.runtime.settings import Settings
from services.runtime.waiting import wait_for_event

log = get_logger("relais.notify")
SOURCE = "/relais/notify"
MAX_EMAIL_RETRY = 3600.0
FINISH_TIMEOUT = 8.0  # under the app's STOP_TIMEOUT
T = TypeVar("T")


def handler(runtime: Runtime) -> Handler:
    base_url = runtime.settings.base_url

    async def handle(conn: asyncpg.Connection, event: Event) -> None:
        if event.type == ev.DIRECTORY_UPDATED:
            update = ev.DirectoryUpdatedV1.model_validate(event.data)
            await store.upsert_recipients(conn, Directory.model_validate(update.directory))
            return
        if event.type not in domain.TOLD:
            return
        drafts = domain.messages(event.type, event.data, await store.names(conn), base_url,
                                 runtime.settings.link_days)
        for message in drafts:
            await fan_out(conn, event.id, event.data.get("sender_org"), message)

    return handle


async def fan_out(conn: asyncpg.Connection, event_id: str, sender_org: str | None,
                  message: domain.Message) -> None:
    """One notification per channel the recipient wants (and per webhook endpoint)."""
    recipient = await store.recipient_of(conn, message.recipient_org, message.kind)
    if recipient is None:
        raise LookupError(f"no recipient organisation {message.recipient_org}")
    wanted = message.kind in domain.MANDATORY or message.kind not in recipient["muted"]
    common = {"event_id": event_id, "referral_id": message.referral_id,
              "person_id": message.person_id, "recipient_org": message.recipient_org,
              "sender_org": sender_org, "kind": message.kind, "subject": message.subject,
              "body": message.body, "payload": message.facts}
    channels = set(recipient["channels"])
    if wanted and "email" in channels:  # one per address: each carries its own link
        for address in dict.fromkeys([recipient["email"], *recipient["counsellors"]]):
            linked = domain.gets_magic_link(address, recipient["directory_email"])
            await store.add_notification(conn, common | {
                "id": domain.notification_id(event_id, message.recipient_org, "email",
                                             address.lower()),
                "channel": "email", "address": address,
                "body": message.email_body if linked else message.body})
    if "inbox" in channels or message.kind in domain.MANDATORY:
        notification = domain.notification_id(event_id, message.recipient_org, "inbox")
        if await store.add_notification(conn, common | {
                "id": notification, "channel": "inbox", "status": "sent",
                "sent_at": datetime.now(UTC)}):
            await emit(conn, [sent_event(notification, message.referral_id, message.person_id,
                                         message.recipient_org, "inbox",
                                         f"inbox:{notification}")])
    for endpoint, url in zip(recipient["endpoint_ids"], recipient["endpoint_urls"],
                             strict=True):
        await store.add_notification(conn, common | {
            "id": domain.notification_id(event_id, message.recipient_org, "webhook",
                                         endpoint),
            "channel": "webhook", "address": url, "endpoint_id": endpoint})


def sent_event(notification_id: uuid.UUID, referral_id: uuid.UUID, person_id: uuid.UUID,
               org: str, channel: str, message_id: str) -> Event:
    """notification.sent, for the outbox (counted by `tally` once written)."""
    return new_event(
        ev.NOTIFICATION_SENT, SOURCE, str(person_id), ev.NotificationSentV1(
            notification_id=notification_id, referral_id=referral_id, recipient_org=org,
            channel=channel, message_id=message_id, sent_at=datetime.now(UTC)))


def outcome_event(row: Any, delivered: bool, reason: str | None = None) -> Event:
    """notification.delivered or .failed, for the outbox (counted by `tally` once written)."""
    return new_event(
        ev.NOTIFICATION_DELIVERED if delivered else ev.NOTIFICATION_FAILED, SOURCE,
        str(row["person_id"]), ev.NotificationOutcomeV1(
            notification_id=row["id"], referral_id=row["referral_id"],
            recipient_org=row["recipient_org"], channel=row["channel"], kind=row["kind"],
            reason=reason, at=datetime.now(UTC)))


OUTCOMES = {ev.NOTIFICATION_SENT: "sent", ev.NOTIFICATION_DELIVERED: "delivered",
            ev.NOTIFICATION_FAILED: "failed"}


def tally(events: Sequence[Event]) -> None:
    """Count the notifications' outcomes in the metrics, once their events are written."""
    for event in events:
        metrics.current().notified(event.data["channel"], OUTCOMES[event.type])


async def emit(conn: asyncpg.Connection, events: Sequence[Event]) -> None:
    """Notifications' events (sent, delivered, failed) into the outbox, then counted."""
    if not events:
        return
    await outbox.add(conn, store.SCHEMA, events)
    tally(events)


async def mark(conn: asyncpg.Connection, notification_id: uuid.UUID, status: str,
               events: Sequence[Event], **change: Any) -> None:
    """The notification's new status with its events, in one statement, then counted."""
    await store.mark(conn, notification_id, status, events=events, **change)
    tally(events)


async def finish(work: Awaitable[T]) -> T:
    """Let a send that started finish and commit its outcome even when the service stops
    (bounded), so that a restart does not send it again."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task], timeout=FINISH_TIMEOUT)
        raise


Record = Callable[[asyncpg.Connection], Awaitable[None]]


class Unrecorded:
    """What a receiver accepted (an SMTP server, a webhook endpoint) and whose recording has
    not committed: the database went away between the receiver's yes and the commit. The
    process records it once the database is back, before sending anything else of the
    channel, and never sends it again. Only a process killed in that window sends it twice
    (under the same Message-ID or webhook-id, for the receiver to recognise), or another
    instance (`relais up --workers`, a second pod) that takes the sender's lease while the
    database is away from this one: it does not know this process's list. One per channel
    and process, kept across the sender's restarts (`UNRECORDED`)."""

    def __init__(self, records: dict[uuid.UUID, Record] | None = None,
                 sending: set[uuid.UUID] | None = None) -> None:
        self.records: dict[uuid.UUID, Record] = {} if records is None else records
        self.sending: set[uuid.UUID] = set() if sending is None else sending
        """Being sent now by a sender of this process. Its row lock is not enough: when the
        database goes away, the lock goes with the sender's connection at once, and another
        sender whose connection lives a moment longer can lock the row and send it too."""
        self.mine: list[uuid.UUID] = []
        """What this view accepted (one delivery's view, `one_delivery`)."""
        self.claimed: uuid.UUID | None = None

    def skip(self) -> list[uuid.UUID]:
        """What no sender of the process takes now: accepted and not recorded, or being
        sent."""
        return [*self.records, *self.sending]

    def claim(self, notification_id: uuid.UUID) -> bool:
        """This delivery sends the notification it locked, unless another sender of the
        process is sending it or it awaits its recording (False: leave it)."""
        if notification_id in self.sending or notification_id in self.records:
            return False
        self.sending.add(notification_id)
        self.claimed = notification_id
        return True

    def done(self) -> None:
        """The delivery's transaction is over (committed or not): what it claimed may be
        sent again, if it was not accepted (then `records` keeps it)."""
        if self.claimed is not None:
            self.sending.discard(self.claimed)
            self.claimed = None

    def accepted(self, notification_id: uuid.UUID, record: Record) -> Record:
        self.records[notification_id] = record
        self.mine.append(notification_id)
        return record

    def one_delivery(self) -> Unrecorded:
        """A view for one delivery: the channel's records (every sender of the process skips
        them), and the ones it adds, to forget once its transaction commits."""
        return Unrecorded(self.records, self.sending)

    async def record(self, pool: asyncpg.Pool) -> None:
        """Record each, in its own transaction, unless the row was settled meanwhile (the
        commit had happened, only its answer was lost)."""
        for notification_id, record in list(self.records.items()):
            async with pool.acquire() as conn, conn.transaction():
                if await store.lock_pending(conn, notification_id):
                    await record(conn)
            self.records.pop(notification_id, None)  # another sender may have recorded it
            log.info("delivery_recorded_late", notification_id=str(notification_id))


UNRECORDED = web.AppKey("unrecorded", dict[str, Unrecorded])


def unrecorded(runtime: Runtime, channel: str) -> Unrecorded:
    return runtime.app[UNRECORDED].setdefault(channel, Unrecorded())


One = Callable[[asyncpg.Connection, Unrecorded], Awaitable[bool]]


async def deliver_forever(runtime: Runtime, channel: str, senders: Sequence[One]) -> None:
    """Deliver due notifications of a channel as soon as they are written (NOTIFY), when the
    next retry is due, or at the latest every poll interval; first, what was accepted but
    not recorded (`Unrecorded`). Each sender (an SMTP session, say) delivers one at a time;
    the senders side by side, each locking the next due notification (SKIP LOCKED)."""
    wakes = [asyncio.Event() for _ in senders]
    pending = unrecorded(runtime, channel)
    listener = await db.connect(runtime.dsn)

    def wake_all(*_: object) -> None:
        for wake in wakes:
            wake.set()

    async def deliver(one: One, wake: asyncio.Event) -> None:
        while True:
            wake.clear()
            await finish(pending.record(runtime.pool))
            while await finish(_one_in_transaction(runtime.pool, one, pending)):
                pass
            due = await store.next_due_in(runtime.pool, channel, pending.skip())
            wait = runtime.settings.poll_interval if due is None else max(
                0.0, min(due, runtime.settings.poll_interval))
            await wait_for_event(wake, wait)

    try:
        await listener.add_listener(store.PENDING_CHANNEL, wake_all)
        async with asyncio.TaskGroup() as group:
            for one, wake in zip(senders, wakes, strict=True):
                group.create_task(deliver(one, wake))
    finally:
        await listener.close()


async def _one_in_transaction(pool: asyncpg.Pool, one: One, pending: Unrecorded) -> bool:
    """One delivery and its recording; once committed, nothing of it is left unrecorded.
    The connection is taken and given back here, inside the work `finish` lets run on: a
    sender cancelled mid-send (a sibling sender failed, the service stops) must not hand the
    pool a connection this delivery is still using."""
    mine = pending.one_delivery()
    try:
        async with pool.acquire() as conn, conn.transaction():
            result = await one(conn, mine)
        for notification_id in mine.mine:
            pending.records.pop(notification_id, None)
    finally:
        mine.done()
    return result


# --- email -----------------------------------------------------------------------------------


async def email_sender(runtime: Runtime) -> None:
    """`RELAIS_EMAIL_SENDERS` SMTP sessions side by side."""
    mailers = [Mailer(runtime.settings) for _ in range(runtime.settings.email_senders)]
    link_key = links.key(runtime.keyring())

    def sender(mailer: Mailer) -> One:
        return lambda conn, pending: send_email(conn, mailer, link_key, pending)

    try:
        await deliver_forever(runtime, "email", [sender(m) for m in mailers])
    finally:
        for mailer in mailers:
            await mailer.close()


async def send_email(conn: asyncpg.Connection, mailer: Mailer, link_key: bytes,
                     pending: Unrecorded) -> bool:
    """Send one due email; False when none is due."""
    row = await store.lock_next_due(conn, "email", pending.skip())
    if row is None:
        return False
    if not pending.claim(row["id"]):
        return True  # another sender of this process has it: the next one
    to = [a.strip() for a in row["address"].split(",")]
    body = domain.with_link(row["body"], magic_link(row, mailer.settings, link_key))
    msg = domain.email(row["id"], mailer.settings.smtp_from, to, row["subject"], body)
    try:
        smtp = await mailer.session()
        refused, _ = await smtp.send_message(msg)
    except aiosmtplib.SMTPRecipientsRefused as exc:  # every address refused
        reason = "; ".join(f"{r.code} {r.message} ({r.recipient})" for r in exc.recipients)
        if all(500 <= r.code < 600 for r in exc.recipients):
            await mark(conn, row["id"], "failed", error=reason,
                       events=[outcome_event(row, False, reason)])
        else:
            await store.retry_later(conn, row["id"], reason, email_retry(row["attempts"]))
        log.warning("email_refused", notification_id=str(row["id"]))
        return True
    except aiosmtplib.SMTPAuthenticationError as exc:  # our settings, not the message's fault
        mailer.smtp = None
        await store.retry_later(conn, row["id"], f"SMTP login refused: {exc.code} {exc.message}",
                                email_retry(row["attempts"]))
        log.error("smtp_login_refused", code=exc.code)
        return False
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:  # permanent: a bounce, a refused recipient or message
            await mark(conn, row["id"], "failed", error=f"{exc.code} {exc.message}",
                       events=[outcome_event(row, False, f"{exc.code} {exc.message}")])
        else:
            await store.retry_later(conn, row["id"], f"{exc.code} {exc.message}",
                                    email_retry(row["attempts"]))
        log.warning("email_refused", notification_id=str(row["id"]), code=exc.code)
        return True
    except (aiosmtplib.SMTPException, OSError) as exc:
        mailer.smtp = None  # the server's fault, not the message's: tried again soon
        await store.retry_later(conn, row["id"], f"SMTP unreachable: {exc}", min(
            email_retry(row["attempts"]), mailer.settings.smtp_down_retry))
        log.warning("smtp_unreachable", error=repr(exc))
        return False
    await pending.accepted(row["id"], lambda c: email_accepted(c, row, refused))(conn)
    return True


async def email_accepted(conn: asyncpg.Connection, row: Any,
                         refused: dict[str, aiosmtplib.SMTPResponse]) -> None:
    """Record that the SMTP server accepted the email (for some addresses only: `refused`)."""
    message_id = domain.message_id(row["id"])
    sent = sent_event(row["id"], row["referral_id"], row["person_id"], row["recipient_org"],
                      "email", message_id)
    if refused:  # accepted for some addresses only
        error = "; ".join(f"{a}: {r.code} {r.message}" for a, r in refused.items())
        await mark(conn, row["id"], "sent", error=error, message_id=message_id,
                   events=[sent])
    else:  # accepted for every address: as far as SMTP can tell, delivered
        await mark(conn, row["id"], "delivered", message_id=message_id,
                   events=[sent, outcome_event(row, True)])


def magic_link(row: Any, settings: Settings, link_key: bytes) -> str:
    """The link an email carries: a magic link made now for its one address (never kept),
    or the console's page of the referral."""
    if domain.LINK_MARK not in row["body"] or "," in row["address"]:
        return str(row["payload"]["link"])
    token = links.make(link_key, links.Link(
        row["id"], row["referral_id"], row["person_id"], row["recipient_org"],
        row["address"].strip(), datetime.now(UTC) + timedelta(days=settings.link_days)))
    return f"{settings.base_url}/lien/{token}"


_NOTICES: set[asyncio.Task[None]] = set()


def tell_later(settings: Settings, notice: tuple[list[str], str, str] | None) -> None:
    """Send a notice (`configuration.Notice`) once the change is written, without holding
    the answer: best effort, a failure logged (the change itself is kept)."""
    if notice is None:
        return
    addresses, subject, text = notice

    async def send() -> None:
        for address in addresses:
            try:
                await send_one(settings, address, subject, text)
            except (aiosmtplib.SMTPException, OSError) as exc:
                log.warning("notice_not_sent", subject=subject, error=repr(exc))

    task = asyncio.create_task(send())
    _NOTICES.add(task)
    task.add_done_callback(_NOTICES.discard)


def email_retry(attempts: int) -> float:
    return min(2.0 ** attempts, MAX_EMAIL_RETRY)


# --- webhooks (Standard Webhooks) ------------------------------------------------------------


async def webhook_sender(runtime: Runtime) -> None:
    settings = runtime.settings
    async with egress.webhook_session(settings.webhook_allowed_networks,
                                      settings.webhook_timeout) as http:
        await deliver_forever(runtime, "webhook",
                              [lambda conn, pending: send_webhook(conn, http, pending)])


async def webhook_accepted(conn: asyncpg.Connection, row: Any, attempt: int,
                           status: int | None, took: int) -> None:
    """Record that the endpoint accepted the webhook (a 2xx)."""
    await store.add_delivery(conn, uuid.uuid4(), row, attempt, status, None, took, "delivered")
    sent = [sent_event(row["id"], row["referral_id"], row["person_id"], row["recipient_org"],
                       "webhook", str(row["id"]))] if row["sent_at"] is None else []
    await mark(conn, row["id"], "delivered", message_id=str(row["id"]),
               events=[*sent, outcome_event(row, True)])


def webhook_body(row: Any) -> bytes:
    payload = {"type": f"referral.{row['kind']}", "timestamp": row["created_at"].isoformat(),
               "data": dict(row["payload"]) | {"notification_id": str(row["id"]),
                                               "subject": row["subject"]}}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


async def send_webhook(conn: asyncpg.Connection, http: aiohttp.ClientSession,
                       pending: Unrecorded) -> bool:
    """Deliver one due webhook with the session of `egress.webhook_session` (which connects
    only to addresses a webhook may reach); False when none is due."""
    row = await store.lock_next_due(conn, "webhook", pending.skip())
    if row is None:
        return False
    if not pending.claim(row["id"]):
        return True  # another sender of this process has it: the next one
    if not row["endpoint_active"]:  # removed by its organisation meanwhile
        await mark(conn, row["id"], "failed", attempted=False, error="endpoint removed",
                   events=[outcome_event(row, False, "endpoint removed")])
        return True
    body = webhook_body(row)
    msg_id, stamp = str(row["id"]), int(time.time())
    started = time.monotonic()
    status: int | None = None
    error: str | None
    try:
        async with http.post(row["url"], data=body, allow_redirects=False, headers={
            "content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": domain.sign(row["secret"], msg_id, stamp, body),
        }) as response:
            status = response.status
            error = domain.answer_error(status, response.headers.get("Location"))
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = egress.failure(exc)
    attempt = row["attempts"] + 1
    took = int((time.monotonic() - started) * 1000)
    if error is None:
        await pending.accepted(row["id"], lambda c: webhook_accepted(
            c, row, attempt, status, took))(conn)
        return True
    wait = domain.retry_in(attempt)
    await store.add_delivery(conn, uuid.uuid4(), row, attempt, status, error, took,
                             "retry" if wait is not None else "dead")
    if wait is None:
        await mark(conn, row["id"], "failed", error=f"dead after {attempt} attempts: "
                   f"{error}", events=[outcome_event(row, False, error)])
    else:
        await store.retry_later(conn, row["id"], error, wait)
    log.warning("webhook_failed", notification_id=msg_id, attempt=attempt, error=error)
    return True
