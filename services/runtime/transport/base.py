"""What a transport offers: a producer that returns once every record is acknowledged,
consumer groups with explicit per-partition commits, and a reader outside any group."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from services.runtime.events import Message, Record

TopicPartition = tuple[str, int]


class Producer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def send_batch(self, records: Sequence[Record]) -> None:
        """Publish in order; return only when every record is durably acknowledged."""


class Consumer(Protocol):
    busy: asyncio.Lock
    """Held while a message is processed; a rebalance waits for it before giving partitions up."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def poll(self, timeout: float, max_records: int) -> list[Message]:
        """The next messages, in offset order within each partition; [] after `timeout`."""

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record, per partition, the offset of the next message to read."""

    def owns(self, tp: TopicPartition) -> bool:
        """Whether this consumer is still assigned the partition."""


class Transport(Protocol):
    name: str

    async def setup(self, topics: Iterable[str]) -> None:
        """Create what the topics need (idempotent)."""

    def producer(self) -> Producer: ...
    def consumer(self, group: str, topics: Sequence[str]) -> Consumer: ...


class ReadableTransport(Transport, Protocol):
    """A transport whose topics an operator may read through (`relais dlq`)."""

    async def read_topic(self, topic: str) -> list[Message]:
        """Every record of `topic` from its beginning to its end as it was when called, in
        (partition, offset) order; no consumer group is joined and no offset committed, so
        the consumers do not notice. [] when the topic does not exist."""
