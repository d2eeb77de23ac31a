"""Issue #17, point 2, against a real PostgreSQL of its own that is stopped and started again:
while the database is away, `POST /v1/intakes` answers 503 with `Retry-After` as
problem+json (never a 500) and `/readyz` says not ready; once it is back, the same request
with the same idempotency key records the contact, once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.conftest import OwnPostgres, create_database, wait_until
from tests.e2e.conftest import Tokens

INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}


@pytest.fixture
async def relais(own_postgres: OwnPostgres, tmp_path: Path
                 ) -> AsyncIterator[tuple[TestClient[Any, Any], Tokens]]:
    url = await create_database(own_postgres.url())
    settings = Settings.model_validate({"data_dir": tmp_path, "database_url": url,
                                        "poll_interval": 0.5})
    app = create_app(settings, url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client, Tokens(await client.app[KEYS].signing(), settings)


async def test_a_database_outage_is_a_503_to_retry_not_a_500(
        relais: tuple[TestClient[Any, Any], Tokens], own_postgres: OwnPostgres) -> None:
    client, tokens = relais
    key = str(uuid.uuid4())
    headers = tokens.headers("equipe-aller-vers", "intake:write intake:read",
                             **{"Idempotency-Key": key})

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_until(ready, 30, "ready")
    own_postgres.stop()
    try:
        away = await client.post("/v1/intakes", json=INTAKE, headers=headers)
        assert away.status == 503, await away.text()
        assert away.content_type == "application/problem+json"
        assert int(away.headers["Retry-After"]) > 0
        assert "Idempotency-Key" in (await away.json())["detail"]
        again = await client.post("/v1/intakes", json=INTAKE, headers=headers)
        assert again.status == 503  # a pool with no connection left: still a 503
        state = await client.get("/readyz")
        assert state.status == 503 and "Retry-After" in state.headers
    finally:
        own_postgres.start()
    answers: list[int] = []

    async def recorded() -> bool:
        response = await client.post("/v1/intakes", json=INTAKE, headers=headers)
        answers.append(response.status)
        return response.status == 201

    await wait_until(recorded, 30, "the contact recorded once the database is back")
    assert set(answers) <= {201, 503}, answers
    replay = await client.post("/v1/intakes", json=INTAKE, headers=headers)
    assert replay.status == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    listed = await (await client.get("/v1/intakes", headers=headers)).json()
    assert len(listed["items"]) == 1
    await wait_until(ready, 30, "ready again")
