"""Fault injection: Relais's delivery guarantees under fire (issue #17).

    .venv/bin/python -m bench.faults --transport both --faults 50     # the full run (minutes)
    .venv/bin/python -m bench.faults --short                          # what `make test` runs
    .venv/bin/python -m bench.faults --transport cluster --short      # several instances


For each transport, on a PostgreSQL, an SMTP sink and (kafka) an Apache Kafka broker of its
own: Relais runs as one `relais up` (postgres transport) or one process per service (kafka
transport); consented flows (an intake, then its consent for the Mission locale) are offered
at a fixed rate, each call retried under the same Idempotency-Key until it is answered, as a
well-behaved partner does; faults come at random times from a seeded list (kill -9 and
SIGTERM of each process, kill -9 of the broker, fast and immediate PostgreSQL restarts, an
SMTP server that refuses connections, then accepts them and never answers, then comes back);
every process is started again after its fault. Then a drain, and the counts:

- acknowledged intakes and consents that are not stored (lost);
- consented flows whose referral was not handed off or whose email never came (lost flows);
- hand-offs without a covering consent (unconsented);
- emails received twice (same Message-ID), and referrals told twice (two Message-IDs): a
  Message-ID received again after a kill -9 of notify's process that came between the two
  copies is the one duplicate the README allows (the SMTP window); any other is a defect;
- work left after the drain (stuck): outbox rows not published, notifications not sent,
  referrals waiting for a consent they have;
- dead letters, and each fault's recovery time (from the fault to the first email of a flow
  started after it);
- the order of each person's events: every event read back from the bus, each thing's
  (referral, consent, notification, intake) events must come in the order its service wrote
  them to its outbox (out of order), and all of a person's events of one topic on one
  partition (split), which is what keeps that order across instances and rebalances.

The `cluster` transport (issue #13) runs the kafka transport on a cluster of three brokers
(topics replicated on three, `min.insync.replicas=2`) with INSTANCES processes of every
service behind a round-robin balancer each (as a Kubernetes Service would be): a fault kills
one instance or one broker, which stays down for RESTART_AFTER seconds while the others
carry on, and its recovery time is from the kill (the fail-over as the partner sees it);
`rolling` stops (SIGTERM) and starts again every instance, one after the other, as a rolling
upgrade does.

Under each kind of fault, the report tells where the slowest flow begun at it spent its time
(seconds from its start: acknowledged, published, created, requested, notified, emailed).

It exits 1 on any loss, unconsented hand-off, duplicate other than the allowed one, stuck work,
dead letter, refused call, process that did not start again after its fault, or (--bound) flow
slower than the bound after a fault, and prints the figures either way."""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from aiosmtpd.smtp import SMTP

from bench.database import Restartable
from deploy.kafka.broker import KafkaBroker, KafkaCluster, free_port
from services.auth import domain as auth_domain
from services.auth import store as auth_store
from services.cli import SERVICE_NAMES, service_specs
from services.referral.handlers import REFERRAL_IDS
from services.runtime import db
from services.runtime.embedded import ensure_database
from services.runtime.events import Message, decode
from services.runtime.logging import configure_logging
from services.runtime.transport.kafka import KafkaTransport
from services.runtime.transport.postgres import PostgresTransport, headers_from_json

ROOT = Path(__file__).resolve().parents[1]
SCOPES = ["intake:write", "consent:write"]
INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
          "age_bracket": "18_25", "commune": "80021"}
TEAM_BOX = "accueil@mission-locale.example.org"
SMTP_TIMEOUT = 2.0
"""RELAIS_SMTP_TIMEOUT of the processes: a hung SMTP server costs a sender this long."""
RETRY_CAP = 2.0
"""The partner's longest wait between two tries of one call (Retry-After is honoured)."""
INSTANCES = 2
"""Processes of each service with the cluster transport."""
MAX_CONNECTIONS = 300
"""PostgreSQL's (`Run.more_connections`)."""
RESTART_AFTER = 8.0
"""Seconds an instance or a broker killed with the cluster transport stays down."""


def say(text: str) -> None:
    print(text, flush=True)


# --- the SMTP sink ---------------------------------------------------------------------------


@dataclass
class Received:
    message_id: str
    to: tuple[str, ...]
    subject: str
    at: float


class Recorder:
    """aiosmtpd handler: every message accepted, with when it came. Each takes `delay`
    seconds before the 250 (a real server's time to store it, which is the window in which a
    sender killed outright sends the message again after its restart); a message whose
    session is dropped meanwhile is not accepted."""

    def __init__(self, delay: float) -> None:
        self.messages: list[Received] = []
        self.delay = delay

    async def handle_DATA(self, server: Any, _session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if server.transport is None or server.transport.is_closing():
            return "421 closing"  # nobody hears it: the sender will send it again
        message = message_from_bytes(envelope.content)
        self.messages.append(Received(str(message["Message-ID"]), tuple(envelope.rcpt_tos),
                                      str(message["Subject"]), time.monotonic()))
        return "250 OK"


class Hung(asyncio.Protocol):
    """A connection accepted and never answered (not even the greeting)."""

    def __init__(self, held: set[asyncio.BaseTransport]) -> None:
        self.held = held

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.held.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class Session(SMTP):
    """aiosmtpd's protocol, its connections known to the sink (to drop them when it goes)."""

    def __init__(self, handler: Recorder, live: set[asyncio.BaseTransport]) -> None:
        super().__init__(handler, hostname="sink.relais.local")
        self.live = live

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.live.add(transport)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self.transport)
        super().connection_lost(exc)


