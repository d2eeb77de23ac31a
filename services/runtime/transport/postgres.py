"""The `postgres` transport: a partitioned, durable event log in PostgreSQL.

Offsets are assigned under the row lock of the partition's counter, which is held until the
publishing transaction commits: offsets therefore become visible in order, and a reader can
safely advance past what it has seen (a bare sequence would not allow that: sequence values
commit out of order). Partitions of a group are owned through session advisory locks, so
several processes share a group and a dead one's partitions are taken over."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.runtime import db
from services.runtime.events import Message, Record
from services.runtime.transport.base import TopicPartition
from services.runtime.waiting import wait_for_event

SCHEMA = "relais_bus"
CHANNEL = "relais_bus"
RECLAIM_EVERY = 5.0

_FETCH = f"""
SELECT r.topic, r.partition, r."offset", r.key, r.value, r.headers
FROM unnest($1::text[], $2::int[], $3::bigint[]) AS p(topic, partition, pos)
CROSS JOIN LATERAL (
    SELECT * FROM {SCHEMA}.records r
    WHERE r.topic = p.topic AND r.partition = p.partition AND r."offset" >= p.pos
    ORDER BY r."offset" LIMIT $4
) r
ORDER BY r.topic, r.partition, r."offset"
"""

_PRUNE_BELOW = f"""
SELECT p.topic, p.partition, (SELECT min(r."offset") FROM {SCHEMA}.records r
                              WHERE r.topic = p.topic AND r.partition = p.partition) AS first,
       least((SELECT min(g.committed) FROM {SCHEMA}.group_offsets g
              WHERE g.topic = p.topic AND g.partition = p.partition),
             coalesce((SELECT r."offset" FROM {SCHEMA}.records r
                       WHERE r.topic = p.topic AND r.partition = p.partition
                         AND r.created_at >= CASE WHEN p.topic LIKE 'relais.dlq.%'
                                                  THEN $2::timestamptz ELSE $1 END
                       ORDER BY r."offset" LIMIT 1), p.next_offset)) AS below
FROM {SCHEMA}.partitions p
"""
"""Per partition, its first record and the offset below which every record is past its
retention and read by every group that reads it (`$1`: the events' cutoff, `$2`: the dead
letters')."""

_PRUNE = f"""
DELETE FROM {SCHEMA}.records
WHERE topic = $1 AND partition = $2 AND "offset" >= $3 AND "offset" < $4
"""
PRUNE_BATCH = 1000

_READ_TOPIC = f"""
SELECT partition, "offset", key, value, headers FROM {SCHEMA}.records
WHERE topic = $1 ORDER BY partition, "offset"
"""


_SEND = f"""
WITH r AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::bytea[], $4::bytea[], $5::text[])
        WITH ORDINALITY AS r(topic, partition, key, value, headers, n)
), counts AS (
    SELECT topic, partition, count(*) AS n FROM r GROUP BY topic, partition
), ends AS (
    INSERT INTO {SCHEMA}.partitions AS p (topic, partition, next_offset)
    SELECT topic, partition, n FROM counts ORDER BY topic COLLATE "C", partition
    ON CONFLICT (topic, partition) DO UPDATE SET next_offset = p.next_offset + EXCLUDED.next_offset
    RETURNING topic, partition, next_offset
), woke AS (SELECT pg_notify($6, ''))
INSERT INTO {SCHEMA}.records (topic, partition, "offset", key, value, headers)
SELECT r.topic, r.partition,
       e.next_offset - c.n - 1 + row_number() OVER (PARTITION BY r.topic, r.partition ORDER BY r.n),
       r.key, r.value, r.headers::jsonb
FROM r JOIN counts c USING (topic, partition) JOIN ends e USING (topic, partition), woke
"""
"""A batch of records published: each partition's counter moved on by its records, in the
order of (topic, partition); the records at the offsets it gave, in their order; the
consumers woken at commit."""


def partition_for(key: bytes | None, partitions: int) -> int:
    return zlib.crc32(key) % partitions if key else 0


def headers_to_json(headers: Iterable[tuple[str, bytes]]) -> list[list[str]]:
    return [[name, value.decode()] for name, value in headers]


def headers_from_json(headers: list[list[str]]) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, value.encode()) for name, value in headers)


