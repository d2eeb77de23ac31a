"""What stops a service at start for a reason an operator can act on is said in one line,
without a traceback, and `relais up` exits 1: a master-key command that fails, an erasure
ledger that cannot be used, a master key that does not open the database's keys."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.kafka.broker import free_port
from services.runtime import db, sealing


def up(database: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RELAIS_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "up", "--services", "intake"],
        env=clean | {"RELAIS_DATABASE_URL": database, "RELAIS_DATA_DIR": str(tmp_path),
                     "RELAIS_HTTP_PORT": str(free_port()), "RELAIS_LOG_LEVEL": "ERROR"} | env,
        capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("env", "said"), [
    ({"RELAIS_MASTER_KEY_COMMAND": "echo the token is not plugged in >&2; exit 3"},
     "relais: RELAIS_MASTER_KEY_COMMAND failed: the token is not plugged in"),
    ({"RELAIS_ERASURE_LEDGER": "{tmp}"},
     "relais: the erasure ledger {tmp} cannot be read or written (Is a directory)"),
    ({"RELAIS_MASTER_KEY": "bWFzdGVyLWtleS1zZWNyZXQtMy0zMi1ieXRlcy0tLS0="},
     "relais: the master key given does not open Relais's keys in this database"),
])
async def test_a_start_refused_says_why_in_one_line(
        database: str, tmp_path: Path, env: dict[str, str], said: str) -> None:
    if "RELAIS_MASTER_KEY" in env:  # a database whose keys another master key sealed
        conn = await db.connect(database)
        try:
            await db.migrate_service(conn, "intake", "services.intake")
            await conn.execute("INSERT INTO relais_keys.derived (info, sealed) VALUES"
                               " ('relais-name-index-v1', $1)",
                               sealing.Keyring.single(sealing.new_key()).seal(
                                   sealing.new_key(), "derived-key/relais-name-index-v1"))
        finally:
            await conn.close()
    env = {name: value.format(tmp=tmp_path) for name, value in env.items()}
    done = await asyncio.to_thread(up, database, tmp_path, **env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(said.format(tmp=tmp_path)), (
        done.stderr)