class Sink:
    """An SMTP server on a fixed port that can refuse connections (down: closed port, open
    sessions dropped), hang (accept and say nothing) and come back."""

    def __init__(self, port: int, delay: float) -> None:
        self.port = port
        self.recorder = Recorder(delay)
        self.server: asyncio.Server | None = None
        self.held: set[asyncio.BaseTransport] = set()
        self.live: set[asyncio.BaseTransport] = set()

    async def _listen(self, factory: Any) -> None:
        await self._close()
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(factory, "127.0.0.1", self.port,
                                               reuse_address=True)

    async def serve(self) -> None:
        await self._listen(lambda: Session(self.recorder, self.live))
        for transport in list(self.held):  # the hung sessions end: the clients retry
            transport.close()
        self.held.clear()

    async def hang(self) -> None:
        await self._listen(lambda: Hung(self.held))

    async def refuse(self) -> None:
        await self._close()

    async def _close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for transport in list(self.live):
            transport.close()


# --- the processes ---------------------------------------------------------------------------


@dataclass
class Process:
    """One `relais up --services ...` of the run, started again after each fault."""

    name: str
    services: str
    port: int
    command: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.command, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 90.0, path: str = "/healthz") -> None:
        """Until it answers /healthz (its database may be away: not /readyz, unless said)."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.popen is not None and self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited; see {self.log}")
                try:
                    async with session.get(f"http://127.0.0.1:{self.port}{path}") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} did not answer within {timeout} s; see {self.log}")

    async def stop(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)
        await asyncio.to_thread(self.popen.wait, 30)

    def end(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Balancer:
    """Round robin over a service's instances, as a Kubernetes Service or a reverse proxy
    does: a request an instance cannot take (refused, or cut before any answer) goes to the
    next one (the partner's Idempotency-Key makes a repeated call harmless)."""

    def __init__(self, name: str, ports: Sequence[int]) -> None:
        self.name, self.ports, self.port = name, list(ports), free_port()
        self._next = itertools.cycle(range(len(self.ports)))
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.forward)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            auto_decompress=False)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        for _ in range(2 * len(self.ports)):
            port = self.ports[next(self._next)]
            try:
                async with self._session.request(
                        request.method, f"http://127.0.0.1:{port}{request.rel_url}",
                        headers=headers, data=body, allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=15)) as answer:
                    payload = await answer.read()
                    kept = {k: v for k, v in answer.headers.items() if k.lower() not in
                            ("content-length", "transfer-encoding", "connection")}
                    return web.Response(status=answer.status, body=payload, headers=kept)
            except aiohttp.ClientConnectorError:
                continue  # refused before anything was sent: the next instance, as a proxy does
            except (aiohttp.ClientConnectionError, TimeoutError) as cut:
                return web.Response(status=502, text=f"{self.name}: {cut!r}")  # partner retries
        return web.Response(status=503, headers={"Retry-After": "1"},
                            text=f"no instance of {self.name} answered")

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()


# --- the partner -----------------------------------------------------------------------------


@dataclass
class Flow:
    started: float
    intake_id: str | None = None
    person_id: str | None = None
    consented: bool = False
    answered: list[float] = field(default_factory=list)
    """When the intake, then the consent, were acknowledged (monotonic)."""
    refused: list[str] = field(default_factory=list)

    @property
    def referral_id(self) -> str:
        return str(uuid.uuid5(REFERRAL_IDS, str(self.intake_id)))


class Partner:
    """Consented flows at a fixed rate; every call retried under its Idempotency-Key until
    answered (429, 5xx and connection errors are retried, Retry-After honoured)."""

    def __init__(self, intake_url: str, consent_url: str, token: str) -> None:
        self.intake_url, self.consent_url, self.token = intake_url, consent_url, token
        self.flows: list[Flow] = []
        self.retries = 0

    async def call(self, session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                   flow: Flow) -> dict[str, Any] | None:
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": uuid.uuid4().hex}
        wait = 0.2
        while True:
            try:
                async with session.post(url, json=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=15)) as response:
                    if response.status in (200, 201):
                        answer: dict[str, Any] = await response.json()
                        return answer
                    if response.status != 429 and response.status < 500:
                        flow.refused.append(f"{time.monotonic() - flow.started:.1f} s into "
                                            f"a flow begun at {flow.started:.1f}: "
                                            f"{response.status} {await response.text()}")
                        return None
                    after = response.headers.get("Retry-After", "")
                    wait = float(after) if after.isdigit() else wait
            except (TimeoutError, aiohttp.ClientError):
                pass
            self.retries += 1
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_CAP)

    async def flow(self, session: aiohttp.ClientSession) -> None:
        flow = Flow(time.monotonic())
        self.flows.append(flow)
        intake = await self.call(session, self.intake_url, INTAKE, flow)
        if intake is None:
            return
        flow.intake_id, flow.person_id = intake["id"], intake["person_id"]
        flow.answered.append(time.monotonic())
        consent = await self.call(session, self.consent_url, {
            "person_id": flow.person_id, "purposes": ["referral_partner"],
            "recipients": ["mission-locale"], "categories": ["needs"],
            "notice_version": "2026-01", "method": "signed_screen",
            "captured_by": "faults"}, flow)
        flow.consented = consent is not None
        flow.answered.append(time.monotonic())

    async def offer(self, rate: float, stop: asyncio.Event) -> None:
        """One new flow every 1/rate seconds until `stop`, then every flow answered."""
        tasks: set[asyncio.Task[None]] = set()
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.monotonic()
            n = 0
            while not stop.is_set():
                n += 1
                task = asyncio.create_task(self.flow(session))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            if tasks:
                await asyncio.wait(tasks)


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    at: float
    healed: float = 0.0
    target: str = ""


