"""POST /v1/intakes throughput and latency, against a bare aiohttp baseline doing the same two
inserts, in the same run (these machines are shared and noisy: compare ratios, not absolutes).

    make bench            # or: .venv/bin/python -m bench.intake_throughput --seconds 10

Both servers run as separate processes on one real PostgreSQL (embedded unless DATABASE_URL);
the load generator is a third process (aiohttp client, fixed concurrency). Rounds alternate
baseline and Relais; the report gives each one's median requests/s and p99 over the rounds."""

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

import aiohttp

from bench import database
from deploy.kafka.broker import free_port
from services.runtime import db

BODY = {"site": "qpv-etouvie", "channel": "mobile_permanence",
        "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}


async def load(url: str, token: str, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    payload = json.dumps(BODY)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex,
                       "Content-Type": "application/json"}
            started = time.perf_counter()
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                if response.status != 201:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return errors, latencies


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


def run_round(
    name: str, port: int, token: str, seconds: float, concurrency: int
) -> dict[str, float]:
    cmd = [sys.executable, "-c",
           "import asyncio,json,sys; from bench.intake_throughput import load;"
           f"e,l=asyncio.run(load('http://127.0.0.1:{port}/v1/intakes','{token}',{seconds},"
           f"{concurrency})); print(json.dumps([e,l]))"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    errors, latencies = json.loads(out)
    latencies.sort()
    result = {
        "rps": len(latencies) / seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": errors,
    }
    print(f"  {name:9s} {result['rps']:7.0f} req/s  p50 {result['p50_ms']:5.1f} ms"
          f"  p99 {result['p99_ms']:5.1f} ms  errors {errors}", flush=True)
    return result


async def client_token(dsn: str, port: int) -> str:
    """A client of the auth service, and a token from its token endpoint."""
    from services.auth import domain, store

    secret = domain.new_secret()
    conn = await db.connect(dsn)
    try:
        await store.insert_client(conn, "bench", domain.hash_secret(secret), "bench", "bench",
                                  ["intake:write"])
    finally:
        await conn.close()
    async with aiohttp.ClientSession() as session, session.post(
        f"http://127.0.0.1:{port}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": "bench",
              "client_secret": secret},
    ) as response:
        token: str = (await response.json())["access_token"]
        return token


async def prepare(admin_url: str, relais_runs: int = 1) -> tuple[str, list[str]]:
    urls = []
    for name in [f"bench_base_{uuid.uuid4().hex[:6]}"] + [
            f"bench_relais_{uuid.uuid4().hex[:6]}" for _ in range(relais_runs)]:
        url = await database.new_database(admin_url, name)
        conn = await db.connect(url)
        for schema, package in (("intake", "services.runtime"), ("intake", "services.intake"),
                                ("auth", "services.runtime"), ("auth", "services.auth")):
            await db.migrate(conn, schema, package)
        await conn.close()
        urls.append(url)
    return urls[0], urls[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--variants", default="", help="several Relais servers, each with "
                        "these settings, e.g. 'RELAIS_X=1;RELAIS_Y=2,RELAIS_X=0', measured in "
                        "turn within each round")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="relais-bench-"))
    with database.server(work) as admin_url:
        measure(args, admin_url, work)


def measure(args: argparse.Namespace, admin_url: str, work: Path) -> None:
    servers: list[subprocess.Popen[bytes]] = []
    variants = args.variants.split(",") if args.variants else [""]
    names = ["relais" + (f" {v}" if v else "") for v in variants]
    try:
        base_url, relais_urls = asyncio.run(prepare(admin_url, len(variants)))
        base_port = free_port()
        env = os.environ | {"RELAIS_DATA_DIR": str(work), "RELAIS_LOG_LEVEL": "WARNING",
                            "RELAIS_RATE_LIMIT_PER_SECOND": "1000000"}
        servers.append(subprocess.Popen([sys.executable, "-m", "bench.baseline_server",
                                         "--dsn", base_url, "--port", str(base_port)], env=env))
        ports, tokens = [], []
        for variant, url in zip(variants, relais_urls, strict=True):
            port = free_port()
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "services.cli", "up", "--services", "auth,intake",
                 "--database", url, "--port", str(port)],
                env=env | dict(kv.split("=", 1) for kv in variant.split(";") if kv),
                stderr=subprocess.DEVNULL))
            wait_ready(f"http://127.0.0.1:{port}/readyz", servers[-1])
            time.sleep(0.5)
            ports.append(port)
            tokens.append(asyncio.run(client_token(url, port)))
        print(f"POST /v1/intakes, {args.rounds} rounds x {args.seconds:.0f} s, "
              f"{args.concurrency} connections", flush=True)
        results: dict[str, list[dict[str, float]]] = {n: [] for n in ["baseline", *names]}
        for port, token in zip(ports, tokens, strict=True):
            run_round("warm-up", port, token, 2, args.concurrency)
        for i in range(args.rounds):
            print(f"round {i + 1}", flush=True)
            results["baseline"].append(run_round("baseline", base_port, tokens[0], args.seconds,
                                                 args.concurrency))
            for name, port, token in zip(names, ports, tokens, strict=True):
                results[name].append(run_round(name, port, token, args.seconds,
                                               args.concurrency))
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
