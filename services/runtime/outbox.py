"""The transactional outbox: events are written in the same transaction as the state they
describe, and the relay publishes them after the commit."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

import asyncpg
import orjson
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from services.runtime import db
from services.runtime.events import Event, Record, encode
from services.runtime.logging import get_logger
from services.runtime.telemetry import (
    context_from,
    current_traceparent,
    traceparent_of,
    tracer_for,
)
from services.runtime.transport.base import Producer, Transport
from services.runtime.transport.postgres import headers_from_json, headers_to_json
from services.runtime.waiting import wait_for_event

log = get_logger("relais.outbox")
BATCH = 500
RETENTION = "7 days"
PRUNE_EVERY = 600.0
TRACE_HEADERS = ("traceparent", "ce_traceparent")


def unpublished(schema: str) -> str:
    """The relay's query: the oldest events not yet published (index outbox_unpublished)."""
    return (f'SELECT id, topic, key, value, headers FROM "{schema}".outbox'
            " WHERE published_at IS NULL ORDER BY id LIMIT $1")


def channel(schema: str) -> str:
    return f"relais_outbox_{schema}"


async def add(conn: asyncpg.Connection, schema: str, events: Sequence[Event]) -> None:
    """Append events to the schema's outbox, inside the caller's transaction."""
    ctes, args = adding(schema, events, 1)
    await conn.execute(f"WITH {ctes} SELECT * FROM woke", *args)


def adding(schema: str, events: Sequence[Event], first: int, *, when: str = ""
           ) -> tuple[str, list[object]]:
    """For a statement of the caller's that appends `events` to the schema's outbox on the
    way (one round trip: the rows and the relay's wake-up, delivered at commit): the items of
    its `WITH`, `added` and `woke` (one row, which the statement must read for the wake-up
    to happen), numbered from `$first`, and their arguments. `when`: a condition of the
    statement's (`EXISTS (SELECT 1 FROM created)`, say) without which no row is added and
    nobody woken (`woke` is then empty)."""
    traceparent = current_traceparent()
    records = [encode(e, traceparent) for e in events]
    n = [f"${first + i}" for i in range(5)]
    return (f'added AS (INSERT INTO "{schema}".outbox (topic, key, value, headers)'
            f" SELECT t, k, v, h::jsonb FROM unnest({n[0]}::text[], {n[1]}::bytea[],"
            f" {n[2]}::bytea[], {n[3]}::text[]) AS u(t, k, v, h){' WHERE ' if when else ''}"
            f"{when}),"
            f" woke AS (SELECT pg_notify({n[4]}, '') AS woke"
            f"{' WHERE ' if when else ''}{when})"), [
        [r.topic for r in records], [r.key for r in records], [r.value for r in records],
        [orjson.dumps(headers_to_json(r.headers)).decode() for r in records], channel(schema)]


class OutboxRelay:
    """Publishes a schema's outbox rows, waits for the acknowledgements, then marks them.

    One active relay per schema (a session advisory lock); woken by NOTIFY, with a polling
    fallback. Rows are selected by state (`published_at IS NULL`), never by a cursor over the
    id sequence, whose values commit out of order."""

    def __init__(self, schema: str, dsn: str, transport: Transport, poll_interval: float) -> None:
        self.schema = schema
        self.dsn = dsn
        self.transport = transport
        self.poll_interval = poll_interval
        self.published = 0
        self._wake = asyncio.Event()
        self.tracer = tracer_for(schema)  # a service's schema is its name

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay_restart", schema=self.schema, error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _run_once(self) -> None:
        conn = await db.connect(self.dsn)
        producer: Producer | None = None
        try:
            await conn.execute(
                "SELECT pg_advisory_lock(hashtext($1))", f"relais.relay.{self.schema}"
            )
            await conn.add_listener(channel(self.schema), lambda *_: self._wake.set())
            producer = self.transport.producer()
            await producer.start()
            log.info("relay_active", schema=self.schema, transport=self.transport.name)
            pruned_at = 0.0
            while True:
                self._wake.clear()
                sent = await self._publish_batch(conn, producer)
                if sent == BATCH:
                    continue
                if time.monotonic() - pruned_at > PRUNE_EVERY:
                    pruned_at = time.monotonic()
                    await conn.execute(
                        f'DELETE FROM "{self.schema}".outbox'
                        f" WHERE published_at < now() - interval '{RETENTION}'"
                    )
                await wait_for_event(self._wake, self.poll_interval)
        finally:
            if producer is not None:
                await producer.stop()
            await conn.close()

    async def _publish_batch(self, conn: asyncpg.Connection, producer: Producer) -> int:
        rows = await conn.fetch(unpublished(self.schema), BATCH)
        if not rows:
            return 0
        records = [
            Record(r["topic"], r["key"], r["value"], headers_from_json(r["headers"])) for r in rows
        ]
        spans = [self._publish_span(r) for r in records]
        # If the broker is unreachable this raises; run() starts over with a new producer and
        # the rows, still unpublished, are sent again (in new spans).
        try:
            await producer.send_batch([_traced(r, s) for r, s in zip(records, spans, strict=True)])
        except Exception as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, repr(exc)))
            raise
        finally:
            for span in spans:
                span.end()
        await conn.execute(
            f'UPDATE "{self.schema}".outbox SET published_at = now() WHERE id = ANY($1)',
            [r["id"] for r in rows],
        )
        self.published += len(rows)
        return len(rows)

    def _publish_span(self, record: Record) -> Span:
        """The publish of one record, a child of the context stored with its row (that of the
        request or message that wrote it); a root span when there was none."""
        headers = dict(record.headers)
        stored = headers.get("ce_traceparent")
        return self.tracer.start_span(
            f"publish {record.topic}", context=context_from(stored.decode() if stored else None),
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": self.transport.name,
                        "messaging.operation.type": "send",
                        "messaging.destination.name": record.topic,
                        "messaging.message.id": headers.get("ce_id", b"").decode()},
        )


def _traced(record: Record, span: Span) -> Record:
    """The record with the publish span's context as its plain W3C `traceparent` header (what
    any Kafka instrumentation follows) and as its CloudEvent's `ce_traceparent` (what the
    consumers here read): one value, so one trace whichever a reader follows. Tracing off
    (no span), the stored context goes on as it is, in both."""
    stored = dict(record.headers).get("ce_traceparent", b"")
    traceparent = traceparent_of(span).encode() or stored
    headers = [(n, v) for n, v in record.headers if n not in TRACE_HEADERS]
    headers += [(name, traceparent) for name in TRACE_HEADERS if traceparent]
    return dataclasses.replace(record, headers=tuple(headers))