KINDS = {
    "postgres": ["kill9:all", "sigterm:all", "postgres:fast", "postgres:immediate", "smtp"],
    "kafka": [*(f"kill9:{s}" for s in SERVICE_NAMES), *(f"sigterm:{s}" for s in SERVICE_NAMES),
              "kill9:broker", "postgres:fast", "postgres:immediate", "smtp"],
    "cluster": [*(f"kill9:{s}-{i}" for s in SERVICE_NAMES for i in range(1, INSTANCES + 1)),
                *(f"sigterm:{s}-1" for s in SERVICE_NAMES),
                *(f"kill9:broker-{n}" for n in (1, 2, 3)), "postgres:fast", "smtp", "rolling"],
}


SHORT = {
    "postgres": ["kill9:all", "postgres:immediate", "smtp", "sigterm:all"],
    "kafka": ["kill9:notify", "postgres:fast", "kill9:broker", "kill9:referral"],
    "cluster": ["kill9:intake-1", "kill9:broker-2", "kill9:consent-2", "kill9:referral-1",
                "kill9:notify-2", "kill9:auth-1", "rolling"],
}
"""The handful of `--short` (make test): the faults that broke something once."""


def schedule(transport: str, count: int, rng: random.Random) -> list[str]:
    """`count` faults: every kind in turn, each round in a seeded order."""
    kinds: list[str] = []
    while len(kinds) < count:
        round_ = list(KINDS[transport])
        rng.shuffle(round_)
        kinds += round_
    return kinds[:count]


