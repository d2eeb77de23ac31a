"""Idempotent consumers: one database transaction per message (inbox row, state change, new
outbox rows), or per batch of messages when none fails, then the offset commit. Failing
messages are retried with backoff and end in the consumer's dead-letter topic; the consumer
goes on."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg
import structlog
from opentelemetry.trace import SpanKind

from schemas.asyncapi import dead_letter_topic
from services.runtime.events import Event, Message, PoisonMessage, Record, decode
from services.runtime.logging import get_logger
from services.runtime.telemetry import context_from, tracer_for
from services.runtime.transport.base import Consumer, Producer, TopicPartition, Transport

log = get_logger("relais.consumer")
Handler = Callable[[asyncpg.Connection, Event], Awaitable[None]]
Outcome = Literal["done", "duplicate", "dead"]

# Errors of the infrastructure, not of the message: never a reason to dead-letter it.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


@dataclass
class ConsumerSettings:
    max_attempts: int = 5
    backoff: float = 0.2
    poll_timeout: float = 1.0
    max_records: int = 500
    batch: int = 50
    """Messages applied in one transaction when all goes well."""
    lanes: int = 4
    """Partitions processed side by side."""


class EventConsumer:
    def __init__(
        self,
        name: str,
        schema: str,
        topics: Sequence[str],
        handler: Handler,
        pool: asyncpg.Pool,
        transport: Transport,
        settings: ConsumerSettings | None = None,
    ) -> None:
        self.name = name
        self.schema = schema
        self.topics = list(topics)
        self.handler = handler
        self.pool = pool
        self.transport = transport
        self.settings = settings or ConsumerSettings()
        self.tracer = tracer_for(schema)  # a service's schema is its name
        self.ready = asyncio.Event()
        self.counts: dict[Outcome, int] = {"done": 0, "duplicate": 0, "dead": 0}
        self.retries = 0
        """Failed attempts tried again (GET /metrics, with `counts`)."""

    async def run(self) -> None:
        """Consume until cancelled; on an infrastructure failure, start again from the last
        committed offsets (what was done since is skipped by the inbox)."""
        backoff = self.settings.backoff
        while True:
            consumer = self.transport.consumer(self.name, self.topics)
            producer = self.transport.producer()
            try:
                await consumer.start()
                await producer.start()
                self.ready.set()
                backoff = self.settings.backoff
                await self._loop(consumer, producer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # a lane failed as we were stopped
                    raise asyncio.CancelledError from exc
                log.warning("consumer_restart", consumer=self.name, error=repr(exc),
                            retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.ready.clear()
                await _quietly(consumer.stop())
                await _quietly(producer.stop())

    async def _loop(self, consumer: Consumer, producer: Producer) -> None:
        """Each partition's messages in order, the partitions side by side (a connection
        each): a consumer's handlers mostly wait for the database, so one partition's round
        trips overlap another's. Offsets are committed after each round of chunks."""
        while True:
            messages = await consumer.poll(self.settings.poll_timeout, self.settings.max_records)
            lanes: dict[TopicPartition, list[Message]] = {}
            for message in messages:
                lanes.setdefault((message.topic, message.partition), []).append(message)
            longest = max((len(lane) for lane in lanes.values()), default=0)
            for start in range(0, longest, self.settings.batch):
                async with consumer.busy:  # a rebalance waits for the round to end
                    for lost in [tp for tp in lanes if not consumer.owns(tp)]:
                        del lanes[lost]  # the rest of its messages are its next owner's
                    chunks = [chunk for lane in lanes.values()
                              if (chunk := lane[start:start + self.settings.batch])]
                    if not chunks:
                        continue
                    for wave in range(0, len(chunks), self.settings.lanes):
                        side_by_side = chunks[wave:wave + self.settings.lanes]
                        if len(side_by_side) == 1:
                            await self._apply_chunk(side_by_side[0], producer)
                            continue
                        async with asyncio.TaskGroup() as group:
                            for chunk in side_by_side:
                                group.create_task(self._apply_chunk(chunk, producer))
                await consumer.commit({(chunk[-1].topic, chunk[-1].partition):
                                       chunk[-1].offset + 1 for chunk in chunks})

    async def _apply_chunk(self, chunk: Sequence[Message], producer: Producer) -> None:
        """One partition's messages, in order: together if all goes well, else one by one."""
        if not await self._apply_together(chunk):
            for message in chunk:
                await self.process(message, producer)

    async def _apply_together(self, messages: Sequence[Message]) -> bool:
        """Several messages in one transaction (their inbox rows in one statement), which
        saves a BEGIN, an INSERT and a COMMIT per message. All or nothing: on any error,
        False, and the caller takes them one by one, with retries and the dead-letter topic,
        exactly as if this had not been tried."""
        if len(messages) < 2:
            return False
        try:
            events = [decode(m) for m in messages]
        except PoisonMessage:
            return False
        done = duplicate = 0
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                fresh = await inbox_and_locks(conn, self.schema, self.name, events)
                for event, message in zip(events, messages, strict=True):
                    if event.id not in fresh:
                        duplicate += 1
                        continue
                    fresh.discard(event.id)  # the same event twice in a batch: once
                    with self.tracer.start_as_current_span(
                        f"{self.name} process {event.type}",
                        context=context_from(event.traceparent), kind=SpanKind.CONSUMER,
                        attributes={"messaging.message.id": event.id,
                                    "messaging.destination.name": message.topic},
                    ):
                        await self.handler(conn, event)
                    done += 1
        except Exception as exc:
            log.info("batch_one_by_one", consumer=self.name, size=len(messages),
                     error=repr(exc))
            return False
        self.counts["done"] += done
        self.counts["duplicate"] += duplicate
        return True

    async def process(self, message: Message, producer: Producer) -> Outcome:
        try:
            event = decode(message)
        except PoisonMessage as exc:
            await self._dead_letter(message, producer, str(exc), attempts=1)
            self.counts["dead"] += 1
            return "dead"
        structlog.contextvars.bind_contextvars(
            consumer=self.name, event_id=event.id, event_type=event.type
        )
        try:
            with self.tracer.start_as_current_span(
                f"{self.name} process {event.type}",
                context=context_from(event.traceparent),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.message.id": event.id,
                            "messaging.destination.name": message.topic},
            ):
                outcome = await self._apply_with_retries(event, message, producer)
            self.counts[outcome] += 1
            return outcome
        finally:
            structlog.contextvars.unbind_contextvars("consumer", "event_id", "event_type")

    async def _apply_with_retries(
        self, event: Event, message: Message, producer: Producer
    ) -> Outcome:
        attempt = 0
        while True:
            try:
                return await self._apply(event)
            except TRANSIENT as exc:
                if isinstance(exc, OSError | asyncpg.PostgresConnectionError):
                    raise  # the database is gone: restart from the committed offsets
                delay = self.settings.backoff
            except Exception as exc:
                attempt += 1
                if attempt >= self.settings.max_attempts:
                    log.error("message_failed", attempts=attempt, error=repr(exc))
                    return await self._dead_letter(message, producer, repr(exc), attempt)
                delay = self.settings.backoff * 2 ** (attempt - 1)
                log.warning("message_retry", attempt=attempt, error=repr(exc), retry_in=delay)
            self.retries += 1
            await asyncio.sleep(delay)

    async def _apply(self, event: Event) -> Outcome:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await inbox_and_locks(conn, self.schema, self.name, [event]):
                return "duplicate"
            await self.handler(conn, event)
        return "done"

    async def _dead_letter(
        self, message: Message, producer: Producer, error: str, attempts: int
    ) -> Outcome:
        headers = (
            *message.headers,
            ("relais_dlq_consumer", self.name.encode()),
            ("relais_dlq_topic", message.topic.encode()),
            ("relais_dlq_partition", str(message.partition).encode()),
            ("relais_dlq_offset", str(message.offset).encode()),
            ("relais_dlq_attempts", str(attempts).encode()),
            ("relais_dlq_error", error[:2000].encode()),
        )
        await producer.send_batch(
            [Record(dead_letter_topic(self.name), message.key, message.value, headers)]
        )
        log.error("message_dead_lettered", consumer=self.name, topic=message.topic,
                  partition=message.partition,
                  offset=message.offset, error=error[:500])
        return "dead"


