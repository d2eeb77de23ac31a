"""One conformance suite for both transports (`postgres` and `kafka`), against a real
PostgreSQL and a real Apache Kafka broker: per-key order, exactly-once effects across a crash
between the database commit and the offset commit, dead letters, resumption, and a relay that
loses nothing while the broker is away."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from deploy.kafka.broker import KafkaBroker
from schemas.asyncapi import dead_letter_topic
from services.runtime import db, outbox
from services.runtime.consumer import ConsumerSettings, EventConsumer
from services.runtime.events import Event, Message, Record
from services.runtime.outbox import OutboxRelay
from services.runtime.transport.base import Consumer, Producer, TopicPartition, Transport
from services.runtime.transport.kafka import KafkaTransport
from services.runtime.transport.postgres import PostgresTransport
from tests.conftest import create_database, drop_database, wait_until

SCHEMA = "conf"
TYPE = "fr.relais.conformance.tick.v1"
TOPIC = "relais.conformance"
GROUP = "conformance"
FAST = ConsumerSettings(max_attempts=3, backoff=0.05, poll_timeout=0.3)


async def apply_tick(conn: asyncpg.Connection, event: Event) -> None:
    if event.data.get("poison"):
        raise ValueError("this event can never be applied")
    await conn.execute(
        "INSERT INTO conf.effects (event_id, key, seq) VALUES ($1, $2, $3)",
        event.id, event.subject, event.data["seq"],
    )


class Harness:
    def __init__(self, dsn: str, transport: Transport) -> None:
        self.dsn = dsn
        self.transport = transport
        self.tasks: list[asyncio.Task[None]] = []
        self.pool: asyncpg.Pool

    async def start(self) -> Harness:
        conn = await db.connect(self.dsn)
        try:
            await db.migrate(conn, SCHEMA, "services.runtime")
            await conn.execute(
                "CREATE TABLE conf.effects (id bigserial PRIMARY KEY, event_id text NOT NULL,"
                " key text NOT NULL, seq integer NOT NULL)"
            )
        finally:
            await conn.close()
        await self.transport.setup([TOPIC, dead_letter_topic(GROUP)])
        self.pool = await db.create_pool(self.dsn, 10)
        return self

    async def publish(self, key: str, seqs: range, **extra: Any) -> list[Event]:
        events = [Event(TYPE, "/tests", key, {"seq": s, **extra}) for s in seqs]
        async with self.pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, SCHEMA, events)
        return events

    def relay(self) -> OutboxRelay:
        relay = OutboxRelay(SCHEMA, self.dsn, self.transport, poll_interval=0.3)
        self.tasks.append(asyncio.create_task(relay.run()))
        return relay

    def consumer(self, transport: Transport | None = None) -> tuple[EventConsumer,
                                                                     asyncio.Task[None]]:
        consumer = EventConsumer(GROUP, SCHEMA, [TOPIC], apply_tick, self.pool,
                                 transport or self.transport, FAST)
        task = asyncio.create_task(consumer.run())
        self.tasks.append(task)
        return consumer, task

    async def effects(self) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self.pool.fetch(
            "SELECT event_id, key, seq FROM conf.effects ORDER BY id"
        )
        return rows

    async def count(self) -> int:
        n: int = await self.pool.fetchval("SELECT count(*) FROM conf.effects")
        return n

    async def unpublished(self) -> int:
        n: int = await self.pool.fetchval(
            "SELECT count(*) FROM conf.outbox WHERE published_at IS NULL"
        )
        return n

    async def wait_for_effects(self, count: int, timeout: float = 60.0) -> None:
        async def enough() -> bool:
            return await self.count() >= count
        await wait_until(enough, timeout, f"{count} effects")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.pool.close()


@pytest.fixture(params=["postgres", "kafka"])
def transport(request: pytest.FixtureRequest, database: str) -> Transport:
    if request.param == "postgres":
        return PostgresTransport(database, partitions=4, poll_interval=0.3)
    bootstrap = request.getfixturevalue("kafka_bootstrap")
    return KafkaTransport(bootstrap, partitions=4, namespace=f"t{uuid.uuid4().hex[:10]}.")


@pytest.fixture
async def harness(database: str, transport: Transport) -> AsyncIterator[Harness]:
    h = await Harness(database, transport).start()
    yield h
    await h.close()


async def test_events_of_one_key_are_applied_in_order(harness: Harness) -> None:
    keys = [str(uuid.uuid4()) for _ in range(5)]
    for start in (0, 20):  # several transactions per key, interleaved between keys
        for key in keys:
            await harness.publish(key, range(start, start + 20))
    harness.relay()
    harness.consumer()
    await harness.wait_for_effects(200)
    await asyncio.sleep(0.5)
    effects = await harness.effects()
    assert len(effects) == 200
    for key in keys:
        assert [r["seq"] for r in effects if r["key"] == key] == list(range(40))


async def test_the_partitions_are_applied_side_by_side_each_in_order(harness: Harness) -> None:
    in_flight = peak = 0

    async def slow_tick(conn: asyncpg.Connection, event: Event) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await asyncio.sleep(0.01)  # a handler waits for its database round trips
            await apply_tick(conn, event)
        finally:
            in_flight -= 1

    keys = [str(uuid.uuid4()) for _ in range(16)]  # on more than one of the 4 partitions
    for key in keys:
        await harness.publish(key, range(10))
    harness.relay()
    await wait_until(lambda: _none_left(harness), 30, "everything published")
    two = dataclasses.replace(FAST, lanes=2)
    consumer = EventConsumer(GROUP, SCHEMA, [TOPIC], slow_tick, harness.pool,
                             harness.transport, two)
    harness.tasks.append(asyncio.create_task(consumer.run()))
    await harness.wait_for_effects(160)
    effects = await harness.effects()
    for key in keys:
        assert [r["seq"] for r in effects if r["key"] == key] == list(range(10))
    assert peak == two.lanes, peak  # side by side, and no more than told


async def _none_left(harness: Harness) -> bool:
    return await harness.unpublished() == 0


class _CrashOnFirstCommit:
    """A transport whose consumers die once, after the database commit and before the offset
    commit: what a process killed at that instant leaves behind."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.name = inner.name
        self.crashed = False

    async def setup(self, topics: Any) -> None:
        await self.inner.setup(topics)

    def producer(self) -> Producer:
        return self.inner.producer()

    def consumer(self, group: str, topics: Sequence[str]) -> Consumer:
        inner = self.inner.consumer(group, topics)
        outer = self

        class Crashing:
            busy = inner.busy
            start, stop, poll, owns = inner.start, inner.stop, inner.poll, inner.owns

            async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
                if not outer.crashed:
                    outer.crashed = True
                    raise RuntimeError("killed between the database and the offset commits")
                await inner.commit(offsets)

        return Crashing()