class Run:
    def __init__(self, transport: str, work: Path, rng: random.Random,
                 smtp_delay: float) -> None:
        self.transport, self.work, self.rng = transport, work, rng
        self.postgres = Restartable(work / "postgres")
        self.sink = Sink(free_port(), smtp_delay)
        self.broker: KafkaBroker | KafkaCluster | None = (
            KafkaBroker(work / "kafka") if transport == "kafka" else
            KafkaCluster(work / "kafka") if transport == "cluster" else None)
        self.processes: dict[str, Process] = {}
        self.balancers: dict[str, Balancer] = {}
        self.restarts: set[asyncio.Task[None]] = set()
        self.down: set[str] = set()
        self.unrestarted: list[str] = []
        """Instances or brokers that did not start again after their fault, and why."""
        self.faults: list[Fault] = []
        self.url = ""
        self.began = time.monotonic()

    async def prepare(self) -> str:
        """The database, the partner's API client (its secret returned), the processes."""
        admin = self.postgres.url()
        await self.more_connections(admin)
        await ensure_database(admin, "relais")
        self.url = self.postgres.url("relais")
        secret = auth_domain.new_secret()
        conn = await db.connect(self.url)
        try:
            await db.migrate(conn, "auth", "services.runtime")
            await db.migrate(conn, "auth", "services.auth")
            await auth_store.insert_client(conn, "faults", auth_domain.hash_secret(secret),
                                           "equipe-aller-vers", "faults", SCOPES)
        finally:
            await conn.close()
        env = os.environ | {
            "RELAIS_DATA_DIR": str(self.work / "data"), "RELAIS_LOG_LEVEL": "WARNING",
            "RELAIS_RATE_LIMIT_PER_SECOND": "1000000", "RELAIS_TOKEN_TTL": "3600",
            "RELAIS_SMTP_PORT": str(self.sink.port), "RELAIS_SMTP_TIMEOUT": str(SMTP_TIMEOUT),
            "RELAIS_SMTP_DOWN_RETRY": "1", "RELAIS_POLL_INTERVAL": "1"}
        groups = ({"all": ",".join(SERVICE_NAMES)} if self.transport == "postgres"
                  else {name: name for name in SERVICE_NAMES} if self.transport == "kafka"
                  else {f"{name}-{i}": name for name in SERVICE_NAMES
                        for i in range(1, INSTANCES + 1)})
        ports = {name: free_port() for name in groups}
        if self.transport == "cluster":  # each service's instances behind one address
            assert isinstance(self.broker, KafkaCluster)
            env["RELAIS_KAFKA_REPLICATION"] = str(self.broker.replication)
            for service in SERVICE_NAMES:
                self.balancers[service] = Balancer(service, [
                    ports[g] for g, s in groups.items() if s == service])
        where = {s: (self.balancers[s].port if self.balancers else
                     next(ports[g] for g, services in groups.items() if s in services))
                 for s in SERVICE_NAMES}
        # One base URL, as behind the reverse proxy: the auth service's, where every process
        # finds the token keys (JWKS) and the revoked clients.
        env["RELAIS_PUBLIC_URL"] = f"http://127.0.0.1:{where['auth']}"
        if self.transport != "postgres":  # and the services' calls to each other, by name
            env |= {f"RELAIS_{name.upper()}_URL": f"http://127.0.0.1:{where[name]}"
                    for name in ("intake", "referral", "consent", "notify")}
        for name, services in groups.items():
            port = ports[name]
            command = [sys.executable, "-m", "services.cli", "up", "--services", services,
                       "--database", self.url, "--port", str(port)]
            own = dict(env)
            if self.broker is not None:
                command += ["--kafka", self.broker.bootstrap]
                own["RELAIS_INSTANCE_ID"] = f"faults-{name}"
            self.processes[name] = Process(name, services, port, command, own,
                                           self.work / f"{name}.log")
        return secret

    async def more_connections(self, admin: str) -> None:
        """Up to ten processes (the cluster transport), each with its pool and its
        listeners, and a killed one's sessions still ending while it starts again: more than
        PostgreSQL's 100 connections (a restart once failed with "too many clients
        already"). 300, as a deployment of several instances would configure it."""
        conn = await db.connect(admin)
        try:
            await conn.execute(f"ALTER SYSTEM SET max_connections = {MAX_CONNECTIONS}")
        finally:
            await conn.close()
        await asyncio.to_thread(self.postgres.stop)
        await asyncio.to_thread(self.postgres.start)
        conn = await db.connect(admin)
        try:
            assert await conn.fetchval("SHOW max_connections") == str(MAX_CONNECTIONS)
        finally:
            await conn.close()

    def port_of(self, service: str) -> int:
        if service in self.balancers:
            return self.balancers[service].port
        return next(p.port for p in self.processes.values() if service in p.services)

    async def start(self) -> None:
        await self.sink.serve()
        for balancer in self.balancers.values():
            await balancer.start()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.start)
        for process in self.processes.values():  # one at a time: each migrates its schemas
            process.start()
            await process.ready()

    async def token(self, secret: str) -> str:
        async with aiohttp.ClientSession() as session, session.post(
            f"http://127.0.0.1:{self.port_of('auth')}/oauth/token", data={
                "grant_type": "client_credentials", "client_id": "faults",
                "client_secret": secret}) as response:
            assert response.status == 200, await response.text()
            token: str = (await response.json())["access_token"]
            return token

    async def inject(self, kind: str) -> Fault:
        fault = Fault(kind, time.monotonic())
        what, _, target = kind.partition(":")
        fault.target = target
        if self.transport == "cluster" and what in ("kill9", "sigterm"):
            await self.fail_over(what, target)
        elif kind == "rolling":  # an upgrade: every instance stopped and started, one by one
            await self.settle()
            for process in self.processes.values():  # the next once this one is ready (its
                await process.stop(signal.SIGTERM)     # consumers started), as Kubernetes does
                process.start()
                await process.ready(path="/readyz")
        elif what in ("kill9", "sigterm") and target != "broker":
            process = self.processes[target]
            await process.stop(signal.SIGKILL if what == "kill9" else signal.SIGTERM)
            await asyncio.sleep(self.rng.uniform(0.0, 2.0))
            process.start()
            await process.ready()
        elif kind == "kill9:broker":
            assert isinstance(self.broker, KafkaBroker)
            await asyncio.to_thread(self.broker.kill)
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            await asyncio.to_thread(self.broker.start)
        elif what == "postgres":
            await asyncio.to_thread(self.postgres.stop, target)
            await asyncio.sleep(self.rng.uniform(0.0, 3.0))
            await asyncio.to_thread(self.postgres.start)
        elif kind == "smtp":
            await self.sink.refuse()
            await asyncio.sleep(self.rng.uniform(2.0, 6.0))
            await self.sink.hang()
            await asyncio.sleep(self.rng.uniform(SMTP_TIMEOUT + 1, SMTP_TIMEOUT + 5))
            await self.sink.serve()
        else:
            raise ValueError(kind)
        fault.healed = time.monotonic()
        return fault

    async def fail_over(self, what: str, target: str) -> None:
        """An instance or a broker down, the others carrying on: it comes back RESTART_AFTER
        seconds later, in the background (the fault itself is healed by the fail-over). One
        already down is left as it is."""
        if target in self.down:
            return
        self.down.add(target)
        if target.startswith("broker-"):
            assert isinstance(self.broker, KafkaCluster)
            node = int(target.removeprefix("broker-"))
            await asyncio.to_thread(self.broker.kill, node)
            back: Any = functools.partial(asyncio.to_thread, self.broker.restart, node)
        else:
            process = self.processes[target]
            await process.stop(signal.SIGKILL if what == "kill9" else signal.SIGTERM)

            async def back() -> None:
                process.start()
                await process.ready()

        async def later() -> None:
            await asyncio.sleep(RESTART_AFTER)
            try:
                await back()
            except Exception as exc:  # (a task's exception would be lost: told in the figures)
                self.unrestarted.append(f"{target} at {time.monotonic() - self.began:.1f} s: "
                                        f"{exc!r}")
                say(f"[{self.transport}] {target} did not start again: {exc!r}")
                return
            self.down.discard(target)

        task = asyncio.create_task(later())
        self.restarts.add(task)
        task.add_done_callback(self.restarts.discard)

    async def settle(self) -> None:
        """Every instance and broker back before the drain."""
        if self.restarts:
            await asyncio.gather(*self.restarts)

    def end(self) -> None:
        for process in self.processes.values():
            process.end()
        if self.broker is not None:
            self.broker.stop()
        self.postgres.cleanup()


