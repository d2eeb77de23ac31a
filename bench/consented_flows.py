"""Complete consented flows per second: intake, consent, referral handed off, email accepted
by a real SMTP server; and the time from the consent's answer (its commit) to the email.

    .venv/bin/python -m bench.consented_flows --seconds 20

`relais up` (all services, postgres transport) runs as its own process on an embedded
PostgreSQL (or DATABASE_URL); the load generator and the SMTP server (aiosmtpd) run in this
one. The baseline, in the same invocation: the same SMTP server fed directly by aiosmtplib at
the same concurrency (one email per session), the ceiling of the last leg on this machine."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from aiosmtpd.controller import Controller

from bench import database, preload
from bench.cpu import Accounting, postmaster_of
from bench.intake_throughput import consent_of, variant_settings, wait_ready
from bench.memory import Peaks
from deploy.kafka.broker import KafkaBroker, free_port
from services.auth import domain as auth_domain
from services.auth import store as auth_store
from services.cli import SERVICE_NAMES
from services.referral.handlers import REFERRAL_IDS
from services.runtime import db

SCOPES = ["intake:write", "consent:write"]
INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
          "age_bracket": "18_25", "commune": "80021"}


SERVICES = SERVICE_NAMES


class Arrivals:
    """aiosmtpd handler: when each referral's email arrived (by the reference in its subject)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        subject = str(message_from_bytes(envelope.content)["Subject"])
        self.at.setdefault(subject.rsplit(" ", 1)[-1], time.monotonic())  # the first email
        return "250 OK"


class Api:
    """Relais's API as the flows call it: a POST answered 201 gives its body, anything else
    counts as an error (None)."""

    def __init__(self, bases: dict[str, str], token: str) -> None:
        self.bases, self.token, self.errors = bases, token, 0

    async def post(self, session: aiohttp.ClientSession, path: str,
                   body: dict[str, Any]) -> Any:
        headers = {"Authorization": f"Bearer {self.token}",
                   "Idempotency-Key": uuid.uuid4().hex}
        async with session.post(self.bases[path] + path, json=body,
                                headers=headers) as response:
            if response.status != 201:
                self.errors += 1
                return None
            return await response.json()


async def flows(bases: dict[str, str], token: str, seconds: float, concurrency: int,
                arrivals: Arrivals) -> dict[str, Any]:
    consented: dict[str, float] = {}
    ids: dict[str, str] = {}
    api = Api(bases, token)
    post = api.post
    stop = time.monotonic() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            intake = await post(session, "/v1/intakes", INTAKE)
            if intake is None:
                continue
            consent = await post(session, "/v1/consents", consent_of(intake["person_id"]))
            if consent is not None:
                referral = str(uuid.uuid5(REFERRAL_IDS, intake["id"]))
                consented[referral[:8]] = time.monotonic()
                ids[referral[:8]] = referral

    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await asyncio.gather(*(worker(s) for _ in range(concurrency)))
    posted = time.monotonic() - started
    drain = time.monotonic() + 60
    # the SMTP server fills `arrivals` from its own thread: poll it
    while time.monotonic() < drain and not set(consented) <= set(arrivals.at):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    latencies = sorted(arrivals.at[r] - t for r, t in consented.items() if r in arrivals.at)
    last = max((arrivals.at[r] for r in consented if r in arrivals.at), default=started)
    return {"flows": len(consented), "emailed": len(latencies), "errors": api.errors,
            "missing": [ids[r] for r in consented if r not in arrivals.at],
            "posted_s": posted, "flows_per_s": len(latencies) / (last - started),
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0}


