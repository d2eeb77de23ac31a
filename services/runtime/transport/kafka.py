"""The `kafka` transport (aiokafka): idempotent producer with acks=all; consumer groups with
auto-commit off, earliest reset, explicit per-partition commits and a rebalance listener, and
a chosen session timeout and optional static membership (`Membership`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    TopicAlreadyExistsError,
    for_code,
)

from services.runtime.events import Message, Record
from services.runtime.logging import get_logger
from services.runtime.transport.base import TopicPartition as TP

log = get_logger("relais.kafka")


@dataclass(frozen=True)
class Membership:
    """How a consumer belongs to its group (RELAIS_KAFKA_SESSION_TIMEOUT_MS,
    RELAIS_KAFKA_HEARTBEAT_INTERVAL_MS, RELAIS_INSTANCE_ID). The session timeout is how long the
    partitions of a killed member wait before the others get them."""

    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1500
    instance_id: str | None = None


# A member has this long to finish its in-flight batch (`_WaitForInFlight`) and rejoin during a
# rebalance, whatever the session timeout (aiokafka would tie it to the session timeout).
REBALANCE_TIMEOUT_MS = 10_000
SETUP_TIMEOUT = 60.0
"""Seconds `KafkaTransport.setup` tries again a request a broker could not answer."""
REQUEST_TIMEOUT_MS = 10_000
"""The longest wait for a broker's answer, the producer's and `setup`'s admin client's
(aiokafka's default for the admin client is 40 s)."""


def group_options(group: str, membership: Membership) -> dict[str, Any]:
    """AIOKafkaConsumer's arguments for a member of `group` (its name on the wire).

    With an instance id the member is static (KIP-345): restarted under the same id within the
    session timeout, it gets its partitions back without a rebalance; aiokafka sends no
    LeaveGroup when a static member stops, so its partitions wait for its return or the end of
    its session."""
    return {
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "session_timeout_ms": membership.session_timeout_ms,
        "heartbeat_interval_ms": membership.heartbeat_interval_ms,
        "rebalance_timeout_ms": max(REBALANCE_TIMEOUT_MS, membership.session_timeout_ms),
        "group_instance_id": (f"{membership.instance_id}.{group}" if membership.instance_id
                              else None),
    }


class KafkaTransport:
    name = "kafka"

    def __init__(self, bootstrap: str, partitions: int = 4, replication: int = 1,
                 namespace: str = "", membership: Membership | None = None,
                 security: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.security = security or {}
        """aiokafka's security arguments (TLS, SASL), for every client it makes."""
        self.partitions = partitions
        self.replication = replication
        self.namespace = namespace
        self.membership = membership or Membership()

    async def setup(self, topics: Iterable[str]) -> None:
        """The missing topics created. A cluster out of reach, or refusing these credentials,
        fails at once (the admin client's bootstrap); once reached, a failure a broker may
        recover from is tried again, with fresh metadata, for SETUP_TIMEOUT seconds: the
        admin client sends a request to a broker chosen at random among those its metadata
        lists, a dead one too until the cluster fences it (a process restarted while one
        broker of three was down failed to start on `NodeNotReadyError`)."""
        wanted = {self.namespace + t for t in topics}
        deadline = time.monotonic() + SETUP_TIMEOUT
        delay, reached = 0.2, False
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security,
                                        request_timeout_ms=REQUEST_TIMEOUT_MS)
            try:
                async with asyncio.timeout(max(deadline - time.monotonic(), 1.0)):
                    await admin.start()
                    reached = True
                    await self._create(admin, wanted)
                return
            except (KafkaError, TimeoutError) as exc:  # (a request to a dead broker: timeout)
                retriable = isinstance(exc, TimeoutError) or exc.retriable
                if not (reached and retriable) or time.monotonic() + delay > deadline:
                    raise
                log.warning("kafka_setup_retry", error=repr(exc), retry_in=delay)
            finally:
                await admin.close()
            await asyncio.sleep(delay)
            delay = min(2 * delay, 2.0)

    async def _create(self, admin: AIOKafkaAdminClient, wanted: set[str]) -> None:
        """The topics of `wanted` the cluster lacks, made. aiokafka returns a broker's refusal
        in the response (not as an exception): raised here, so that a topic the cluster could
        not make (too few brokers for its replicas: InvalidReplicationFactorError) stops the
        process at start, not its consumers later, and a controller that moved is tried
        again (NotControllerError, RequestTimedOutError: retriable)."""
        for topic in sorted(wanted - set(await admin.list_topics())):
            response = await admin.create_topics([NewTopic(
                topic, self.partitions, self.replication,
                topic_configs={"min.insync.replicas": str(self.min_insync)})])
            for name, code, *message in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(code)(f"topic {name}: {message[0] if message else ''}")

    @property
    def min_insync(self) -> int:
        """Replicas that must have a write before it is acknowledged (acks=all): all but one,
        so that one broker may be lost without losing an acknowledged event, nor stopping
        (3 replicas: 2)."""
        return max(1, self.replication - 1)

    def producer(self) -> KafkaProducer:
        return KafkaProducer(self.bootstrap, self.namespace, self.security)

    async def read_topic(self, topic: str, timeout: float = 30.0) -> list[Message]:
        """No group: every partition assigned by hand, read from its beginning up to the end
        offsets taken at the start (what arrives meanwhile is left for the next read)."""
        wire = self.namespace + topic
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security)
        await admin.start()
        try:
            if wire not in await admin.list_topics():  # (describing it could create it)
                return []
            [described] = await admin.describe_topics([wire])
        finally:
            await admin.close()
        tps = [TopicPartition(wire, p["partition"]) for p in described["partitions"]]
        if not tps:
            return []
        reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, **self.security,
                                  enable_auto_commit=False, auto_offset_reset="earliest",
                                  isolation_level="read_committed")
        await reader.start()
        try:
            reader.assign(tps)
            ends = await reader.end_offsets(tps)
            starts = await reader.beginning_offsets(tps)
            await reader.seek_to_beginning(*tps)
            left = {tp for tp in tps if ends[tp] > starts[tp]}
            records: list[Message] = []
            async with asyncio.timeout(timeout):
                while left:
                    batches = await reader.getmany(*left, timeout_ms=500)
                    for tp, batch in batches.items():
                        records += [Message(topic, r.partition, r.offset, r.key, r.value,
                                            tuple(r.headers))
                                    for r in batch if r.offset < ends[tp]]
                    left = {tp for tp in left if await reader.position(tp) < ends[tp]}
        finally:
            await reader.stop()
        return sorted(records, key=lambda m: (m.partition, m.offset))

    def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        return KafkaConsumer(self.bootstrap, group, topics, self.namespace, self.membership,
                             self.security)