async def test_redelivery_after_a_crash_before_the_offset_commit_is_applied_once(
    harness: Harness,
) -> None:
    key = str(uuid.uuid4())
    await harness.publish(key, range(10))
    harness.relay()
    crashing = _CrashOnFirstCommit(harness.transport)
    consumer, _ = harness.consumer(crashing)
    await harness.wait_for_effects(10)
    await wait_until(lambda: consumer.counts["duplicate"] > 0, 60, "the redelivery")
    await asyncio.sleep(0.5)
    effects = await harness.effects()
    assert crashing.crashed
    assert consumer.counts["duplicate"] >= 1, "the crash must have caused a redelivery"
    assert len(effects) == 10, "a redelivered message was applied twice"
    assert [r["seq"] for r in effects] == list(range(10))


async def _read_all(transport: Transport, topic: str, count: int) -> list[Message]:
    consumer = transport.consumer(f"reader-{uuid.uuid4().hex[:8]}", [topic])
    await consumer.start()
    messages: list[Message] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while len(messages) < count and loop.time() < deadline:
            messages += await consumer.poll(0.5, 100)
    finally:
        await consumer.stop()
    return messages


async def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_consumer_goes_on(
    harness: Harness,
) -> None:
    key = str(uuid.uuid4())
    await harness.publish(key, range(0, 3))
    await harness.publish(key, range(3, 4), poison=True)
    producer = harness.transport.producer()
    await producer.start()
    await producer.send_batch([Record(TOPIC, key.encode(), b"not a cloudevent")])
    await producer.stop()
    await harness.publish(key, range(4, 7))
    harness.relay()
    consumer, _ = harness.consumer()
    await harness.wait_for_effects(6)
    assert [r["seq"] for r in await harness.effects()] == [0, 1, 2, 4, 5, 6]

    dead = await _read_all(harness.transport, dead_letter_topic(GROUP), 2)
    assert len(dead) == 2
    reasons = sorted(dict(m.headers)["relais_dlq_error"].decode() for m in dead)
    assert "never be applied" in reasons[0] or "never be applied" in reasons[1]
    assert any("not a CloudEvent" in r for r in reasons)
    assert all(dict(m.headers)["relais_dlq_topic"] == TOPIC.encode() for m in dead)
    assert consumer.counts["dead"] == 2