async def offered(bases: dict[str, str], token: str, rate: float, seconds: float,
                  arrivals: Arrivals) -> dict[str, Any]:
    """Open loop: a flow starts every 1/rate seconds whatever the earlier ones are doing (a
    closed loop of N workers slows its own offer when Relais slows, and hides the queue).
    Latency: from the consent's 201 to the email accepted by SMTP."""
    consented: dict[str, float] = {}
    api = Api(bases, token)
    post = api.post

    async def flow(session: aiohttp.ClientSession) -> None:
        try:
            await one_flow(session)
        except (aiohttp.ClientError, TimeoutError):
            api.errors += 1

    async def one_flow(session: aiohttp.ClientSession) -> None:
        intake = await post(session, "/v1/intakes", INTAKE)
        if intake is None:
            return
        if await post(session, "/v1/consents", consent_of(intake["person_id"])) is not None:
            consented[str(uuid.uuid5(REFERRAL_IDS, intake["id"]))] = time.monotonic()

    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    late = 0.0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for n in range(int(rate * seconds)):
            due = started + n / rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late = max(late, -wait)
            tasks.append(asyncio.create_task(flow(session)))
        await asyncio.gather(*tasks)
    drain = time.monotonic() + 60
    while time.monotonic() < drain and not {r[:8] for r in consented} <= set(arrivals.at):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    latencies = sorted(arrivals.at[r[:8]] - t for r, t in consented.items()
                       if r[:8] in arrivals.at)
    return {"rate": rate, "flows": len(consented), "emailed": len(latencies),
            "errors": api.errors,
            "missing": [r for r in consented if r[:8] not in arrivals.at],
            "late_ms": 1000 * late, "referrals": list(consented),
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0}


async def smtp_baseline(port: int, seconds: float, concurrency: int) -> float:
    sent = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal sent
        while time.monotonic() < stop:
            msg = EmailMessage()
            msg["From"], msg["To"] = "bench@relais.local", "accueil@example.org"
            msg["Subject"] = f"[Relais] Nouvelle orientation {uuid.uuid4().hex[:8]}"
            msg.set_content("baseline")
            await aiosmtplib.send(msg, hostname="127.0.0.1", port=port)
            sent += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent / (time.monotonic() - started)


async def stages(url: str, since: datetime | None = None, until: datetime | None = None,
                 label: str = "") -> None:
    """Where the time goes, from the rows each service wrote (medians and p99 over the flows
    consented between `since` and `until`, by the database's clock; all of them by default)."""
    since = since or datetime(2000, 1, 1, tzinfo=UTC)
    until = until or datetime(3000, 1, 1, tzinfo=UTC)

    def both(expr: str, name: str) -> str:
        return (f" percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM {expr}))"
                f" AS {name}_50, percentile_cont(0.99) WITHIN GROUP (ORDER BY"
                f" extract(epoch FROM {expr})) AS {name}_99")

    conn = await db.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT" + both("r.requested_at - c.granted_at", "gate") + ","
            + both("n.created_at - r.requested_at", "notify") + ","
            + both("n.sent_at - n.created_at", "smtp") +
            " FROM referral.referrals r JOIN consent.consents c ON c.id = r.consent_id"
            " JOIN notify.notifications n ON n.referral_id = r.id AND n.channel = 'email'"
            " WHERE c.granted_at >= $1 AND c.granted_at < $2", since, until)
        relay = {schema: await conn.fetchrow(
            "SELECT" + both("published_at - created_at", "relay") +
            f" FROM {schema}.outbox WHERE created_at >= $1 AND created_at < $2", since, until)
            for schema in ("intake", "consent", "referral")}
    finally:
        await conn.close()
    if row["gate_50"] is None:
        return

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{1000 * value:.0f}"

    print(f"{label}outbox to bus, p50/p99 ms: " + ", ".join(
        f"{k} {ms(v['relay_50'])}/{ms(v['relay_99'])}" for k, v in relay.items()))
    print(f"{label}stages, p50/p99 ms: consent -> requested {ms(row['gate_50'])}/"
          f"{ms(row['gate_99'])}, requested -> notification written {ms(row['notify_50'])}/"
          f"{ms(row['notify_99'])}, written -> SMTP {ms(row['smtp_50'])}/{ms(row['smtp_99'])}",
          flush=True)


