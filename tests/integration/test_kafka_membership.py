"""Static group membership on a real broker (issue #17, point 4): a consumer with
RELAIS_INSTANCE_ID that stops and comes back under the same id within the session timeout
gets its partitions back at once, and the other member of its group keeps its own throughout
(no rebalance). While it is away its partitions wait: a static member sends no LeaveGroup."""

from __future__ import annotations

import asyncio
import time
import uuid

from services.runtime.transport.kafka import KafkaConsumer, KafkaTransport, Membership

TOPIC = "membership"
SESSION_MS = 15000
"""Counted by the broker from a's last heartbeat (up to 1.5 s before it stops): wide enough
for a's 2 s away and its start again on a loaded machine."""


def transport(bootstrap: str, namespace: str, instance: str) -> KafkaTransport:
    return KafkaTransport(bootstrap, partitions=2, namespace=namespace,
                          membership=Membership(SESSION_MS, 1500, instance))


def owned(consumer: KafkaConsumer) -> set[int]:
    return {p for p in (0, 1) if consumer.owns((TOPIC, p))}


async def until_owned(consumers: list[KafkaConsumer], timeout: float) -> None:
    """Poll every consumer (as Relais's loop does) until each owns one partition."""
    deadline = time.monotonic() + timeout
    while not all(len(owned(c)) == 1 for c in consumers):
        assert time.monotonic() < deadline, [owned(c) for c in consumers]
        await asyncio.gather(*(c.poll(0.1, 10) for c in consumers))


async def test_a_static_member_restarted_gets_its_partitions_back_at_once(
        kafka_bootstrap: str) -> None:
    namespace = f"m{uuid.uuid4().hex[:10]}."
    await transport(kafka_bootstrap, namespace, "a").setup([TOPIC])
    a = transport(kafka_bootstrap, namespace, "a").consumer("group", [TOPIC])
    b = transport(kafka_bootstrap, namespace, "b").consumer("group", [TOPIC])
    await a.start()
    await b.start()
    again = None
    try:
        await until_owned([a, b], timeout=30)
        mine, theirs = owned(a), owned(b)

        await a.stop()  # graceful, yet no LeaveGroup: the group keeps a's place
        stopped = time.monotonic()
        while time.monotonic() - stopped < 2:
            await b.poll(0.1, 10)
            assert owned(b) == theirs, "b was handed a's partition: a left the group"

        again = transport(kafka_bootstrap, namespace, "a").consumer("group", [TOPIC])
        back = time.monotonic()
        await again.start()
        while owned(again) != mine:
            assert time.monotonic() - back < 3.5, "a waited for a rebalance"
            await asyncio.gather(again.poll(0.1, 10), b.poll(0.1, 10))
            assert owned(b) == theirs, "b's partitions moved"
        assert time.monotonic() - stopped < SESSION_MS / 1000, "back within the session"
    finally:
        for consumer in (again, b):
            if consumer is not None:
                await consumer.stop()