@dataclass
class Figures:
    transport: str
    flows: int = 0
    acked_intakes: int = 0
    acked_consents: int = 0
    lost_intakes: int = 0
    lost_consents: int = 0
    lost_flows: int = 0
    unconsented: int = 0
    emails: int = 0
    duplicate_ids: int = 0
    allowed_duplicates: int = 0
    copies: dict[str, list[float]] = field(default_factory=dict)
    """The Message-IDs received more than once, with when (monotonic), to read a failure."""
    told_twice: int = 0
    stuck: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    ordered: Order = field(default_factory=lambda: Order(0, 0, 0, 0))
    refused: list[str] = field(default_factory=list)
    unrestarted: list[str] = field(default_factory=list)
    bound: float = 0.0
    """The longest a flow begun at a fault may take to its email (--bound; 0: no bound)."""
    retries: int = 0
    faults: list[Fault] = field(default_factory=list)
    recovery: dict[str, list[float]] = field(default_factory=dict)
    slowest: dict[str, list[float]] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)
    """Per kind of fault, where its slowest flow spent its time (`stages`)."""
    drained_s: float = 0.0
    seconds: float = 0.0
    started: float = 0.0
    """When the load began (monotonic): the times reported are from it."""

    @property
    def failures(self) -> list[str]:
        problems = {
            "acknowledged intakes lost": self.lost_intakes,
            "acknowledged consents lost": self.lost_consents,
            "consented flows never handed off or emailed": self.lost_flows,
            "hand-offs without a covering consent": self.unconsented,
            "duplicate emails not explained by a kill -9 of notify":
                self.duplicate_ids - self.allowed_duplicates,
            "referrals told twice (two Message-IDs)": self.told_twice,
            "stuck work after the drain": sum(self.stuck.values()),
            "dead letters": self.dead_letters,
            "things whose events came out of the order they were written":
                self.ordered.out_of_order,
            "people whose events of one topic went to two partitions": self.ordered.split,
            "calls refused (4xx other than 429)": len(self.refused),
            "instances or brokers that did not start again": len(self.unrestarted),
            f"faults whose slowest flow took more than {self.bound:g} s":
                sum(1 for times in self.slowest.values() for t in times
                    if self.bound and t > self.bound)}
        return [f"{n} {what}" for what, n in problems.items() if n]


async def count(run: Run, partner: Partner, figures: Figures) -> None:
    """The figures, from what the partner was told, the sink and the database."""
    flows = partner.flows
    figures.flows = len(flows)
    intakes = {f.intake_id for f in flows if f.intake_id}
    consented = [f for f in flows if f.consented]
    figures.acked_intakes, figures.acked_consents = len(intakes), len(consented)
    figures.refused = [r for f in flows for r in f.refused]
    figures.retries = partner.retries
    figures.unrestarted = list(run.unrestarted)
    conn = await db.connect(run.url)
    try:
        stored = {str(r["id"]) for r in await conn.fetch("SELECT id FROM intake.intakes")}
        figures.lost_intakes = len(intakes - stored)
        with_consent = {str(r["person_id"]) for r in await conn.fetch(
            "SELECT person_id FROM consent.consents")}
        figures.lost_consents = sum(1 for f in consented if f.person_id not in with_consent)
        handed = {str(r["id"]) for r in await conn.fetch(
            "SELECT id FROM referral.referrals WHERE status <> 'awaiting_consent'")}
        figures.unconsented = await conn.fetchval(UNCONSENTED)
        mails = {str(r["message_id"]): str(r["referral_id"]) for r in await conn.fetch(
            "SELECT message_id, referral_id FROM notify.notifications"
            " WHERE channel = 'email' AND message_id IS NOT NULL")}
        figures.stuck = {what: await conn.fetchval(sql) for what, sql in STUCK.items()}
    finally:
        await conn.close()
    received = run.sink.recorder.messages
    figures.emails = len(received)
    emailed = {mails.get(m.message_id) for m in received if TEAM_BOX in m.to}
    figures.lost_flows = sum(1 for f in consented
                             if f.referral_id not in handed or f.referral_id not in emailed)
    kills = [f.at for f in run.faults
             if f.kind in ("kill9:all", "kill9:notify") or f.kind.startswith("kill9:notify-")]
    figures.duplicate_ids, figures.allowed_duplicates = duplicates(
        received, kills, run.sink.recorder.delay)
    times: dict[str, list[float]] = defaultdict(list)
    for m in received:
        times[m.message_id].append(m.at)
    figures.copies = {i: sorted(t) for i, t in times.items() if len(t) > 1}
    figures.told_twice = told_twice(received, mails)
    figures.dead_letters = await dead_letters(run)
    figures.ordered = await order_on_the_bus(run)
    arrived: dict[str, float] = {}
    for m in received:
        referral = mails.get(m.message_id)
        if referral is not None and TEAM_BOX in m.to:
            arrived.setdefault(referral, m.at)
    begun = {f.referral_id: f.started for f in consented}
    figures.recovery = recovery(run.faults, begun, arrived)
    figures.slowest = slowest(run.faults, begun, arrived)
    figures.stages = await where_they_waited(run, consented, arrived)


WINDOW_SLACK = 0.25
"""Seconds of scheduling between the end of DATA and the sink's clock, beyond its delay."""


def duplicates(received: Sequence[Received], kills: Sequence[float],
               held: float = 0.0) -> tuple[int, int]:
    """How many copies of a message came again (same Message-ID), and how many of them a
    kill -9 of the sender's process (at the times `kills`) explains: one that came between
    the two copies, or while the server held the first one (`held` seconds before its 250,
    when the sink records it: the sender died before hearing the 250, the SMTP window)."""
    by_id: dict[str, list[float]] = defaultdict(list)
    for m in received:
        by_id[m.message_id].append(m.at)
    again = allowed = 0
    for times in by_id.values():
        for first, second in itertools.pairwise(sorted(times)):
            again += 1
            allowed += any(first - held - WINDOW_SLACK <= k <= second for k in kills)
    return again, allowed