class KafkaProducer:
    def __init__(self, bootstrap: str, namespace: str = "",
                 security: dict[str, Any] | None = None) -> None:
        self.namespace = namespace
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, **(security or {}),
            enable_idempotence=True,
            acks="all",
            linger_ms=1,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_batch(self, records: Sequence[Record]) -> None:
        futures = [
            await self._producer.send(
                self.namespace + r.topic, r.value, key=r.key, headers=list(r.headers)
            )
            for r in records
        ]
        await asyncio.gather(*futures)


class _WaitForInFlight(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before giving partitions up, let the message being processed finish its transaction.

    Offsets are committed after each batch; if a revocation lands between a database commit
    and the offset commit, the next owner gets the message again and the inbox skips it."""

    def __init__(self, busy: asyncio.Lock) -> None:
        self.busy = busy

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.busy:
            log.info("partitions_revoked", partitions=[f"{t.topic}:{t.partition}" for t in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions_assigned", partitions=[f"{t.topic}:{t.partition}" for t in assigned])


class KafkaConsumer:
    """Topic and group names carry the transport's namespace on the wire only."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str],
                 namespace: str = "", membership: Membership | None = None,
                 security: dict[str, Any] | None = None) -> None:
        self.busy = asyncio.Lock()
        self.namespace = namespace
        self.topics = [namespace + t for t in topics]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, **(security or {}),
            **group_options(namespace + group, membership or Membership()),
        )

    async def start(self) -> None:
        self._consumer.subscribe(self.topics, listener=_WaitForInFlight(self.busy))
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    def _wire(self, tp: TP) -> TopicPartition:
        return TopicPartition(self.namespace + tp[0], tp[1])

    def owns(self, tp: TP) -> bool:
        return self._wire(tp) in self._consumer.assignment()

    async def poll(self, timeout: float, max_records: int) -> list[Message]:
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout * 1000), max_records=max_records
        )
        return [
            Message(r.topic.removeprefix(self.namespace), r.partition, r.offset, r.key, r.value,
                    tuple(r.headers))
            for records in batches.values()
            for r in records
        ]

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        owned = {self._wire(tp): o for tp, o in offsets.items() if self.owns(tp)}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except CommitFailedError as exc:
            # The group rebalanced; the new owner re-reads these and the inbox dedupes them.
            log.warning("offset_commit_failed", error=str(exc))
