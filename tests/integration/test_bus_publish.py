"""The postgres transport publishes a batch in one statement (issue #12): each partition's
records take the next offsets of its counter, in the batch's order, whatever topics and
partitions the batch mixes; publishers running at once never share or skip an offset."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from services.runtime.events import Record
from services.runtime.transport.postgres import PostgresTransport, partition_for

TOPICS = ("relais.intake", "relais.consent")
PARTITIONS = 4


def batch(tag: str, size: int) -> list[Record]:
    """Records for ten keys over both topics, interleaved; each value says its place."""
    return [Record(TOPICS[i % 2], f"person-{i % 10}".encode(), f"{tag}-{i}".encode(),
                   (("ce_id", f"{tag}-{i}".encode()),)) for i in range(size)]


async def test_a_mixed_batch_keeps_each_partition_s_order_and_counts_on(database: str) -> None:
    transport = PostgresTransport(database, partitions=PARTITIONS)
    await transport.setup(TOPICS)
    producer = transport.producer()
    await producer.start()
    sent = batch("a", 40) + batch("b", 13)
    try:
        await producer.send_batch(batch("a", 40))
        await producer.send_batch(batch("b", 13))
    finally:
        await producer.stop()
    for topic in TOPICS:
        expected: dict[int, list[Record]] = defaultdict(list)
        for record in sent:
            if record.topic == topic:
                expected[partition_for(record.key, PARTITIONS)].append(record)
        read = await transport.read_topic(topic)
        for partition, records in expected.items():
            got = [m for m in read if m.partition == partition]
            assert [m.offset for m in got] == list(range(len(records)))
            assert [(m.key, m.value, m.headers) for m in got] == [
                (r.key, r.value, r.headers) for r in records]
        assert len(read) == sum(len(r) for r in expected.values())


async def test_publishers_at_once_never_share_or_skip_an_offset(database: str) -> None:
    transport = PostgresTransport(database, partitions=PARTITIONS)
    await transport.setup(TOPICS)
    producers = [transport.producer() for _ in range(3)]
    for producer in producers:
        await producer.start()
    try:
        await asyncio.gather(*(producer.send_batch(batch(f"p{n}-{k}", 17))
                               for n, producer in enumerate(producers) for k in range(10)))
    finally:
        for producer in producers:
            await producer.stop()
    for topic in TOPICS:
        read = await transport.read_topic(topic)
        by_partition: dict[int, list[int]] = defaultdict(list)
        for message in read:
            by_partition[message.partition].append(message.offset)
        for offsets in by_partition.values():
            assert offsets == list(range(len(offsets)))
        assert len(read) == 3 * 10 * (17 // 2 + (1 if topic == TOPICS[0] else 0))