def told_twice(received: Sequence[Received], referral_of: Mapping[str, str]) -> int:
    """Messages of one referral with the same subject to the same addresses but different
    Message-IDs: a notification made twice, which no receiver can recognise."""
    told = Counter((referral_of.get(m.message_id), m.subject, m.to)
                   for m in {m.message_id: m for m in received}.values())
    return sum(n - 1 for (referral, _, _), n in told.items() if referral and n > 1)


def recovery(faults: Sequence[Fault], started: Mapping[str, float],
             arrived: Mapping[str, float]) -> dict[str, list[float]]:
    """Per kind of fault: from its end (the process ready, the server back) to the first
    email of a flow begun after it began (0 when one came before it ended)."""
    times: dict[str, list[float]] = {}
    for fault in faults:
        after = [arrived[r] for r, t in started.items() if t >= fault.at and r in arrived]
        if after:
            times.setdefault(fault.kind, []).append(max(0.0, min(after) - fault.healed))
    return times


WINDOW = 1.0
"""Seconds after a fault during which the flows begun are watched for the slowest."""


def slowest(faults: Sequence[Fault], started: Mapping[str, float],
            arrived: Mapping[str, float]) -> dict[str, list[float]]:
    """Per kind of fault: the longest a flow begun while it lasted or in the WINDOW after it
    began took to its email (the worst a person met at that moment waits: with several
    instances, the time their events waited for a partition to move to a surviving one)."""
    times: dict[str, list[float]] = {}
    for fault in faults:
        until = max(fault.at + WINDOW, fault.healed)
        took = [arrived[r] - t for r, t in started.items()
                if fault.at <= t <= until and r in arrived]
        if took:
            times.setdefault(fault.kind, []).append(max(took))
    return times


STAGES = """
SELECT (SELECT min(published_at) FROM intake.outbox WHERE key = $1) AS intake_published,
       (SELECT created_at FROM referral.referrals WHERE id = $2) AS referral_created,
       (SELECT min(published_at) FROM consent.outbox WHERE key = $1) AS consent_published,
       (SELECT min(at) FROM referral.referral_history WHERE referral_id = $2
          AND status = 'requested') AS requested,
       (SELECT min(o.published_at) FROM referral.outbox o, referral.referral_history h
          WHERE o.key = $1 AND h.referral_id = $2 AND h.status = 'requested'
          AND o.created_at >= h.at) AS requested_published,
       (SELECT min(created_at) FROM notify.notifications WHERE referral_id = $2
          AND channel = 'email') AS notified"""
"""Where a flow's time went, from the database's clocks: each event's publication (outbox) and
what its consumer made of it (the referral, its hand-off, the notification), each stamped by
`now()`, its transaction's start (a wait for a lock inside it counts in the next stage)."""


async def where_they_waited(run: Run, consented: Sequence[Flow],
                            arrived: Mapping[str, float]) -> dict[str, str]:
    """For each kind of fault, the slowest flow of its worst time (as `slowest` chooses
    them) told stage by stage, in seconds from the flow's start: which hop waited."""
    flows = {f.referral_id: f for f in consented}

    def took(flow: Flow) -> float:
        return arrived[flow.referral_id] - flow.started

    offset = time.time() - time.monotonic()  # the database's wall clock to the monotonic one
    worst: dict[str, Flow] = {}
    for fault in run.faults:
        until = max(fault.at + WINDOW, fault.healed)
        for r, flow in flows.items():
            if fault.at <= flow.started <= until and r in arrived:
                old = worst.get(fault.kind)
                if old is None or took(flow) > took(old):
                    worst[fault.kind] = flow
    told: dict[str, str] = {}
    conn = await db.connect(run.url)
    try:
        for kind, flow in worst.items():
            row = await conn.fetchrow(STAGES, str(flow.person_id).encode(),
                                      uuid.UUID(flow.referral_id))
            assert row is not None
            times = {"intake acknowledged": flow.answered[0], **{
                name.replace("_", " "): when.timestamp() - offset
                for name, when in row.items() if when is not None},
                "consent acknowledged": flow.answered[-1],
                "email": arrived[flow.referral_id]}
            told[kind] = ", ".join(
                f"{name} {at - flow.started:.1f}" for name, at in sorted(
                    times.items(), key=lambda kv: kv[1]))
    finally:
        await conn.close()
    return told


UNCONSENTED = """
SELECT count(*) FROM referral.referrals r
WHERE r.status <> 'awaiting_consent' AND NOT EXISTS (
    SELECT 1 FROM consent.consents c
    JOIN referral.referral_history h ON h.referral_id = r.id AND h.status = 'requested'
    WHERE c.id = r.consent_id AND c.person_id = r.person_id AND c.granted_at <= h.at
      AND 'referral_partner' = ANY (c.purposes) AND r.target = ANY (c.recipients))"""

STUCK = {
    "outbox rows not published": "SELECT (SELECT count(*) FROM intake.outbox WHERE published_at"
    " IS NULL) + (SELECT count(*) FROM consent.outbox WHERE published_at IS NULL) + (SELECT"
    " count(*) FROM referral.outbox WHERE published_at IS NULL) + (SELECT count(*) FROM"
    " notify.outbox WHERE published_at IS NULL)",
    "notifications not sent": "SELECT count(*) FROM notify.notifications WHERE channel"
    " IN ('email', 'webhook') AND status NOT IN ('delivered', 'sent', 'failed')",
    "referrals waiting with a consent": "SELECT count(*) FROM referral.referrals r WHERE"
    " r.status = 'awaiting_consent' AND EXISTS (SELECT 1 FROM consent.consents c WHERE"
    " c.person_id = r.person_id AND c.status = 'active')",
}


