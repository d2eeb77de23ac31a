"""POST /v1/intakes (or /v1/consents) throughput and latency, against a bare aiohttp baseline
doing the same inserts, in the same run (these machines are shared and noisy: compare ratios,
not absolutes).

    make bench            # or: .venv/bin/python -m bench.intake_throughput --seconds 10
    .venv/bin/python -m bench.intake_throughput --endpoint consents --seconds 10

Consents: Relais runs auth,intake,consent, and each POST names a fresh person the bench's
organisation met (inserted straight into intake.intakes before Relais starts, `--people`
of them: the API would take longer than the measure), so no request is a replay.

Both servers run as separate processes on one real PostgreSQL (embedded unless DATABASE_URL);
the load generator is a third process (aiohttp client, fixed concurrency). Rounds alternate
baseline and Relais; the report gives each one's median requests/s and p99 over the rounds,
and per round the CPU each party spent per request (the server; PostgreSQL, when local: the
whole server, so the idle server's background work too; the load generator, as `bench`, its
interpreter's start included, about 0.5 s) and how busy the machine was."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import database
from bench.cpu import Accounting, postmaster_of
from deploy.kafka.broker import free_port
from services.runtime import db

BODY = {"site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}
SERVICES = {"intakes": "auth,intake", "consents": "auth,intake,consent"}
PERSON = "00000000-0000-4000-8000-{:012x}"
"""The n-th person the bench's organisation met (`meet`)."""


def consent_of(person_id: str) -> dict[str, Any]:
    """A valid consent for the person, against the demo directory and notice."""
    return {"person_id": person_id, "purposes": ["referral_partner"],
            "recipients": ["mission-locale"], "categories": ["needs"],
            "notice_version": "2026-01", "method": "signed_screen", "captured_by": "bench"}


async def load(url: str, token: str, seconds: float, concurrency: int,
               people: range | None = None) -> tuple[dict[str, int | str], list[float]]:
    """Non-201 answers by status (and the first one's body), and each request's latency.
    With `people`, a consent for each in turn (consents: one person a request)."""
    latencies: list[float] = []
    errors: dict[str, int | str] = {}
    stop = time.monotonic() + seconds
    fixed = json.dumps(BODY)
    bodies = None if people is None else (json.dumps(consent_of(PERSON.format(n)))
                                             for n in people)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex,
                       "Content-Type": "application/json"}
            payload = fixed if bodies is None else next(bodies, None)
            if payload is None:
                errors.setdefault("first", "out of people: raise --people")
                errors["out of people"] = 1
                return
            started = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as response:
                text = await response.text()
                if response.status != 201:
                    status = str(response.status)
                    errors.setdefault("first", f"{status} {text[:300]}")
                    errors[status] = int(errors.get(status, 0)) + 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return errors, latencies


def variant_settings(variant: str) -> tuple[dict[str, str], str | None]:
    """A variant's settings ('RELAIS_X=1;RELAIS_Y=2') and the checkout to run Relais from
    (`SOURCE=<dir>`, to measure a change against the code before it in one invocation:
    `git worktree add <dir> <commit>`), None for this one."""
    settings = dict(kv.split("=", 1) for kv in variant.split(";") if kv)
    return settings, settings.pop("SOURCE", None)


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    import urllib.request

    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(url)


def run_round(name: str, port: int, token: str, seconds: float, concurrency: int,
              endpoint: str = "intakes", people: range | None = None,
              cpu: Accounting | None = None) -> dict[str, float]:
    """One round of load on one server; with `cpu`, what each party spent per request
    (the server, PostgreSQL, and the load generator as `bench`)."""
    cmd = [sys.executable, "-c",
           "import asyncio,json,sys; from bench.intake_throughput import load;"
           f"e,l=asyncio.run(load('http://127.0.0.1:{port}/v1/{endpoint}','{token}',{seconds},"
           f"{concurrency},{people!r})); print(json.dumps([e,l]))"]
    before = cpu.sample() if cpu is not None else None
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    after = cpu.sample() if cpu is not None else None
    by_status, latencies = json.loads(out)
    first = by_status.pop("first", "")
    errors = sum(by_status.values())
    latencies.sort()
    result = {
        "rps": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
        "requests": len(latencies),
    }
    print(f"  {name:9s} {result['rps']:7.0f} req/s  p50 {result['p50_ms']:5.1f} ms"
          f"  p99 {result['p99_ms']:5.1f} ms  errors {errors}"
          + (f" {by_status}, first: {first}" if errors else ""), flush=True)
    if before is not None and after is not None:
        print(f"            {Accounting.per_item(before, after, len(latencies), 'request')}",
              flush=True)
    return result


async def client_token(dsn: str, port: int) -> str:
    """A client of the auth service, and a token from its token endpoint."""
    from services.auth import domain, store

    secret = domain.new_secret()
    conn = await db.connect(dsn)
    try:
        await store.insert_client(conn, "bench", domain.hash_secret(secret), "bench", "bench",
                                  ["intake:write", "consent:write"])
    finally:
        await conn.close()
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{port}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "bench",
              "client_secret": secret},
    ) as response:
        token: str = (await response.json())["access_token"]
        return token


