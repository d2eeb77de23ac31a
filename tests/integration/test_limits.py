"""Request body size and per-client rate limits, as RFC 9457 problems."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client

INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}


@pytest.fixture
async def strict(database: str, tmp_path: Path) -> AsyncIterator[tuple[Client, Tokens]]:
    settings = Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                        "rate_limit_per_second": 1, "rate_limit_burst": 3})
    app = create_app(settings, database, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, Tokens(await client.app[KEYS].signing(), settings)


async def test_a_client_over_its_rate_gets_429_with_retry_after(
    strict: tuple[Client, Tokens],
) -> None:
    client, tokens = strict
    headers = tokens.headers("ccas", "intake:read")
    statuses = [(await client.get(f"/v1/intakes/{uuid.uuid4()}", headers=headers)).status
                for _ in range(5)]
    assert statuses[:3] == [404, 404, 404]
    assert statuses[3:] == [429, 429]
    limited = await client.get(f"/v1/intakes/{uuid.uuid4()}", headers=headers)
    assert limited.headers["Retry-After"] == "1"
    assert limited.content_type == "application/problem+json"


async def test_a_body_over_one_megabyte_is_refused_with_413(client: Client,
                                                            tokens: Tokens) -> None:
    response = await client.post("/v1/intakes", data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                                 headers=tokens.headers("ccas", "intake:write", **{
                                     "Idempotency-Key": "big", "Content-Type":
                                     "application/json"}))
    assert response.status == 413
    assert (await response.json())["status"] == 413
