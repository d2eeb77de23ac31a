"""Issue #13, point 3: each background worker runs in exactly one instance at a time. Two
instances started together share the workers without ever running one twice; an instance
that holds them all and is killed (-9) has them taken over by the other within seconds (the
time is printed)."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from deploy.kafka.broker import free_port
from services.cli import SERVICE_NAMES, service_specs
from services.runtime import db, leases, sealing
from services.runtime.app import (
    BUS,
    LIMITS,
    RUNTIME,
    forget_full_buckets,
    lease_name,
    prune_bus,
)
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.integration.conftest import Client, running

KEY = base64.b64encode(sealing.new_key()).decode()
NAMES = {lease_name(spec.schema, w) for spec in service_specs(SERVICE_NAMES)
         for w in spec.workers} | {f"relais.worker.{name}.prune" for name in SERVICE_NAMES} \
    | {lease_name(LIMITS, forget_full_buckets), lease_name(BUS, prune_bus)}


POOL = 5


def instance(settings: Settings, name: str) -> Settings:
    # pools of 5: two whole instances (about 35 connections each besides their pools: leases,
    # relays, consumers, listeners) stay well under PostgreSQL's 100 while a killed one's
    # sessions end
    return settings.model_copy(update={"instance_id": name, "master_key": KEY,
                                       "data_dir": settings.data_dir / name,
                                       "db_pool_max": POOL})


async def holders(pool: Any) -> dict[str, list[str]]:
    """Per lease, the connections PostgreSQL says hold it."""
    rows = await pool.fetch(
        "SELECT n.name, a.application_name AS holder FROM unnest($1::text[]) AS n(name)"
        " JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted"
        "  AND l.objid = hashtext(n.name)::oid"
        " JOIN pg_stat_activity a ON a.pid = l.pid", sorted(NAMES))
    found: dict[str, list[str]] = {name: [] for name in NAMES}
    for row in rows:
        found[row["name"]].append(row["holder"])
    return found


def run_here() -> dict[str, int]:
    return {name: leases.running[name] for name in NAMES}


async def test_two_instances_started_together_never_run_a_worker_twice(
        settings: Settings) -> None:
    async with AsyncExitStack() as stack:
        a, b = await asyncio.gather(
            stack.enter_async_context(running(instance(settings, "a"))),
            stack.enter_async_context(running(instance(settings, "b"))))

        async def all_held() -> bool:
            return set(run_here().values()) == {1}

        await wait_until(all_held, 30, "every worker running somewhere")
        seen: set[int] = set()
        until = time.monotonic() + 3
        while time.monotonic() < until:
            seen |= set(run_here().values())
            await asyncio.sleep(0.02)
        assert seen == {1}, f"a worker ran twice, or stopped: {run_here()}"
        found = await holders(_pool(a))
        assert all(len(h) == 1 for h in found.values()), found
        assert {h[0] for h in found.values()} <= {"relais-lease a", "relais-lease b"}
        await b.close()  # the other takes over what b held

        async def a_holds_all() -> bool:
            return all(h == ["relais-lease a"] for h in (await holders(_pool(a))).values())

        await wait_until(a_holds_all, 10, "a taking over b's workers after b stopped")


def _pool(client: Client) -> Any:
    return client.app[RUNTIME].pool


async def test_a_killed_holder_s_workers_are_taken_over_within_seconds(
        settings: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")} | {
        "RELAIS_DATABASE_URL": str(settings.database_url), "RELAIS_MASTER_KEY": KEY,
        "RELAIS_INSTANCE_ID": "c", "RELAIS_DATA_DIR": str(tmp_path / "c"),
        "RELAIS_HTTP_PORT": str(free_port()), "RELAIS_LOG_LEVEL": "WARNING",
        "RELAIS_DB_POOL_MAX": str(POOL)}
    said = tmp_path / "c.log"
    with said.open("wb") as log:
        c = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.cli", "up", env=env,
            stdout=subprocess.DEVNULL, stderr=log)
    pool = await db.create_pool(str(settings.database_url), 2)
    try:
        async def c_holds_all() -> bool:
            assert c.returncode is None, said.read_text()
            found = await holders(pool)
            return all(h == ["relais-lease c"] for h in found.values())

        await wait_until(c_holds_all, 60, "the first instance holding every worker")
        async with running(instance(settings, "b")):
            until = time.monotonic() + 2
            while time.monotonic() < until:
                assert set(run_here().values()) == {0}, "none runs here while c holds it"
                await asyncio.sleep(0.02)
            killed = time.monotonic()
            c.kill()  # SIGKILL: no goodbye to PostgreSQL
            taken: dict[str, float] = {}
            while len(taken) < len(NAMES) and time.monotonic() - killed < 30:
                for name, count in run_here().items():
                    if count and name not in taken:
                        taken[name] = time.monotonic() - killed
                await asyncio.sleep(0.02)
            assert set(taken) == NAMES, f"not taken over: {NAMES - set(taken)}"
            slowest = max(taken.values())
            print(f"\nfail-over after kill -9: {len(NAMES)} workers, all taken over within "
                  f"{slowest:.2f} s (median {sorted(taken.values())[len(taken) // 2]:.2f} s)")
            assert slowest < leases.POLL + 4, taken
            found = await holders(pool)
            assert all(h == ["relais-lease b"] for h in found.values()), found
    finally:
        await pool.close()
        if c.returncode is None:
            c.kill()
        await asyncio.wait_for(c.wait(), 30)