async def prepare(admin_url: str, relais_runs: int = 1,
                  people: int = 0) -> tuple[str, list[str]]:
    """The baseline's database and each Relais run's; with `people`, consents: the consent
    schema too, the baseline's notice, and in Relais's, the people the bench's organisation
    met (`meet`)."""
    urls: list[str] = []
    for name in [f"bench_base_{uuid.uuid4().hex[:6]}"] + [
            f"bench_relais_{uuid.uuid4().hex[:6]}" for _ in range(relais_runs)]:
        url = await database.new_database(admin_url, name)
        conn = await db.connect(url)
        for schema in ("intake", "auth") + (("consent",) if people else ()):
            await db.migrate(conn, schema, "services.runtime")
            await db.migrate(conn, schema, f"services.{schema}")
        if people and not urls:
            await conn.execute("INSERT INTO consent.notices (version, language, text, hash,"
                               " org) VALUES ($1, 'fr', 'bench', sha256('bench'), 'bench')",
                               consent_of("")["notice_version"])
        elif people:
            await meet(conn, people)
        await conn.close()
        urls.append(url)
    return urls[0], urls[1:]


async def meet(conn: asyncpg.Connection, people: int) -> None:
    """People 0 to `people` - 1, each met once by the bench's organisation (an intake row,
    what the intake service's standing reads): in one statement, not through the API."""
    await conn.execute(
        "INSERT INTO intake.intakes (id, org, person_id, site, channel, contacted_at, needs,"
        " flags, visit_number) SELECT gen_random_uuid(), 'bench', format($1, lpad(to_hex(n),"
        " 12, '0'))::uuid, $2, $3, now(), $4, '{}', 1 FROM generate_series(0, $5 - 1) n",
        PERSON.replace("{:012x}", "%s"), BODY["site"], BODY["channel"], BODY["needs"], people)


async def postmaster_pid(url: str) -> int | None:
    """The local PostgreSQL server's pid (None when it runs elsewhere)."""
    conn = await db.connect(url)
    try:
        return postmaster_of(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--endpoint", choices=sorted(SERVICES), default="intakes")
    parser.add_argument("--people", type=int, default=0, help="consents: how many people "
                        "to prepare (default: 2,000 a second of load, more than enough)")
    parser.add_argument("--variants", default="", help="several Relais servers, each with "
                        "these settings, e.g. 'RELAIS_X=1;RELAIS_Y=2,RELAIS_X=0', measured in "
                        "turn within each round; SOURCE=<dir>: the Relais of another checkout "
                        "(a change against the code before it: git worktree add <dir> <commit>)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    with database.server(work) as admin_url:
        measure(args, admin_url, work)


def measure(args: argparse.Namespace, admin_url: str, work: Path) -> None:
    servers: list[subprocess.Popen[bytes]] = []
    variants = args.variants.split(",") if args.variants else [""]
    names = ["relais" + (f" {v}" if v else "") + (f" #{i + 1}" if variants.count(v) > 1 else "")
             for i, v in enumerate(variants)]  # (a variant named twice, to alternate: two)
    consents = args.endpoint == "consents"
    people = (args.people or int(2000 * (2 + args.rounds * args.seconds))) if consents else 0
    try:
        base_url, relais_urls = asyncio.run(prepare(admin_url, len(variants), people))
        base_port = free_port()
        env = os.environ | {"RELAIS_DATA_DIR": str(work), "RELAIS_LOG_LEVEL": "WARNING",
                            "RELAIS_RATE_LIMIT_PER_SECOND": "1000000"}
        servers.append(subprocess.Popen([sys.executable, "-m", "bench.baseline_server",
                                         "--dsn", base_url, "--port", str(base_port)], env=env))
        ports, tokens = [], []
        for variant, url in zip(variants, relais_urls, strict=True):
            port = free_port()
            settings, source = variant_settings(variant)
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up", "--services",
                 SERVICES[args.endpoint],
                 "--database", url, "--port", str(port)],
                env=env | settings, cwd=source,
                stderr=subprocess.DEVNULL))
            wait_ready(f"http://127.0.0.1:{port}/readyz", servers[-1])
            time.sleep(0.5)
            ports.append(port)
            tokens.append(asyncio.run(client_token(url, port)))
        print(f"POST /v1/{args.endpoint}, {args.rounds} rounds x {args.seconds:.0f} s, "
              f"{args.concurrency} connections"
              + (f", {people} people met beforehand" if consents else ""), flush=True)
        used = dict.fromkeys([base_port, *ports], 0)  # consents: the next fresh person
        postmaster = asyncio.run(postmaster_pid(base_url))
        pids = dict(zip([base_port, *ports], (s.pid for s in servers), strict=True))

        def one(name: str, port: int, token: str, seconds: float) -> dict[str, float]:
            last = people if port in ports else 1 << 47  # the baseline checks nobody
            cpu = Accounting({"server": pids[port]}
                             | ({"postgres": postmaster} if postmaster else {}))
            result = run_round(name, port, token, seconds, args.concurrency, args.endpoint,
                               range(used[port], last) if consents else None, cpu)
            used[port] += int(result["requests"])
            return result

        results: dict[str, list[dict[str, float]]] = {n: [] for n in ["baseline", *names]}
        for port, token in zip(ports, tokens, strict=True):
            one("warm-up", port, token, 2)
        for i in range(args.rounds):
            print(f"round {i + 1}", flush=True)
            results["baseline"].append(one("baseline", base_port, tokens[0], args.seconds))
            for name, port, token in zip(names, ports, tokens, strict=True):
                results[name].append(one(name, port, token, args.seconds))
        med = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p99_ms")}
               for k, v in results.items()}
        base = med["baseline"]["rps"]
        print(f"median: baseline {base:.0f} req/s (p99 {med['baseline']['p99_ms']:.1f} ms)"
              + "".join(f"; {name} {med[name]['rps']:.0f} req/s (p99 "
                        f"{med[name]['p99_ms']:.1f} ms), ratio {med[name]['rps'] / base:.2f}"
                        for name in names))
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
