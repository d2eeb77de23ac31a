"""Request body size and per-client rate limits, as RFC 9457 problems."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.e2e.conftest import Tokens
from tests.e2e.test_skeleton import consent_body
from tests.integration.conftest import Client, rate_limited

INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}


@pytest.fixture
async def strict(database: str, tmp_path: Path) -> AsyncIterator[tuple[Client, Tokens]]:
    async with rate_limited(database, tmp_path, 1, 3) as limited:
        yield limited


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


@pytest.fixture
async def slow(database: str, tmp_path: Path) -> AsyncIterator[tuple[Client, Tokens]]:
    async with rate_limited(database, tmp_path, 0.01, 4) as limited:
        yield limited


async def test_the_standing_asked_in_process_counts_as_the_call_it_saves(
    slow: tuple[Client, Tokens],
) -> None:
    """A consent counts two requests, its own and the intake service's answer on who met the
    person, whether that answer comes over HTTP or, in one process, without it."""
    client, tokens = slow
    scopes = ("equipe-aller-vers", "intake:write consent:write intake:read")

    def headers() -> dict[str, str]:
        return tokens.headers(*scopes, **{"Idempotency-Key": str(uuid.uuid4())})

    met = await client.post("/v1/intakes", json=INTAKE, headers=headers())
    assert met.status == 201, await met.text()
    consented = await client.post("/v1/consents", headers=headers(), json=consent_body(
        (await met.json())["person_id"]))
    assert consented.status == 201, await consented.text()
    after = await client.get(f"/v1/intakes/{uuid.uuid4()}", headers=headers())
    assert after.status == 429, ("the intake, the consent, who met the person and the "
                                 "directory (read once, over HTTP): 4 of a burst of 4")


@pytest.fixture
async def behind_a_proxy(database: str, tmp_path: Path) -> AsyncIterator[Client]:
    settings = Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                        "rate_limit_per_second": 1, "rate_limit_burst": 3,
                                        "trusted_proxies": ["127.0.0.0/8"]})
    app = create_app(settings, database, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/healthz", "/oauth/revoked",
                                  "/v1/audit/keys", "/v1/permanences.ics"])
async def test_a_public_read_over_the_rate_of_its_address_gets_429(
    strict: tuple[Client, Tokens], path: str,
) -> None:
    client, _ = strict
    statuses = [(await client.get(path)).status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = await client.get(path)
    assert limited.headers["Retry-After"] == "1"
    assert limited.content_type == "application/problem+json"


async def test_behind_a_trusted_proxy_each_client_address_has_its_own_rate(
    behind_a_proxy: Client,
) -> None:
    def get(address: str) -> Any:
        return behind_a_proxy.get("/healthz", headers={"X-Forwarded-For": address})

    assert [(await get("203.0.113.7")).status for _ in range(4)] == [200, 200, 200, 429]
    assert (await get("203.0.113.8")).status == 200, "another client behind the same proxy"


async def test_a_body_over_one_megabyte_is_refused_with_413(client: Client,
                                                            tokens: Tokens) -> None:
    response = await client.post("/v1/intakes", data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                                 headers=tokens.headers("ccas", "intake:write", **{
                                     "Idempotency-Key": "big", "Content-Type":
                                     "application/json"}))
    assert response.status == 413
    assert (await response.json())["status"] == 413


async def test_one_public_read_flooded_does_not_hold_back_the_others(
    strict: tuple[Client, Tokens],
) -> None:
    client, _ = strict
    assert [(await client.get("/v1/audit/keys")).status for _ in range(4)][-1] == 429
    assert (await client.get("/healthz")).status == 200, "the probes have their own bucket"
    assert (await client.get("/.well-known/jwks.json")).status == 200
