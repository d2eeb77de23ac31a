"""Relais over real HTTP on a fresh database, with the postgres transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
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


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with running(settings) as client:
        yield client


@pytest.fixture
async def tokens(client: Client, settings: Settings) -> Tokens:
    return Tokens(await client.app[KEYS].signing(), settings)
