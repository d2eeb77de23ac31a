"""Issue #14, backups that respect erasure: `relais backup` and `relais restore` on a real
PostgreSQL; a person erased after a backup stays erased after it is restored, whether by
`relais restore` or by PostgreSQL's own tools (the intake service makes the ledger's erasures
again before serving)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from services import backup
from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.intake.erasure import Erasure, Ledger
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_intake import IDENTITY, INTAKE, SCOPES, TEAM, get, post

RELAIS = [sys.executable, "-m", "services.cli"]


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Client, Tokens]]:
    assert settings.database_url
    app = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, Tokens(await client.app[KEYS].signing(), settings)


async def two_people_then_a_backup_then_one_erased(settings: Settings, file: Path
                                                   ) -> tuple[str, str]:
    assert settings.database_url
    async with running(settings) as (client, tokens):
        kept = (await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY}))
        erased = (await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY}))
    await asyncio.to_thread(backup.backup, settings.database_url, file)
    async with running(settings) as (client, tokens):
        response = await client.delete(f"/v1/people/{erased['person_id']}",
                                       headers=tokens.headers(TEAM, SCOPES))
        assert response.status == 204
    return kept["person_id"], erased["person_id"]


async def key_of(dsn: str, person_id: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT wrapped_key FROM intake.people WHERE person_id = $1",
                                   uuid.UUID(person_id))
    finally:
        await conn.close()


async def erased_events(dsn: str, person_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM intake.outbox WHERE key = $1 AND headers::text LIKE"
            " '%person_erased%'", person_id.encode())
        return count
    finally:
        await conn.close()


async def test_relais_restore_applies_again_the_erasures_made_after_the_backup(
        settings: Settings, tmp_path: Path) -> None:
    file = tmp_path / "backups" / "relais.dump"
    kept, erased = await two_people_then_a_backup_then_one_erased(settings, file)
    ledger = Ledger(settings.erasure_ledger_path).read()
    assert [(e.person_id, e.erased_by) for e in ledger] == [(uuid.UUID(erased), TEAM)]
    assert settings.database_url
    env = os.environ | {"RELAIS_DATABASE_URL": settings.database_url,
                        "RELAIS_DATA_DIR": str(settings.data_dir), "RELAIS_LOG_LEVEL": "ERROR"}

    done = await asyncio.to_thread(subprocess.run, [*RELAIS, "restore", str(file)], env=env,
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Erasures made after the backup, made again from the ledger" in done.stdout
    assert f"{settings.erasure_ledger_path}): 1." in done.stdout
    assert await key_of(settings.database_url, erased) is None
    assert await key_of(settings.database_url, kept) is not None
    async with running(settings) as (client, tokens):
        assert (await get(client, tokens, f"/v1/people/{erased}")).status == 410
        person = await (await get(client, tokens, f"/v1/people/{kept}")).json()
        assert person["identity"]["last_name"] == IDENTITY["last_name"]


async def test_a_restore_by_postgresql_s_own_tools_is_made_right_before_relais_serves(
        settings: Settings, tmp_path: Path) -> None:
    file = tmp_path / "relais.dump"
    kept, erased = await two_people_then_a_backup_then_one_erased(settings, file)
    assert settings.database_url
    await asyncio.to_thread(backup.restore_schemas, settings.database_url, file)
    assert await key_of(settings.database_url, erased) is not None, (
        "the backup brought the erased person's key back")
    events_before = await erased_events(settings.database_url, erased)

    async with running(settings) as (client, tokens):
        assert (await get(client, tokens, f"/v1/people/{erased}")).status == 410
        assert (await get(client, tokens, f"/v1/people/{kept}")).status == 200
    assert await key_of(settings.database_url, erased) is None
    assert await erased_events(settings.database_url, erased) == events_before + 1, (
        "the other services are told again")


async def test_restore_refuses_while_relais_runs_and_a_file_that_is_no_backup(
        settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url
    file = tmp_path / "relais.dump"
    async with running(settings) as (client, tokens):
        await asyncio.to_thread(backup.backup, settings.database_url, file)
        env = os.environ | {"RELAIS_DATABASE_URL": settings.database_url,
                            "RELAIS_DATA_DIR": str(settings.data_dir)}
        done = await asyncio.to_thread(subprocess.run, [*RELAIS, "restore", str(file)],
                                       env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1
        assert "stop Relais first" in done.stderr and "Traceback" not in done.stderr
        assert (await get(client, tokens, f"/v1/people/{uuid.uuid4()}")).status == 404
    garbage = tmp_path / "not-a-backup"
    garbage.write_text("hello")
    done = await asyncio.to_thread(subprocess.run, [*RELAIS, "restore", str(garbage)],
                                   env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "pg_restore failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


async def test_a_line_cut_by_a_crash_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "keys" / "erasures.log")
    first = Erasure(uuid.uuid4(), TEAM, datetime(2026, 12, 6, 10, 0, tzinfo=UTC))
    await ledger.append(first)
    with ledger.path.open("ab") as file:
        file.write(b'{"person_id": "12')
    assert ledger.read() == [first]
    assert oct(ledger.path.stat().st_mode & 0o777) == "0o600"


async def test_a_lost_ledger_is_completed_from_the_database_at_start(
        settings: Settings, tmp_path: Path) -> None:
    """Erasures made before the ledger existed, or a ledger lost: at start the intake service
    writes into it every erasure the database shows, so a later restore still honours them."""
    file = tmp_path / "relais.dump"
    _, erased = await two_people_then_a_backup_then_one_erased(settings, file)
    settings.erasure_ledger_path.unlink()
    async with running(settings):
        pass
    assert [str(e.person_id) for e in Ledger(settings.erasure_ledger_path).read()] == [erased]


async def test_an_erasure_the_ledger_cannot_take_is_refused_whole(
        settings: Settings, tmp_path: Path) -> None:
    async with running(settings) as (client, tokens):
        settings.erasure_ledger_path.unlink(missing_ok=True)
        settings.erasure_ledger_path.mkdir(parents=True)  # the storage gone from under it
        person = (await post(client, tokens, "/v1/intakes", INTAKE | {"identity": IDENTITY})
                  )["person_id"]
        refused = await client.delete(f"/v1/people/{person}",
                                      headers=tokens.headers(TEAM, SCOPES))
        assert refused.status == 503 and refused.headers["Retry-After"] == "30"
        assert (await get(client, tokens, f"/v1/people/{person}")).status == 200, (
            "nothing erased")


def test_the_database_password_stays_off_the_command_line() -> None:
    url, env = backup._without_password("postgresql://relais:s%40cret@db:5432/relais")
    assert url == "postgresql://relais@db:5432/relais" and env == {"PGPASSWORD": "s@cret"}
    assert backup._without_password("postgresql://relais@db/relais") == (
        "postgresql://relais@db/relais", {})
