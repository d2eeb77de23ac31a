"""How long the partitions of a consumer killed with kill -9 stay silent (issue #17, point 4).

    .venv/bin/python -m bench.kafka_failover --rounds 3

A real Apache Kafka broker (KRaft, from the project's Maven jars) runs a topic of two
partitions; a producer in this process writes to each of them every 20 ms. Two member
processes of one consumer group are Relais's own consumers (`KafkaTransport.consumer`, so
`group_options` builds their AIOKafkaConsumer exactly as Relais runs it) polling and
committing each batch. Once each member has one partition and receives from it, the member
holding partition 0 is killed with SIGKILL, and the figure is the time from the kill until a
record of partition 0 is received again, by anyone:

- failover: nobody restarts; the survivor must be given partition 0;
- restart: the killed member is started again at once (the same instance id when static).

Configurations, in the same invocation: aiokafka's defaults (session 10000 ms, heartbeats
every 3000 ms, dynamic membership: what Relais ran before, the baseline), Relais's defaults
(6000/1500) with dynamic membership, and the same with static membership (RELAIS_INSTANCE_ID).
After each measure the group is brought back to two members receiving before the next one."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.kafka.broker import KafkaBroker
from services.runtime.transport.kafka import KafkaTransport, Membership

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = (0, 1)
PRODUCE_EVERY = 0.020
WATCHED = 0  # the partition whose owner is killed
TIMEOUT = 60.0


@dataclass(frozen=True)
class Config:
    label: str
    session_timeout_ms: int
    heartbeat_interval_ms: int
    static: bool


CONFIGS = [
    Config("aiokafka defaults 10000/3000, dynamic (before)", 10_000, 3_000, False),
    Config("Relais 6000/1500, dynamic", 6_000, 1_500, False),
    Config("Relais 6000/1500, static", 6_000, 1_500, True),
]
SCENARIOS = ("failover", "restart")


# The member process.

async def member(args: argparse.Namespace) -> None:
    """Relais's consumer on the topic; prints `FO owns 0,1 <t>` when its partitions change
    and `FO rec <partition> <t>` for each partition of each batch (t: time.monotonic(), the
    same clock in every process of the machine)."""
    from services.runtime.logging import configure_logging

    configure_logging("WARNING")
    transport = KafkaTransport(args.bootstrap, membership=Membership(
        args.session_timeout_ms, args.heartbeat_interval_ms, args.instance or None))
    consumer = transport.consumer(args.group, [args.topic])
    await consumer.start()
    owned: tuple[int, ...] | None = None
    while True:
        messages = await consumer.poll(0.5, 500)
        now = time.monotonic()
        mine = tuple(p for p in PARTITIONS if consumer.owns((args.topic, p)))
        if mine != owned:
            owned = mine
            print(f"FO owns {','.join(map(str, mine))} {now}", flush=True)
        done = {(m.topic, m.partition): m.offset + 1 for m in messages}
        for _topic, partition in done:
            print(f"FO rec {partition} {now}", flush=True)
        if done:
            await consumer.commit(done)


# The orchestration.

@dataclass
class Member:
    instance: str
    process: asyncio.subprocess.Process
    owns: tuple[int, ...] = ()
    last: dict[int, float] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None


class Group:
    def __init__(self, bootstrap: str, topic: str, config: Config, logs: Path) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.config = config
        self.group = f"bench-{uuid.uuid4().hex[:8]}"
        self.logs = logs
        self.members: list[Member] = []
        # (the killed member, its partition, when, the time to its next record elsewhere)
        self.watch: tuple[Member, int, float, asyncio.Future[float]] | None = None

    async def spawn(self, instance: str) -> Member:
        log = (self.logs / f"{self.group}-{instance}.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.kafka_failover", "member",
            "--bootstrap", self.bootstrap, "--topic", self.topic, "--group", self.group,
            "--session-timeout-ms", str(self.config.session_timeout_ms),
            "--heartbeat-interval-ms", str(self.config.heartbeat_interval_ms),
            "--instance", instance if self.config.static else "",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log)
        log.close()
        m = Member(instance, process)
        m.reader = asyncio.create_task(self._read(m))
        self.members.append(m)
        return m

    async def _read(self, m: Member) -> None:
        assert m.process.stdout is not None
        async for raw in m.process.stdout:
            words = raw.decode().split()
            if len(words) != 4 or words[0] != "FO":
                continue
            at = float(words[3])
            if words[1] == "owns":
                m.owns = tuple(int(p) for p in words[2].split(",") if p)
            elif words[1] == "rec":
                partition = int(words[2])
                m.last[partition] = at
                if self.watch is not None:
                    victim, watched, since, found = self.watch
                    if (m is not victim and partition == watched and at > since
                            and not found.done()):
                        found.set_result(at - since)

    async def steady(self, timeout: float = TIMEOUT) -> None:
        """Two live members, each owning one partition and receiving from it just now."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = time.monotonic()
            live = [m for m in self.members if m.process.returncode is None]
            if (len(live) == 2 and sorted(p for m in live for p in m.owns) == list(PARTITIONS)
                    and all(len(m.owns) == 1 and now - m.last.get(m.owns[0], 0) < 0.3
                            for m in live)):
                await asyncio.sleep(0.5)  # let the last commits land
                return
            await asyncio.sleep(0.05)
        raise TimeoutError("the group did not settle with two members receiving")

    async def kill_and_measure(self, scenario: str) -> float:
        [victim] = [m for m in self.members if WATCHED in m.owns]
        found: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        since = time.monotonic()
        self.watch = (victim, WATCHED, since, found)
        victim.process.kill()  # SIGKILL: no LeaveGroup, no goodbye
        await victim.process.wait()
        self.members.remove(victim)
        if scenario == "restart":
            await self.spawn(victim.instance)
        try:
            return await asyncio.wait_for(found, TIMEOUT)
        except TimeoutError:
            return float("nan")
        finally:
            self.watch = None
            if scenario == "failover":  # back to two members for the next measure
                await self.spawn(victim.instance)

    async def close(self) -> None:
        for m in self.members:
            if m.process.returncode is None:
                m.process.kill()
            await m.process.wait()
            if m.reader is not None:
                await m.reader