@dataclass(frozen=True)
class Order:
    events: int
    things: int
    out_of_order: int
    split: int
    examples: tuple[str, ...] = ()
    """The first things out of order: topic, thing, and (partition:offset, outbox row)."""


THINGS = ("notification_id", "referral_id", "consent_id", "intake_id")
"""What an event is about, the first of these its data has: one thing's events are written
one after the other under its row's lock, so their outbox order is the order they happened."""


def order_of(messages: Sequence[Message], written: Mapping[str, int]) -> Order:
    """How the events read back from the bus keep the order they were written in: `written`
    gives each event id's outbox row id (its service's order). An event published again (a
    relay stopped between the send and the mark) counts at its first place: consumers drop
    the copy (their inbox)."""
    of_thing: dict[tuple[str, str], list[tuple[int, int, int]]] = defaultdict(list)
    partitions: dict[tuple[str, bytes | None], set[int]] = defaultdict(set)
    seen: set[str] = set()
    for m in sorted(messages, key=lambda m: (m.topic, m.partition, m.offset)):
        event = decode(m)
        partitions[(m.topic, m.key)].add(m.partition)
        thing = next((str(event.data[k]) for k in THINGS if k in event.data), event.subject)
        if event.id in written and event.id not in seen:
            seen.add(event.id)
            of_thing[(m.topic, thing)].append((m.partition, m.offset, written[event.id]))
    broken = [(key, sorted(seq)) for key, seq in of_thing.items()  # (a thing split over
              if len({p for p, _, _ in seq}) == 1  # partitions is counted as split only)
              and [w for _, _, w in sorted(seq)] != sorted(w for _, _, w in seq)]
    return Order(len(messages), len(of_thing), len(broken),
                 sum(1 for parts in partitions.values() if len(parts) > 1),
                 tuple(f"{topic} {thing}: " + ", ".join(f"{p}:{o} row {w}" for p, o, w in seq)
                       for (topic, thing), seq in broken[:5]))


async def order_on_the_bus(run: Run) -> Order:
    """Every event of every service's topic, read back from the bus, against the outboxes."""
    topics = sorted({t for spec in service_specs(SERVICE_NAMES) for t in spec.produces})
    transport: PostgresTransport | KafkaTransport = (
        PostgresTransport(run.url) if run.broker is None
        else KafkaTransport(run.broker.bootstrap))
    messages = [m for topic in topics for m in await transport.read_topic(topic)]
    written: dict[str, int] = {}
    conn = await db.connect(run.url)
    try:
        for schema in ("intake", "consent", "referral", "notify"):
            for row in await conn.fetch(f"SELECT id, headers FROM {schema}.outbox"):
                headers = dict(headers_from_json(row["headers"]))
                written[headers["ce_id"].decode()] = row["id"]
    finally:
        await conn.close()
    return order_of(messages, written)


async def dead_letters(run: Run) -> int:
    """`relais dlq list` of the run: one line per dead letter after its header."""
    env = run.processes[next(iter(run.processes))].env
    command = [sys.executable, "-m", "services.cli", "dlq", "list", "--database", run.url]
    if run.broker is not None:
        command += ["--kafka", run.broker.bootstrap]
    result = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True,
                                     text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"relais dlq list failed: {result.stderr}")
    return sum(1 for line in result.stdout.splitlines() if line and line[0].isdigit())


async def drained(run: Run, partner: Partner, timeout: float) -> float:
    """Until every consented flow's email came and no work is left (or `timeout`)."""
    started = time.monotonic()
    conn: asyncpg.Connection | None = None
    while time.monotonic() - started < timeout:
        try:
            conn = conn or await db.connect(run.url)
            mails = {str(r["message_id"]) for r in await conn.fetch(
                "SELECT message_id FROM notify.notifications WHERE channel = 'email'"
                " AND message_id IS NOT NULL")}
            refs = {r[0] for r in await conn.fetch(
                "SELECT referral_id::text FROM notify.notifications WHERE message_id"
                " = ANY ($1::text[])", [m.message_id for m in run.sink.recorder.messages
                                        if m.message_id in mails])}
            left = sum([await conn.fetchval(sql) for sql in STUCK.values()])
            if left == 0 and all(f.referral_id in refs for f in partner.flows if f.consented):
                return time.monotonic() - started
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            conn = None
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def run_transport(transport: str, args: argparse.Namespace, work: Path) -> Figures:
    rng = random.Random(f"{args.seed}-{transport}")
    run = Run(transport, work, rng, args.smtp_delay)
    figures = Figures(transport, bound=args.bound)
    try:
        secret = await run.prepare()
        await run.start()
        partner = Partner(f"http://127.0.0.1:{run.port_of('intake')}/v1/intakes",
                          f"http://127.0.0.1:{run.port_of('consent')}/v1/consents",
                          await run.token(secret))
        kinds = SHORT[transport] if args.short else schedule(transport, args.faults, rng)
        say(f"[{transport}] processes: {', '.join(run.processes)}; {args.rate:g} flows/s; "
            f"{len(kinds)} faults, one every {args.every[0]:g}-{args.every[1]:g} s; SMTP "
        f"{1000 * args.smtp_delay:.0f} ms per message")
        stop = asyncio.Event()
        started = run.began = time.monotonic()
        load = asyncio.create_task(partner.offer(args.rate, stop))
        for i, kind in enumerate(kinds, 1):
            await asyncio.sleep(rng.uniform(*args.every))
            fault = await run.inject(kind)
            run.faults.append(fault)
            say(f"[{transport}] fault {i}/{len(kinds)} at {fault.at - started:6.1f} s: "
                f"{kind:<20} healed in {fault.healed - fault.at:4.1f} s; "
                f"{len(partner.flows)} flows offered so far")
        await asyncio.sleep(args.every[0])
        await run.settle()
        stop.set()
        await load
        figures.seconds = time.monotonic() - started
        figures.started = started
        say(f"[{transport}] load stopped after {figures.seconds:.0f} s; draining ...")
        figures.drained_s = await drained(run, partner, args.drain)
        figures.faults.extend(run.faults)
        await count(run, partner, figures)
    finally:
        for balancer in run.balancers.values():
            await balancer.stop()
        run.end()
    return figures


