"""One holder of each background worker across every instance of a service (issue #13).

A worker that must run once per deployment (the outbox relay has its own lock; here:
retention, pruning, the trail's checkpoints, consent expiry, the chaser, the notify
senders) runs only while its process holds a PostgreSQL session advisory lock named after
it, on a connection of its own. PostgreSQL frees the lock when that connection ends: a
process stopped, killed or cut off loses it, and another instance, which asks for it every
`poll` seconds, takes the worker over. The holder checks its connection every `check`
seconds and stops the worker if it is gone (a partition: the lock may be someone else's
now), so two holders overlap at most that long, and only when the database no longer hears
the first one. The lock connections are named in `pg_stat_activity`
(`application_name` = `relais-lease <instance>`), so an operator sees who holds what:

    SELECT a.application_name, l.objid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
     WHERE l.locktype = 'advisory' AND a.application_name LIKE 'relais-lease%';
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable

import asyncpg

from services.runtime.logging import get_logger

log = get_logger("relais.leases")

POLL = 1.0
"""Seconds between two asks for a lease someone else holds: the fail-over time."""
CHECK = 1.0
"""Seconds between two checks that the holder's lock connection is still there."""
CHECK_TIMEOUT = 5.0
"""How long a check may take before the lock is taken for lost (a second's stall of the
database, a failover's pause, must not stop a worker in the middle of its work)."""

KEEPALIVE = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2",
             "tcp_keepalives_count": "3"}
"""A holder whose machine vanished (no FIN, no RST) is dropped by PostgreSQL within about 11 s
(the default would keep its lock for two hours)."""

running: Counter[str] = Counter()
"""Per lease, how many of this process's workers run under it now (0 or 1; tests look)."""


def holder_name(instance: str | None) -> str:
    """The lock connections' application_name: the instance, else host and process."""
    return f"relais-lease {instance or f'{socket.gethostname()}:{os.getpid()}'}"[:63]


async def run_alone(name: str, dsn: str, work: Callable[[], Awaitable[None]],
                    instance: str | None = None, poll: float = POLL,
                    check: float = CHECK) -> None:
    """Run `work` while this process holds the lease `name`, waiting for it first; returns
    when `work` returns, raises what it raises (and when the lease is lost)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn, server_settings={
        "application_name": holder_name(instance), **KEEPALIVE})
    try:
        await _take(conn, name, poll)
        log.info("lease_taken", lease=name)
        running[name] += 1
        task = asyncio.ensure_future(work())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=check)
                if done:
                    return task.result()
                await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)  # still ours
        finally:
            running[name] -= 1
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    finally:
        try:
            await conn.close(timeout=CHECK_TIMEOUT)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            conn.terminate()  # gone already: the lock went with it


async def _take(conn: asyncpg.Connection, name: str, poll: float) -> None:
    """Wait until this connection holds the lease."""
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", name):
            return
        await asyncio.sleep(poll)
