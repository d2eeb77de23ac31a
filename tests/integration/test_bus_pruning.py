"""The postgres transport's event log is pruned (issue #12): an event goes once it is past its
topic's retention and every group that reads the topic has read it; dead letters are kept
longer (the time on-call has to read them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from services.runtime import db
from services.runtime.events import Record
from services.runtime.transport.postgres import PostgresTransport

EVENTS, DEAD = "relais.intake", "relais.dlq.referral"


async def offsets(conn: asyncpg.Connection, topic: str) -> list[int]:
    rows = await conn.fetch(
        'SELECT "offset" FROM relais_bus.records WHERE topic = $1 ORDER BY 1', topic)
    return [r["offset"] for r in rows]


async def test_an_event_goes_once_past_its_retention_and_read_by_every_group(
        database: str) -> None:
    transport = PostgresTransport(database, partitions=1)
    await transport.setup([EVENTS, DEAD])
    producer = transport.producer()
    await producer.start()
    try:
        await producer.send_batch([Record(EVENTS, b"p", str(i).encode()) for i in range(10)])
        await producer.send_batch([Record(DEAD, b"p", b"dead") for _ in range(3)])
    finally:
        await producer.stop()
    conn = await db.connect(database)
    try:
        # offsets 0-5 written 8 days ago, 6-9 now; the dead letters 8 days ago
        await conn.execute(
            "UPDATE relais_bus.records SET created_at = now() - interval '8 days'"
            " WHERE (topic = $1 AND \"offset\" < 6) OR topic = $2", EVENTS, DEAD)
        # group referral has read up to offset 4 (its next), group notify up to 8
        await conn.execute(
            "INSERT INTO relais_bus.group_offsets (group_id, topic, partition, committed)"
            " VALUES ('referral', $1, 0, 4), ('notify', $1, 0, 8)", EVENTS)
        now = datetime.now(UTC)
        week, month = now - timedelta(days=7), now - timedelta(days=30)

        assert await transport.prune(week, month) == 4, "0-3: old and read by both groups"
        assert await offsets(conn, EVENTS) == [4, 5, 6, 7, 8, 9], "4, 5: referral's to read"
        assert await offsets(conn, DEAD) == [0, 1, 2], "dead letters kept 30 days"
        assert await transport.prune(week, month) == 0, "nothing more to prune"

        await conn.execute("UPDATE relais_bus.group_offsets SET committed = 10"
                           " WHERE group_id = 'referral'")
        assert await transport.prune(week, month) == 2
        assert await offsets(conn, EVENTS) == [6, 7, 8, 9], "read by all, but recent"

        assert await transport.prune(week, now) == 3, "dead letters past their period"
        assert await offsets(conn, DEAD) == []
        # what is written afterwards takes the next offsets: the log's counters are kept
        producer = transport.producer()
        await producer.start()
        try:
            await producer.send_batch([Record(DEAD, b"p", b"dead")])
        finally:
            await producer.stop()
        assert await offsets(conn, DEAD) == [3]
    finally:
        await conn.close()
