"""The asyncpg pool and per-service schema migrations, applied at start under an advisory lock."""

from __future__ import annotations

from importlib import resources

import asyncpg
import orjson

from services.runtime.logging import get_logger

log = get_logger("relais.db")
MIGRATION_LOCK = 7_240_001  # pg_advisory_xact_lock key shared by every service's migrator


RETRY_AFTER = 2
"""Seconds a client is told to wait when the database is away (a restart takes a few)."""


_AWAY = (asyncpg.PostgresConnectionError, asyncpg.exceptions.CannotConnectNowError,
         asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
         asyncpg.exceptions.TooManyConnectionsError,
         asyncpg.exceptions.ReadOnlySQLTransactionError)
"""What PostgreSQL says when it is away or not yet the primary: a connection lost or refused,
a shutdown or a start, no connection left, a replica still read-only after a failover."""


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database is away (restarting, refusing connections, a
    connection cut, a failover), not that the request or the code is wrong: an answer is
    then a 503 that the client retries. A network error counts only when asyncpg raised it
    (not a peer service's, not a timeout of ours)."""
    if isinstance(exc, asyncpg.InterfaceError):
        return "connection is closed" in str(exc) or "pool is closing" in str(exc)
    if isinstance(exc, _AWAY):
        return True
    return isinstance(exc, OSError) and _raised_by_asyncpg(exc)


def _raised_by_asyncpg(exc: BaseException) -> bool:
    frame = exc.__traceback__
    while frame is not None:
        if str(frame.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg"):
            return True
        frame = frame.tb_next
    return False


def _jsonb(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    """jsonb in and out with orjson: in a profile of the closed loop, the standard library's
    json behind this codec took about 4 % of the busy process's samples (outbox values, the
    idempotency answers, events' data). Unlike json, orjson writes NaN and infinities as
    null, refuses integers beyond 64 bits and accepts datetimes and UUIDs; what Relais writes
    to jsonb holds none of them (pydantic's JSON-mode dumps, strings and small integers)."""
    await conn.set_type_codec("jsonb", encoder=_jsonb, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pooled connections hold no session state (LISTEN and session advisory locks live on
    dedicated connections), so the reset query asyncpg runs on every release is skipped."""


async def create_pool(dsn: str, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=max_size, init=_init_connection, command_timeout=60,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


def migration_files(package: str) -> list[tuple[str, str]]:
    """The `NNN_name.sql` files of a package's `migrations` folder, in order."""
    folder = resources.files(package).joinpath("migrations")
    files = sorted(
        (entry.name, entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


async def migrate(conn: asyncpg.Connection, schema: str, package: str) -> list[str]:
    """Apply the package's missing migrations to `schema`, each in its own transaction.

    Concurrent starters wait on one advisory lock, so a migration is applied exactly once.
    Returns the names applied now."""
    applied_now: list[str] = []
    for filename, sql in migration_files(package):
        name = f"{package}/{filename}"
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await conn.fetchval(
                f'SELECT 1 FROM "{schema}".schema_migrations WHERE name = $1', name
            )
            if done:
                continue
            await conn.execute(f'SET LOCAL search_path TO "{schema}", public')
            await conn.execute(sql)
            await conn.execute(
                f'INSERT INTO "{schema}".schema_migrations (name) VALUES ($1)', name
            )
            applied_now.append(name)
    if applied_now:
        log.info("migrated", schema=schema, applied=applied_now)
    return applied_now



async def migrate_service(conn: asyncpg.Connection, schema: str, package: str) -> None:
    """A service's schema brought up to date: the runtime's tables (outbox, inbox,
    idempotency), then the service's own."""
    await migrate(conn, schema, "services.runtime")
    await migrate(conn, schema, package)


async def migrated(dsn: str, schema: str, package: str) -> None:
    """`migrate_service` on a connection of its own (a command that runs without the
    services)."""
    conn = await connect(dsn)
    try:
        await migrate_service(conn, schema, package)
    finally:
        await conn.close()