async def not_emailed(url: str, referrals: list[str]) -> None:
    """Where the flows whose email did not come stand: the referral, its notifications."""
    if not referrals:
        return
    conn = await db.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT r.id, r.status, r.requested_at, n.status AS sent, n.attempts, n.last_error,"
            " n.created_at, n.sent_at FROM referral.referrals r LEFT JOIN"
            " notify.notifications n ON n.referral_id = r.id AND n.channel = 'email'"
            " WHERE r.id = ANY($1::uuid[])", referrals)
    finally:
        await conn.close()
    print(f"  not emailed within 60 s: {len(referrals)}; in the database: "
          + "; ".join(", ".join(f"{k}={v}" for k, v in dict(r).items()) for r in rows[:10])
          + ("" if rows else "none of them"), flush=True)


async def db_now(url: str) -> datetime:
    conn = await db.connect(url)
    try:
        now: datetime = await conn.fetchval("SELECT clock_timestamp()")
        return now
    finally:
        await conn.close()


async def prepare(admin_url: str, scale: float | None = None) -> tuple[str, str]:
    """A new database with the bench's client; with `scale`, preloaded first with two years
    of a large territory (bench/preload.py: 5,000,000 intakes and trail entries, 10,000,000
    bus records, times `scale`)."""
    url = await database.new_database(admin_url, f"bench_flows_{uuid.uuid4().hex[:6]}")
    if scale is not None:
        started = time.monotonic()
        print(f"preloading x{scale} ...", flush=True)
        await preload.preload(url, int(5_000_000 * scale), int(5_000_000 * scale),
                              int(10_000_000 * scale),
                              say=lambda text: print(text, flush=True))
        print(f"preloaded in {time.monotonic() - started:.0f} s", flush=True)
    secret = auth_domain.new_secret()
    conn = await db.connect(url)
    try:
        await db.migrate(conn, "auth", "services.runtime")
        await db.migrate(conn, "auth", "services.auth")
        await auth_store.insert_client(conn, "bench", auth_domain.hash_secret(secret),
                                       "equipe-aller-vers", "bench", SCOPES)
    finally:
        await conn.close()
    return url, secret


async def token_for(port: int, secret: str) -> str:
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{port}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": "bench", "client_secret": secret},
    ) as response:
        token: str = (await response.json())["access_token"]
        return token