def report(figures: Figures) -> None:
    t = figures.transport
    kinds = Counter(f.kind for f in figures.faults)
    say(f"[{t}] {figures.flows} flows offered in {figures.seconds:.0f} s, "
        f"{len(figures.faults)} faults ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})")
    say(f"[{t}] acknowledged: {figures.acked_intakes} intakes, {figures.acked_consents} consents"
        f" (after {figures.retries} retries); lost: {figures.lost_intakes} intakes, "
        f"{figures.lost_consents} consents, {figures.lost_flows} flows; unconsented hand-offs: "
        f"{figures.unconsented}")
    say(f"[{t}] emails: {figures.emails}; duplicates by Message-ID: {figures.duplicate_ids} "
        f"({figures.allowed_duplicates} after a kill -9 of notify in the SMTP window); "
        f"referrals told twice: {figures.told_twice}; dead letters: {figures.dead_letters}; "
        f"stuck: {sum(figures.stuck.values())} "
        f"({', '.join(f'{n} {k}' for k, n in figures.stuck.items() if n) or 'none'}); "
        f"drained in {figures.drained_s:.1f} s")
    o = figures.ordered
    say(f"[{t}] order: {o.events} events of {o.things} things read back from the bus; "
        f"{o.out_of_order} things out of order; {o.split} people's events of one topic on two "
        "partitions")
    for example in o.examples:
        say(f"[{t}]   out of order: {example}")
    for message_id, at in figures.copies.items():
        say(f"[{t}]   {message_id} received at "
            f"{', '.join(f'{a - figures.started:.2f} s' for a in at)}")
    for kind in sorted(kinds):
        down = [f.healed - f.at for f in figures.faults if f.kind == kind]
        back = figures.recovery.get(kind, [])
        worst = figures.slowest.get(kind, [])
        say(f"[{t}] {kind:<20} x{len(down):<3} down median {statistics.median(down):4.1f} s; "
            "then the first email of a flow begun after it: " + (
                f"median {statistics.median(back):4.1f} s, max {max(back):4.1f} s" if back
                else "none") + (f"; the slowest flow begun within {WINDOW:g} s of it or "
                                f"while it lasted: {max(worst):4.1f} s" if worst else ""))
        if kind in figures.stages:
            say(f"[{t}]   its slowest flow, s from its start: {figures.stages[kind]}")
    for line in figures.refused[:5]:
        say(f"[{t}] refused: {line[:400]}")
    for line in figures.unrestarted:
        say(f"[{t}] not started again: {line[:400]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=("postgres", "kafka", "cluster", "both"),
                        default="both", help="both: postgres and kafka; cluster: kafka on "
                        f"three brokers, {INSTANCES} instances of each service")
    parser.add_argument("--faults", type=int, default=50, help="faults per transport")
    parser.add_argument("--rate", type=float, default=10.0, help="new flows per second")
    parser.add_argument("--every", type=float, nargs=2, default=(3.0, 8.0),
                        metavar=("MIN", "MAX"), help="seconds between two faults")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--smtp-delay", type=float, default=0.05, help="seconds the SMTP "
                        "sink takes per message before its 250 (the kill -9 window)")
    parser.add_argument("--drain", type=float, default=180.0, help="longest drain (s)")
    parser.add_argument("--bound", type=float, default=0.0, help="fail when a flow begun "
                        "within a second of a fault, or while it lasted, took longer (s) to "
                        "its email (tests/e2e/test_multi_instance.py); 0: no bound")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data (they "
                        "are kept anyway when a run fails)")
    parser.add_argument("--short", action="store_true", help="what make test runs: both "
                        f"transports, their {len(SHORT['kafka'])} faults of SHORT, 5 flows/s")
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    if args.short:  # the cluster's faults apart, so that each fail-over is timed alone
        args.rate, args.every = 5.0, (8.0, 10.0) if args.transport == "cluster" else (1.0, 3.0)
    transports = ["postgres", "kafka"] if args.transport == "both" else [args.transport]
    failed = False
    for transport in transports:
        work = Path(tempfile.mkdtemp(prefix=f"relais-faults-{transport}-"))
        try:
            figures = asyncio.run(run_transport(transport, args, work))
        except Exception as exc:  # a process that would not start, a broker that died ...
            say(f"[{transport}] FAILED: {exc!r}; logs and data kept in {work}")
            failed = True
            continue
        report(figures)
        if figures.failures:
            failed = True
            say(f"[{transport}] FAILED: {'; '.join(figures.failures)}; logs and data kept in "
                f"{work}")
            continue
        say(f"[{transport}] OK: nothing lost, nothing unconsented, no duplicate but the "
            "allowed one, nothing stuck, no dead letter")
        if args.keep:
            say(f"logs and data kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