async def produce(bootstrap: str, topic: str, stop: asyncio.Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=0)
    await producer.start()
    try:
        n = 0
        while not stop.is_set():
            for partition in PARTITIONS:
                await producer.send(topic, str(n).encode(), partition=partition)
            n += 1
            await asyncio.sleep(PRODUCE_EVERY)
    finally:
        await producer.stop()


async def run(args: argparse.Namespace, broker: KafkaBroker, logs: Path) -> None:
    results: dict[tuple[str, str], list[float]] = {}
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        for i, config in enumerate(CONFIGS):
            topic = f"failover-{i}"
            await admin.create_topics([NewTopic(topic, len(PARTITIONS), 1)])
            stop = asyncio.Event()
            producer = asyncio.create_task(produce(broker.bootstrap, topic, stop))
            group = Group(broker.bootstrap, topic, config, logs)
            try:
                await group.spawn("m1")
                await group.spawn("m2")
                for round_ in range(1, args.rounds + 1):
                    for scenario in SCENARIOS:
                        await group.steady()
                        figure = await group.kill_and_measure(scenario)
                        results.setdefault((scenario, config.label), []).append(figure)
                        print(f"  {config.label}: {scenario}, round {round_}: "
                              f"{figure:.2f} s", flush=True)
            finally:
                await group.close()
                stop.set()
                await producer
    finally:
        await admin.close()
    report(results, args.rounds)


def report(results: dict[tuple[str, str], list[float]], rounds: int) -> None:
    print(f"\nSilence on the killed member's partition, kill -9 to its next record received "
          f"(s), median of {rounds} rounds; ratio to the baseline (aiokafka defaults):")
    width = max(len(c.label) for c in CONFIGS)
    print(f"{'':9} {'configuration':{width}}  {'median':>6}  {'ratio':>5}  rounds")
    for scenario in SCENARIOS:
        baseline = statistics.median(results[(scenario, CONFIGS[0].label)])
        for config in CONFIGS:
            figures = results[(scenario, config.label)]
            median = statistics.median(figures)
            print(f"{scenario:9} {config.label:{width}}  {median:6.2f}  {median / baseline:5.2f}"
                  f"  {', '.join(f'{f:.2f}' for f in figures)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--rounds", type=int, default=3)
    one = sub.add_parser("member", help="(internal) one member of the consumer group")
    one.add_argument("--bootstrap", required=True)
    one.add_argument("--topic", required=True)
    one.add_argument("--group", required=True)
    one.add_argument("--session-timeout-ms", type=int, required=True)
    one.add_argument("--heartbeat-interval-ms", type=int, required=True)
    one.add_argument("--instance", default="")
    args = parser.parse_args()
    if args.command == "member":
        asyncio.run(member(args))
        return
    with tempfile.TemporaryDirectory(prefix="relais-failover-") as work:
        broker = KafkaBroker(Path(work) / "kafka").start()
        print(f"Kafka at {broker.bootstrap}; partitions {PARTITIONS}, a record on each every "
              f"{PRODUCE_EVERY * 1000:.0f} ms; {args.rounds} rounds", flush=True)
        try:
            asyncio.run(run(args, broker, Path(work)))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
