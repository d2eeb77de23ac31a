"""Relais over real HTTP on a fresh database, with the postgres transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.db import migration_files
from services.runtime.settings import Settings
from tests.e2e.conftest import Tokens

Client = TestClient[Any, Any]


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                    "poll_interval": 0.5, "checkpoint_interval": 0.3,
                                    "chase_interval": 0.2})


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Client]:
    """Relais on these settings, for as long as the block lasts (a test may run several, one
    after the other or side by side: instances, restarts with other keys)."""
    assert settings.database_url
    app = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@asynccontextmanager
async def rate_limited(database: str, tmp_path: Path, per_second: float,
                       burst: int) -> AsyncIterator[tuple[Client, Tokens]]:
    """Relais with this rate limit per client, and tokens for it."""
    settings = Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                        "rate_limit_per_second": per_second,
                                        "rate_limit_burst": burst})
    async with running(settings) as client:
        yield client, Tokens(await client.app[KEYS].signing(), settings)


async def apply_again(pool: asyncpg.Pool, schema: str, migration: str) -> None:
    """Run a migration file of `schema`'s service once more, as an upgrade runs it."""
    [sql] = [sql for name, sql in migration_files(f"services.{schema}") if name == migration]
    async with pool.acquire() as conn:
        await conn.execute(f"SET search_path TO {schema}")
        await conn.execute(sql)
        await conn.execute("RESET search_path")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with running(settings) as client:
        yield client


@pytest.fixture
async def tokens(client: Client, settings: Settings) -> Tokens:
    return Tokens(await client.app[KEYS].signing(), settings)