async def accounting(url: str, groups: list[str], servers: list[subprocess.Popen[bytes]],
                     broker: KafkaBroker | None) -> Accounting:
    """Who spends the CPU: Relais's processes, PostgreSQL's (when it runs on this machine:
    the parent of this connection's backend) and Kafka's; `bench` is this process (the load
    and the SMTP server)."""
    parties = {f"relais {group}" if len(groups) > 1 else "relais": server.pid
               for group, server in zip(groups, servers, strict=True)}
    conn = await db.connect(url)
    try:
        postmaster = postmaster_of(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()
    if postmaster:
        parties["postgres"] = postmaster
    if broker is not None and broker.pid is not None:
        parties["kafka"] = broker.pid
    return Accounting(parties)


async def run(args: argparse.Namespace, admin_url: str, work: Path,
              loop: str = "uvloop", variant: str = "", scale: float | None = None) -> float:
    url, secret = await prepare(admin_url, scale)
    settings, source = variant_settings(variant)
    arrivals = Arrivals()
    smtp_port, port = free_port(), free_port()
    controller = Controller(arrivals, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = os.environ | {"RELAIS_DATA_DIR": str(work), "RELAIS_LOG_LEVEL": "WARNING",
                        "RELAIS_RATE_LIMIT_PER_SECOND": "1000000",
                        "RELAIS_SMTP_PORT": str(smtp_port), "RELAIS_TOKEN_TTL": "3600",
                        "RELAIS_EVENT_LOOP": loop} | settings
    groups = (list(SERVICES) if args.transport == "kafka"
              else ["auth,intake,consent", "referral,notify"] if args.split
              else ["auth,intake,consent,referral,notify"])
    ports = [port] + [free_port() for _ in groups[1:]]
    where = {s: f"http://127.0.0.1:{p}" for group, p in zip(groups, ports, strict=True)
             for s in group.split(",")}
    command = [sys.executable, "-m", "services.cli", "up", "--database", url]
    broker = None
    if args.transport == "kafka":  # a real broker; a process per service, as deployed
        broker = await asyncio.to_thread(KafkaBroker(work / f"kafka-{uuid.uuid4().hex[:6]}")
                                         .start)
        command += ["--kafka", broker.bootstrap]
        env |= {"RELAIS_PUBLIC_URL": where["auth"]} | {
            f"RELAIS_{name.upper()}_URL": where[name]
            for name in ("intake", "referral", "consent", "notify")}
    servers = [subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
        [*command, "--port", str(p), "--services", group], env=env, cwd=source,
        stderr=subprocess.DEVNULL)
        for group, p in zip(groups, ports, strict=True)]
    peaks = Peaks({group: server.pid for group, server in zip(groups, servers, strict=True)})
    try:
        for server, p in zip(servers, ports, strict=True):
            await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{p}/readyz", server)
        token = await token_for(int(where["auth"].rsplit(":", 1)[1]), secret)
        cpu = await accounting(url, groups, servers, broker)
        bases = {"/v1/intakes": where["intake"], "/v1/consents": where["consent"]}
        print(f"complete consented flows, {args.rounds} rounds x {args.seconds:.0f} s, "
              f"{args.concurrency} concurrent flows; {args.transport} transport; processes: "
              f"{' | '.join(groups)}; event loop: {loop}" + (f"; {variant}" if variant else ""),
              flush=True)
        await flows(bases, token, 3, args.concurrency, arrivals)  # warm-up
        peaks.start()
        if args.rates:
            return await open_loop(args, url, bases, token, arrivals, cpu)
        results, baselines = [], []
        since = await db_now(url)
        for i in range(args.rounds):
            baselines.append(await smtp_baseline(smtp_port, args.seconds / 2, args.concurrency))
            before = cpu.sample()
            result = await flows(bases, token, args.seconds, args.concurrency, arrivals)
            results.append(result)
            print(f"round {i + 1}: baseline (bare SMTP) {baselines[-1]:.0f} emails/s; relais "
                  f"{result['flows_per_s']:.0f} flows/s ({result['emailed']:.0f}/"
                  f"{result['flows']:.0f} emailed, {result['errors']:.0f} errors), consent to "
                  f"email p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms",
                  flush=True)
            print(f"  {cpu.per_item(before, cpu.sample(), result['emailed'])}", flush=True)
            await not_emailed(url, result["missing"])
        await stages(url, since)
        rate = float(statistics.median(r["flows_per_s"] for r in results))
        base = statistics.median(baselines)
        print(f"median: relais {rate:.0f} flows/s, p99 consent to email "
              f"{statistics.median(r['p99_ms'] for r in results):.0f} ms; bare SMTP "
              f"{base:.0f} emails/s; ratio {rate / base:.2f}")
        return rate
    finally:
        if peaks.stop():
            print(f"peak resident memory under load: {peaks.summary()}", flush=True)
        for server in servers:
            server.terminate()
            server.wait(30)
        controller.stop()
        if broker is not None:
            await asyncio.to_thread(broker.stop)


async def open_loop(args: argparse.Namespace, url: str, bases: dict[str, str], token: str,
                    arrivals: Arrivals, cpu: Accounting) -> float:
    rows = []
    for rate in (float(r) for r in args.rates.split(",")):
        runs = []
        for i in range(args.rounds):
            since, before = await db_now(url), cpu.sample()
            runs.append(await offered(bases, token, rate, args.seconds, arrivals))
            spent = cpu.per_item(before, cpu.sample(), runs[-1]["emailed"])
            until = await db_now(url)
            run_ = runs[-1]
            print(f"{rate:.0f} flows/s offered, round {i + 1}: {run_['emailed']}/{run_['flows']}"
                  f" emailed, {run_['errors']} errors, consent to email p50 "
                  f"{run_['p50_ms']:.0f} ms, p99 {run_['p99_ms']:.0f} ms (offer late by up to "
                  f"{run_['late_ms']:.0f} ms)", flush=True)
            print(f"  {spent}", flush=True)
            await not_emailed(url, run_["missing"])
            await stages(url, since, until, label="  ")
        rows.append((rate, statistics.median(r["p50_ms"] for r in runs),
                     statistics.median(r["p99_ms"] for r in runs),
                     sum(r["flows"] - r["emailed"] for r in runs)))
    print("\n| offered flows/s | p50 consent to email | p99 | not emailed within 60 s |")
    print("|---|---|---|---|")
    for rate, p50, p99, missing in rows:
        print(f"| {rate:.0f} | {p50:.0f} ms | {p99:.0f} ms | {missing} |")
    return float(rows[-1][2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--transport", choices=["postgres", "kafka"], default="postgres",
                        help="kafka: a real broker (Maven Central's jars, `make kafka-jars`) "
                        "and one process per service")
    parser.add_argument("--split", action="store_true", help="intake and consent in one "
                        "process, referral and notify in another (two cores)")
    parser.add_argument("--loops", default="uvloop", help="the event loops to run Relais on, "
                        "one after the other in this invocation (e.g. asyncio,uvloop)")
    parser.add_argument("--variants", default="", help="runs one after the other in this "
                        "invocation, each with these settings for Relais, e.g. "
                        "'RELAIS_X=1;RELAIS_Y=2,RELAIS_X=0' (the first is the baseline); "
                        "SOURCE=<dir>: the Relais of another checkout (git worktree)")
    parser.add_argument("--rates", default="", help="open loop: flows offered at each of these "
                        "rates per second (e.g. 10,25,50,100,150), --seconds each, --rounds "
                        "times; prints p50/p99 from consent to email and where the time goes")
    parser.add_argument("--preloaded", action="store_true", help="the closed loop on an empty "
                        "database, then on one preloaded with two years of a large territory "
                        "(bench/preload.py), in this invocation; prints both and the ratio")
    parser.add_argument("--preload-scale", type=float, default=1.0, help="the preload's size: "
                        "1.0 is 5,000,000 intakes and trail entries, 10,000,000 bus records")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    with database.server(work) as admin_url:
        if args.preloaded:
            loop = args.loops.split(",")[0]
            rates = {"empty": asyncio.run(run(args, admin_url, work, loop)),
                     f"preloaded x{args.preload_scale:g}": asyncio.run(
                         run(args, admin_url, work, loop, scale=args.preload_scale))}
        elif args.variants:  # (a variant named twice, to alternate, is run twice)
            rates = {f"{variant or 'as is'} #{i + 1}": asyncio.run(
                run(args, admin_url, work, args.loops.split(",")[0], variant))
                for i, variant in enumerate(args.variants.split(","))}
        else:
            rates = {loop: asyncio.run(run(args, admin_url, work, loop))
                     for loop in args.loops.split(",")}
    if args.preloaded:  # the preloaded database is large: the server's files go
        shutil.rmtree(work, ignore_errors=True)
    if len(rates) > 1:
        first = next(iter(rates.values()))
        print("flows/s by run: " + ", ".join(
            f"{name} {rate:.0f} ({rate / first:.2f})" for name, rate in rates.items()))


if __name__ == "__main__":
    main()
