"""A real Apache Kafka broker (KRaft, single node), or a cluster of three, for tests and local
runs.

The jars come from Maven Central through `pom.xml` (Maven caches them); this module formats
the storage, starts the broker on free loopback ports, waits until it answers and stops it.
`KafkaCluster` runs several nodes (each broker and controller, a static quorum of all of
them), with the internal topics replicated on three and `min.insync.replicas=2`, so that
one node may die without losing an acknowledged write.
Run one by hand with `python -m deploy.kafka.broker` (then `relais up --kafka ...`)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from deploy.kafka.tls import make_certificates

HERE = Path(__file__).resolve().parent
LIB = HERE / "target" / "lib"


def ensure_jars() -> Path:
    """Fetch Apache Kafka's jars with Maven, once."""
    stamp = LIB / ".stamp"
    if not stamp.exists():
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError("Maven (mvn) is needed to fetch Apache Kafka from Maven Central")
        print("Fetching Apache Kafka's jars from Maven Central ...", file=sys.stderr)
        subprocess.run([mvn, "-B", "-q", "-f", str(HERE / "pom.xml"),
                        "dependency:copy-dependencies"], check=True)
        stamp.touch()
    return LIB


def cluster_id() -> str:
    """A cluster id as Kafka's own `Uuid.randomUuid()` makes it: 16 random bytes in URL-safe
    base64 without padding, drawn again when it starts with '-' (which command lines would
    read as an option)."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


_GIVEN: set[int] = set()
"""Ports free_port() already gave in this process: never given twice."""


def _ephemeral_range() -> tuple[int, int]:
    """The range the kernel takes outgoing connections' local ports from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port nothing is bound to, never given before by this process, and below
    the kernel's ephemeral range when there is room there.

    Asking the kernel for port 0 is not enough for a server that must start on the port it
    was given, and start on it again after a kill: the kernel may give the same port to two
    calls in a row (once two instances of a fault bench got one port), and any outgoing
    connection (a Kafka client, a pool) may take a port of its ephemeral range as its own
    local port while the server is down."""
    low, _high = _ephemeral_range()
    candidates = range(max(1024, low - 12000), low) if low - 1024 >= 4000 else None
    rng = random.SystemRandom()
    for _ in range(200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", rng.choice(candidates) if candidates else 0))
            except OSError:
                continue
            port: int = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise RuntimeError("no free loopback port found in 200 tries")


class KafkaBroker:
    def __init__(self, workdir: Path, port: int | None = None, heap: str = "512m",
                 node_id: int = 1, controller_port: int | None = None,
                 voters: dict[int, int] | None = None, cluster: str | None = None,
                 users: dict[str, str] | None = None, tls: bool = False) -> None:
        self.workdir = workdir.resolve()
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        self.heap = heap
        self.node_id = node_id
        self.voters = voters
        """Node id -> controller port of every node of a cluster; None: a single node."""
        self.cluster = cluster
        self.users = None if users is None else {"broker": uuid.uuid4().hex} | users
        """SCRAM-SHA-512 users and their passwords: a SASL_PLAINTEXT listener (None: PLAINTEXT,
        no authentication)."""
        self.certificates = make_certificates(self.workdir / "tls") if tls else None
        """With `tls`: the listener is SSL (SASL_SSL with users), its certificate signed by a
        CA of its own (`certificates.ca`, what clients must trust)."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _quorum(self) -> list[str]:
        if self.voters is None:
            return [f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}"]
        voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in sorted(self.voters.items()))
        replicas = min(3, len(self.voters))
        return [f"controller.quorum.voters={voters}",
                f"default.replication.factor={replicas}",
                f"min.insync.replicas={max(1, replicas - 1)}",
                # A dead broker's partitions get a new leader after 3 s, not Kafka's 9 s.
                "broker.heartbeat.interval.ms=500", "broker.session.timeout.ms=3000"]

    def _replicas(self) -> int:
        return 1 if self.voters is None else min(3, len(self.voters))

    @property
    def protocol(self) -> str:
        sasl = "SASL_" if self.users is not None else ""
        return sasl + ("SSL" if self.certificates is not None else "PLAINTEXT")

    def security(self, user: str = "broker") -> dict[str, Any]:
        """aiokafka's arguments to connect as `user`."""
        options: dict[str, Any] = {}
        if self.certificates is not None:
            from aiokafka.helpers import create_ssl_context

            options = {"security_protocol": "SSL", "ssl_context": create_ssl_context(
                cafile=str(self.certificates.ca))}
        if self.users is not None:
            options |= {"security_protocol": self.protocol, "sasl_mechanism": "SCRAM-SHA-512",
                        "sasl_plain_username": user, "sasl_plain_password": self.users[user]}
        return options

    def _tls(self) -> list[str]:
        if self.certificates is None:
            return []
        alone = ["inter.broker.listener.name=SSL"] if self.users is None else []
        return [*alone, "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self.certificates.keystore}",
                "ssl.truststore.type=PEM", f"ssl.truststore.location={self.certificates.ca}"]

    def _sasl(self) -> list[str]:
        if self.users is None:
            return []
        listener = self.protocol.lower()
        return [f"inter.broker.listener.name={self.protocol}",
                "sasl.enabled.mechanisms=SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                f"listener.name.{listener}.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="broker" password="{self.users["broker"]}";']

    def _properties(self) -> Path:
        path = self.workdir / "server.properties"
        replicas = self._replicas()
        protocol = self.protocol
        path.write_text("\n".join([
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            *self._quorum(),
            f"listeners={protocol}://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners={protocol}://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={protocol}:{protocol},CONTROLLER:PLAINTEXT",
            *self._sasl(),
            *self._tls(),
            f"log.dirs={self.workdir / 'data'}",
            "num.partitions=4",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=4",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={max(1, replicas - 1)}",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ]))
        return path

    def _java(self, main: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java 17+ is needed to run Apache Kafka")
        return [java, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseSerialGC",
                f"-Dlog4j2.configurationFile={HERE / 'log4j2.properties'}",
                "-cp", f"{ensure_jars()}/*", main, *args]

    def start(self, timeout: float = 90.0) -> KafkaBroker:
        self.launch()
        self._wait_ready(timeout)
        return self

    def launch(self) -> None:
        """Format the storage the first time, and start the process (without waiting)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self._properties()
        if not (self.workdir / "data" / "meta.properties").exists():
            single = ["--standalone"] if self.voters is None else []
            for user, password in (self.users or {}).items():
                single += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
            subprocess.run(
                self._java("kafka.tools.StorageTool", "format",
                           f"--cluster-id={self.cluster or cluster_id()}", "-c", str(props),
                           *single),
                check=True, stdout=subprocess.DEVNULL,
            )
        log = (self.workdir / "broker.log").open("ab")
        self._process = subprocess.Popen(self._java("kafka.Kafka", str(props)), stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The broker's JVM, while it runs (a benchmark counts its CPU)."""
        return self._process.pid if self.running and self._process is not None else None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"Kafka exited; see {self.workdir / 'broker.log'}")
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                if pool.submit(asyncio.run, _answers(self.bootstrap, self.security())).result():
                    return
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"Kafka did not answer within {timeout}s")

    def stop(self) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """Stop the broker abruptly (for fault tests)."""
        if self._process is not None:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None