class PostgresTransport:
    name = "postgres"

    def __init__(self, dsn: str, partitions: int = 4, poll_interval: float = 1.0) -> None:
        self.dsn = dsn
        self.partitions = partitions
        self.poll_interval = poll_interval

    async def setup(self, topics: Iterable[str]) -> None:
        conn = await db.connect(self.dsn)
        try:
            await db.migrate(conn, SCHEMA, "services.runtime.transport")
        finally:
            await conn.close()

    def producer(self) -> PostgresProducer:
        return PostgresProducer(self.dsn, self.partitions)

    async def read_topic(self, topic: str) -> list[Message]:
        """One SELECT, so one snapshot: the topic as it was at that instant; no group."""
        conn = await db.connect(self.dsn)
        try:
            rows = await conn.fetch(_READ_TOPIC, topic)
        except asyncpg.UndefinedTableError:  # the bus was never set up on this database
            return []
        finally:
            await conn.close()
        return [Message(topic, r["partition"], r["offset"], r["key"], r["value"],
                        headers_from_json(r["headers"])) for r in rows]

    def consumer(self, group: str, topics: Sequence[str]) -> PostgresConsumer:
        return PostgresConsumer(self.dsn, group, topics, self.partitions, self.poll_interval)

    async def prune(self, events_before: datetime, dead_letters_before: datetime) -> int:
        """Delete the records written before their topic's cutoff that every group reading
        them has read (as Kafka's retention, but never what a group has yet to read), a
        thousand offsets per statement: the writers, who lock only the partitions' counters,
        never wait. How many went."""
        conn = await db.connect(self.dsn)
        deleted = 0
        try:
            for row in await conn.fetch(_PRUNE_BELOW, events_before, dead_letters_before):
                if row["first"] is None:
                    continue
                for start in range(row["first"], row["below"], PRUNE_BATCH):
                    status = await conn.execute(_PRUNE, row["topic"], row["partition"], start,
                                                min(start + PRUNE_BATCH, row["below"]))
                    deleted += int(status.rsplit(" ", 1)[1])
        finally:
            await conn.close()
        return deleted


class PostgresProducer:
    def __init__(self, dsn: str, partitions: int) -> None:
        self.dsn = dsn
        self.partitions = partitions
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await db.create_pool(self.dsn, max_size=2)

    async def stop(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def send_batch(self, records: Sequence[Record]) -> None:
        """One statement (`_SEND`): each partition's offsets taken from its counter, whose
        row lock, held until the statement commits, keeps the offsets committing in order;
        the counters locked in a fixed order (no deadlock between publishers); the records'
        order kept within a partition."""
        if not records:
            return
        assert self._pool is not None, "producer not started"
        await self._pool.execute(
            _SEND, [r.topic for r in records],
            [partition_for(r.key, self.partitions) for r in records],
            [r.key for r in records], [r.value for r in records],
            [orjson.dumps(headers_to_json(r.headers)).decode() for r in records], CHANNEL)


class PostgresConsumer:
    def __init__(
        self, dsn: str, group: str, topics: Sequence[str], partitions: int, poll_interval: float
    ) -> None:
        self.dsn = dsn
        self.group = group
        self.topics = list(topics)
        self.partitions = partitions
        self.poll_interval = poll_interval
        self.busy = asyncio.Lock()
        self._conn: asyncpg.Connection | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._wake = asyncio.Event()
        self._claimed_at = 0.0

    async def start(self) -> None:
        self._conn = await db.connect(self.dsn)
        await self._conn.add_listener(CHANNEL, self._on_notify)
        await self._claim()

    async def stop(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._positions.clear()
            await conn.close()  # releases the partitions' advisory locks

    def _on_notify(self, *_args: Any) -> None:
        self._wake.set()

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._positions

    async def _claim(self) -> None:
        """Take every partition of the group that no live consumer holds."""
        conn = self._require_conn()
        self._claimed_at = time.monotonic()
        for topic in self.topics:
            for partition in range(self.partitions):
                tp = (topic, partition)
                if tp in self._positions:
                    continue
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext($1))",
                    f"relais_bus/{self.group}/{topic}/{partition}",
                )
                if got:
                    committed = await conn.fetchval(
                        f"SELECT committed FROM {SCHEMA}.group_offsets"
                        " WHERE group_id = $1 AND topic = $2 AND partition = $3",
                        self.group, topic, partition,
                    )
                    self._positions[tp] = committed or 0  # earliest when never committed

    async def poll(self, timeout: float, max_records: int) -> list[Message]:
        conn = self._require_conn()
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() - self._claimed_at > RECLAIM_EVERY:
                await self._claim()
            self._wake.clear()
            tps = list(self._positions)
            rows = await conn.fetch(
                _FETCH,
                [t for t, _ in tps], [p for _, p in tps], [self._positions[tp] for tp in tps],
                max_records,
            )
            if rows:
                messages = [
                    Message(r["topic"], r["partition"], r["offset"], r["key"], r["value"],
                            headers_from_json(r["headers"]))
                    for r in rows
                ]
                for m in messages:
                    self._positions[(m.topic, m.partition)] = m.offset + 1
                return messages
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await wait_for_event(self._wake, min(remaining, self.poll_interval))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        conn = self._require_conn()
        owned = [(tp, offset) for tp, offset in offsets.items() if self.owns(tp)]
        await conn.executemany(
            f"INSERT INTO {SCHEMA}.group_offsets (group_id, topic, partition, committed)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (group_id, topic, partition)"
            " DO UPDATE SET committed = EXCLUDED.committed",
            [(self.group, t, p, offset) for (t, p), offset in owned],
        )

    def _require_conn(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("consumer not started")
        return self._conn

