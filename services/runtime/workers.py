"""`relais up --workers N`: N processes serving the same port (SO_REUSEPORT: the kernel deals
the connections out), each running the services as one instance of a deployment would.

Python runs one thread of code at a time: where a process is the limit (its CPU), several
share the machine's cores. Everything that must be one per deployment already is (the
background workers' leases, the rate limits and live-stream caps in PostgreSQL, the
consumers' partitions shared within their group), so a worker is exactly a second instance.
This process starts them, starts again one that dies, and stops them all on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping, Sequence

import aiohttp

from services.runtime.logging import get_logger

log = get_logger("relais.workers")
RESTART_AFTER = 1.0
STOP_WITHIN = 30.0


def worker_env(base: Mapping[str, str], index: int, dsn: str, port: int,
               instance_id: str | None, overrides: Mapping[str, str]) -> dict[str, str]:
    """What worker `index` is told: the database this process found or started, the port,
    and an instance id of its own when the deployment names its instances."""
    env = dict(base) | dict(overrides) | {"RELAIS_DATABASE_URL": dsn,
                                          "RELAIS_HTTP_PORT": str(port),
                                          "RELAIS_WORKERS": "1"}
    if instance_id:
        env["RELAIS_INSTANCE_ID"] = f"{instance_id}-{index}"
    return env


PER_PROCESS = 40
"""Connections one all-in-one process holds besides its pool: its relays, consumers,
listeners, producers and the background workers' leases (36 measured, idle)."""
MIN_POOL = 4


def pool_per_worker(workers: int, max_connections: int, in_use: int) -> int:
    """The pool each worker may have within the server's connections; < MIN_POOL: too many
    workers for this server."""
    return (max_connections - in_use) // workers - PER_PROCESS


async def supervise(count: int, command: Sequence[str], envs: Sequence[Mapping[str, str]],
                    stop: asyncio.Event, serving: asyncio.Event) -> bool:
    """Run `count` copies of `command` (each with its env) until `stop`; one that exits is
    started again after a second, once they are `serving`; before that, an exit stops them
    all (a worker that cannot start would be started again forever). False then."""
    processes: dict[int, asyncio.subprocess.Process] = {}
    failed = False

    async def keep(index: int) -> None:
        nonlocal failed
        while not stop.is_set():
            process = await asyncio.create_subprocess_exec(*command, env=dict(envs[index]))
            processes[index] = process
            if stop.is_set():  # asked to stop while it was being started
                break
            code = await process.wait()
            if stop.is_set():
                return
            if not serving.is_set():
                print(f"relais: worker {index} could not start ({code}); stopping",
                      file=sys.stderr, flush=True)
                failed = True
                stop.set()
                return
            log.warning("worker_exited", worker=index, code=code, restart_in=RESTART_AFTER)
            print(f"relais: worker {index} exited ({code}); starting it again",
                  file=sys.stderr, flush=True)
            await asyncio.sleep(RESTART_AFTER)

    keepers = [asyncio.create_task(keep(i)) for i in range(count)]
    try:
        await stop.wait()
    finally:
        stop.set()
        for process in processes.values():
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        waiting = [asyncio.create_task(p.wait()) for p in processes.values()]
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=STOP_WITHIN)
            for process in processes.values():
                if process.returncode is None:
                    process.kill()
            if late:
                await asyncio.wait(late)
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*keepers, return_exceptions=True)
    return not failed


def child_command(services: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "services.cli", "up", "--services", ",".join(services),
            "--worker"]


async def ready(url: str, supervisor: asyncio.Task[bool], within: float = 120.0) -> bool:
    """Whether a worker answers `url` (its readiness) before `within` seconds, or False once
    the supervisor has ended (stopped meanwhile)."""
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while not supervisor.done() and asyncio.get_running_loop().time() < deadline:
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    return False