class KafkaCluster:
    """`nodes` KRaft nodes, each broker and controller, on free loopback ports; topics made
    with replication factor 3 (`replication`) keep every acknowledged write while one node is
    down."""

    def __init__(self, workdir: Path, nodes: int = 3, heap: str = "512m") -> None:
        controllers = {n: free_port() for n in range(1, nodes + 1)}
        cluster = cluster_id()
        self.nodes = [KafkaBroker(workdir / f"node-{n}", heap=heap, node_id=n,
                                  controller_port=controllers[n], voters=controllers,
                                  cluster=cluster) for n in controllers]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def replication(self) -> int:
        return min(3, len(self.nodes))

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        """Every node at once (the quorum needs a majority before any answers)."""
        for node in self.nodes:
            node.launch()
        for node in self.nodes:
            node._wait_ready(timeout)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self, node: int) -> None:
        """Node `node` (1-based) stopped abruptly."""
        self.nodes[node - 1].kill()

    def restart(self, node: int, timeout: float = 120.0) -> None:
        self.nodes[node - 1].start(timeout)


async def _answers(bootstrap: str, security: dict[str, Any]) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            pass
    except OSError:
        return False

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000,
                                **security)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a local Apache Kafka broker (KRaft).")
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--dir", type=Path, default=Path(".relais/kafka"))
    args = parser.parse_args()
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked first, so that they wait for sigwait instead of ending the process at once
    # (which would leave the Java broker running).
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    broker = KafkaBroker(args.dir, args.port).start()
    print(f"Kafka is ready at {broker.bootstrap}; Ctrl-C stops it.", flush=True)
    try:
        signal.sigwait(stop_signals)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
