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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
from aiosmtpd.controller import Controller

from bench import database
from bench.intake_throughput import wait_ready
from deploy.kafka.broker import free_port
from services.auth import domain as auth_domain
from services.auth import store as auth_store
from services.referral.handlers import REFERRAL_IDS
from services.runtime import db

SCOPES = ["intake:write", "consent:write"]
INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"],
          "age_bracket": "18_25", "commune": "80021"}


class Arrivals:
    """aiosmtpd handler: when each referral's email arrived (by the reference in its subject)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        subject = str(message_from_bytes(envelope.content)["Subject"])
        self.at[subject.rsplit(" ", 1)[-1]] = time.monotonic()
        return "250 OK"


async def flows(port: int, token: str, seconds: float, concurrency: int,
                arrivals: Arrivals) -> dict[str, float]:
    consented: dict[str, float] = {}
    errors = 0
    stop = time.monotonic() + seconds
    base = f"http://127.0.0.1:{port}"

    async def post(session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> Any:
        nonlocal errors
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}
        async with session.post(base + path, json=body, headers=headers) as response:
            if response.status != 201:
                errors += 1
                return None
            return await response.json()

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            intake = await post(session, "/v1/intakes", INTAKE)
            if intake is None:
                continue
            consent = await post(session, "/v1/consents", {
                "person_id": intake["person_id"], "purposes": ["referral_partner"],
                "recipients": ["mission-locale"], "categories": ["needs"],
                "notice_version": "2026-01", "method": "signed_screen",
                "captured_by": "bench"})
            if consent is not None:
                ref = str(uuid.uuid5(REFERRAL_IDS, intake["id"]))[:8]
                consented[ref] = time.monotonic()

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
    return {"flows": len(consented), "emailed": len(latencies), "errors": errors,
            "posted_s": posted, "flows_per_s": len(latencies) / (last - started),
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


async def stages(url: str) -> None:
    """Where the time goes, from the rows each service wrote (medians over every flow)."""
    conn = await db.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
            " r.requested_at - c.granted_at)) AS gate,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
            " n.created_at - r.requested_at)) AS to_notify,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
            " n.sent_at - n.created_at)) AS to_smtp"
            " FROM referral.referrals r JOIN consent.consents c ON c.id = r.consent_id"
            " JOIN notify.notifications n ON n.referral_id = r.id AND n.channel = 'email'")
        relay = {schema: await conn.fetchval(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
            f" published_at - created_at)) FROM {schema}.outbox") for schema in (
                "intake", "consent", "referral")}
    finally:
        await conn.close()
    print("outbox to bus (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in relay.items()))
    print(f"stages (median s): consent -> requested {row['gate']:.2f}, requested -> "
          f"notification written {row['to_notify']:.2f}, written -> SMTP {row['to_smtp']:.2f}")


async def prepare(admin_url: str) -> tuple[str, str]:
    url = await database.new_database(admin_url, f"bench_flows_{uuid.uuid4().hex[:6]}")
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


async def run(args: argparse.Namespace, admin_url: str, work: Path,
              loop: str = "uvloop") -> float:
    url, secret = await prepare(admin_url)
    arrivals = Arrivals()
    smtp_port, port = free_port(), free_port()
    controller = Controller(arrivals, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    env = os.environ | {"RELAIS_DATA_DIR": str(work), "RELAIS_LOG_LEVEL": "WARNING",
                        "RELAIS_RATE_LIMIT_PER_SECOND": "1000000",
                        "RELAIS_SMTP_PORT": str(smtp_port), "RELAIS_TOKEN_TTL": "3600",
                        "RELAIS_EVENT_LOOP": loop}
    groups = (["auth,intake,consent", "referral,notify"] if args.split
              else ["auth,intake,consent,referral,notify"])
    ports = [port] + [free_port() for _ in groups[1:]]
    servers = [subprocess.Popen(  # noqa: ASYNC220 (started once, before any load)
        [sys.executable, "-m", "services.cli", "up", "--database", url, "--port", str(p),
         "--services", group], env=env, stderr=subprocess.DEVNULL)
        for group, p in zip(groups, ports, strict=True)]
    try:
        for server, p in zip(servers, ports, strict=True):
            await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{p}/readyz", server)
        token = await token_for(port, secret)
        print(f"complete consented flows, {args.rounds} rounds x {args.seconds:.0f} s, "
              f"{args.concurrency} concurrent flows; processes: {' | '.join(groups)}; "
              f"event loop: {loop}", flush=True)
        await flows(port, token, 3, args.concurrency, arrivals)  # warm-up
        results, baselines = [], []
        for i in range(args.rounds):
            baselines.append(await smtp_baseline(smtp_port, args.seconds / 2, args.concurrency))
            result = await flows(port, token, args.seconds, args.concurrency, arrivals)
            results.append(result)
            print(f"round {i + 1}: baseline (bare SMTP) {baselines[-1]:.0f} emails/s; relais "
                  f"{result['flows_per_s']:.0f} flows/s ({result['emailed']:.0f}/"
                  f"{result['flows']:.0f} emailed, {result['errors']:.0f} errors), consent to "
                  f"email p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms",
                  flush=True)
        await stages(url)
        rate = statistics.median(r["flows_per_s"] for r in results)
        base = statistics.median(baselines)
        print(f"median: relais {rate:.0f} flows/s, p99 consent to email "
              f"{statistics.median(r['p99_ms'] for r in results):.0f} ms; bare SMTP "
              f"{base:.0f} emails/s; ratio {rate / base:.2f}")
        return rate
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--split", action="store_true", help="intake and consent in one "
                        "process, referral and notify in another (two cores)")
    parser.add_argument("--loops", default="uvloop", help="the event loops to run Relais on, "
                        "one after the other in this invocation (e.g. asyncio,uvloop)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    with database.server(work) as admin_url:
        rates = {loop: asyncio.run(run(args, admin_url, work, loop))
                 for loop in args.loops.split(",")}
    if len(rates) > 1:
        first = next(iter(rates.values()))
        print("flows/s by event loop: " + ", ".join(
            f"{loop} {rate:.0f} ({rate / first:.2f})" for loop, rate in rates.items()))


if __name__ == "__main__":
    main()