def watch_offsets(transport: Transport, monkeypatch: pytest.MonkeyPatch
                  ) -> Callable[[], bool]:
    """The transport's consumers made from now on, watched: whether every message they
    polled is committed (a test waits for that, not for a while)."""
    polled: dict[TopicPartition, int] = {}
    committed: dict[TopicPartition, int] = {}
    make = transport.consumer

    def consumer(group: str, topics: Sequence[str]) -> Consumer:
        made = make(group, topics)
        poll, commit = made.poll, made.commit

        async def polling(timeout: float, max_records: int) -> list[Message]:
            messages = await poll(timeout, max_records)
            polled.update({(m.topic, m.partition): m.offset + 1 for m in messages})
            return messages

        async def committing(offsets: Mapping[TopicPartition, int]) -> None:
            await commit(offsets)
            committed.update(offsets)

        monkeypatch.setattr(made, "poll", polling)
        monkeypatch.setattr(made, "commit", committing)
        return made

    monkeypatch.setattr(transport, "consumer", consumer)
    return lambda: bool(polled) and all(committed.get(tp, -1) >= offset
                                        for tp, offset in polled.items())


async def test_a_restarted_consumer_resumes_where_it_stopped(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    all_committed = watch_offsets(harness.transport, monkeypatch)
    key = str(uuid.uuid4())
    await harness.publish(key, range(10))
    harness.relay()
    first, task = harness.consumer()
    await harness.wait_for_effects(10)
    await wait_until(all_committed, 30, "the offsets of what was done committed")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert first.counts["done"] == 10

    await harness.publish(key, range(10, 15))
    second, _ = harness.consumer()
    await harness.wait_for_effects(15)
    await asyncio.sleep(0.5)
    assert second.counts == {"done": 5, "duplicate": 0, "dead": 0}
    assert [r["seq"] for r in await harness.effects()] == list(range(15))


async def test_the_relay_loses_nothing_while_the_broker_is_away(
    request: pytest.FixtureRequest, database: str, pg_admin_url: str,
    transport: Transport,
) -> None:
    broker: KafkaBroker | None = None
    bus_url: str | None = None
    if isinstance(transport, KafkaTransport):
        broker = request.getfixturevalue("kafka_broker")
        transport = KafkaTransport(broker.bootstrap, partitions=4)
    else:
        bus_url = await create_database(pg_admin_url)
        transport = PostgresTransport(bus_url, partitions=4, poll_interval=0.3)
    harness = await Harness(database, transport).start()
    try:
        key = str(uuid.uuid4())
        harness.relay()
        harness.consumer()
        await harness.publish(key, range(20))
        await harness.wait_for_effects(20)

        await _broker_down(broker, bus_url, pg_admin_url)
        await harness.publish(key, range(20, 50))
        await asyncio.sleep(2)
        assert await harness.unpublished() > 0, "the broker was away: nothing could be sent"
        await _broker_up(broker, bus_url, pg_admin_url)

        await harness.wait_for_effects(50, timeout=120)
        await asyncio.sleep(1)
        effects = await harness.effects()
        assert await harness.unpublished() == 0
        assert len({r["event_id"] for r in effects}) == 50
        assert len(effects) == 50, "an event was applied twice"
        assert [r["seq"] for r in effects] == list(range(50))
    finally:
        await harness.close()
        if bus_url:
            await drop_database(pg_admin_url, bus_url)


async def _broker_down(broker: KafkaBroker | None, bus_url: str | None, admin_url: str) -> None:
    if broker is not None:
        await asyncio.to_thread(broker.kill)
    else:
        await _bus_accepts_connections(admin_url, bus_url, False)


async def _broker_up(broker: KafkaBroker | None, bus_url: str | None, admin_url: str) -> None:
    if broker is not None:
        await asyncio.to_thread(broker.start)
    else:
        await _bus_accepts_connections(admin_url, bus_url, True)


async def _bus_accepts_connections(admin_url: str, bus_url: str | None, allowed: bool) -> None:
    """The postgres transport's outage: its database refuses (and drops) every connection."""
    assert bus_url is not None
    name = urlsplit(bus_url).path.lstrip("/")
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
            )
    finally:
        await conn.close()