async def inbox_and_locks(conn: asyncpg.Connection, schema: str, consumer: str,
                          events: Sequence[Event]) -> set[str]:
    """The ids of the events this consumer had not seen (their inbox rows written), with
    their subjects' locks taken, in one statement.

    A subject's (a person's) events are applied one transaction at a time in a service,
    whatever their topics, partitions, lanes or instances: a transaction-scoped advisory lock
    per subject, taken in one order (no deadlock between two batches). Without it an intake
    and its consent, applied side by side, each miss the other's uncommitted row (the referral
    opened without the consent, the consent recorded without the referral) and the person is
    never handed off. Taken before the handler reads anything: in READ COMMITTED each later
    statement sees what the transaction it waited for committed. A duplicate takes no lock."""
    ids = [e.id for e in events if e.subject]
    rows = await conn.fetch(
        f'WITH fresh AS (INSERT INTO "{schema}".inbox (consumer, event_id)'
        " SELECT $1, e FROM unnest($2::text[]) AS e ON CONFLICT DO NOTHING RETURNING event_id),"
        " locked AS (SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT u.k"
        " FROM unnest($3::text[], $4::bigint[]) AS u(e, k) JOIN fresh f ON f.event_id = u.e"
        " ORDER BY u.k) AS ordered)"
        " SELECT f.event_id FROM fresh f, locked",
        consumer, sorted({e.id for e in events}), ids,
        [subject_lock(schema, e.subject) for e in events if e.subject])
    return {r["event_id"] for r in rows}


def subject_lock(schema: str, subject: str) -> int:
    digest = hashlib.blake2b(f"{schema}/{subject}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _quietly(awaitable: Awaitable[object]) -> None:
    try:
        await awaitable
    except Exception as exc:
        log.debug("stop_failed", error=repr(exc))
