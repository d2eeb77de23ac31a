"""HTTP hardening against a real Relais: headers on every answer, an oversized header
refused without echoing it, a batch counted item by item against the rate limit, and no 500
for a deeply nested JSON body or a NUL character in a query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from deploy.kafka.broker import free_port
from services.cli import service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client, rate_limited

INTAKE = {"site": "qpv-etouvie", "channel": "mobile_permanence",
          "contacted_at": "2026-11-20T10:00:00+01:00", "needs": ["employment"]}
PROBLEM = "application/problem+json"


# --- 7. headers -------------------------------------------------------------------------------

def assert_hardened(response: aiohttp.ClientResponse) -> None:
    assert response.headers.get("X-Content-Type-Options") == "nosniff", response.url
    server = response.headers.get("Server", "")
    assert "aiohttp" not in server and "Python" not in server, server


async def test_every_answer_carries_the_hardening_headers(client: Client,
                                                          tokens: Tokens) -> None:
    auditor = tokens.headers("cnil", "audit:read intake:read")
    answers = {
        "api 200": await client.get("/v1/intakes", headers=auditor),
        "api 404": await client.get(f"/v1/intakes/{uuid.uuid4()}", headers=auditor),
        "no token": await client.get("/v1/intakes"),
        "stream": await client.get("/v1/audit/consent-trail/export", headers=auditor),
        "health": await client.get("/healthz"),
        "no route": await client.get("/nowhere"),
    }
    for name, response in answers.items():
        await response.read()
        assert_hardened(response)
        assert response.headers.get("Cache-Control") == "no-store", name
    jwks = await client.get("/.well-known/jwks.json")
    assert_hardened(jwks)
    assert jwks.headers["Cache-Control"] == "public, max-age=60", "a handler's own is kept"


async def test_an_oversized_header_is_refused_without_being_echoed(
    database: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from services.runtime.server import AppRunner  # what `relais up` serves with

    settings = Settings.model_validate({"data_dir": tmp_path, "database_url": database})
    app = create_app(settings, database, service_specs(["auth"]))
    runner = AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    secret = "SECRETVALUE" * 1500  # 16.5 KB
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/v1/intakes",
                                   headers={"Authorization": f"Bearer {secret}"}) as response:
                body = await response.text()
                assert 400 <= response.status < 500
                assert "SECRETVALUE" not in body, body
                assert response.content_type == PROBLEM
                assert_hardened(response)
            assert "SECRETVALUE" not in capfd.readouterr().err, "nor into the logs"
            async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                assert response.status == 200
                assert_hardened(response)
    finally:
        await runner.cleanup()


# --- 8. batches and the rate limit ------------------------------------------------------------

@pytest.fixture
async def strict(database: str, tmp_path: Path) -> AsyncIterator[tuple[Client, Tokens]]:
    async with rate_limited(database, tmp_path, 0.5, 6) as limited:
        yield limited


def batch(size: int) -> dict[str, object]:
    return {"items": [{"idempotency_key": str(uuid.uuid4()), "intake": INTAKE}
                      for _ in range(size)]}


async def test_a_batch_counts_item_by_item_against_the_rate_limit(
    strict: tuple[Client, Tokens],
) -> None:
    client, tokens = strict
    headers = tokens.headers("equipe-aller-vers", "intake:write")
    too_big = await client.post("/v1/intakes:batch", json=batch(7), headers=headers)
    assert too_big.status == 429, "7 intakes are 7 requests, over a burst of 6"
    assert too_big.content_type == PROBLEM
    first = await client.post("/v1/intakes:batch", json=batch(4), headers=headers)
    assert first.status == 200, await first.text()
    assert (await first.json())["created"] == 4
    second = await client.post("/v1/intakes:batch", json=batch(4), headers=headers)
    assert second.status == 429, "4 more are over what is left"
    assert int(second.headers["Retry-After"]) >= 1


# --- 9. no 500 --------------------------------------------------------------------------------

@pytest.mark.parametrize("body", ["[" * 1000 + "]" * 1000,
                                  '{"a": ' * 1000 + "1" + "}" * 1000])
async def test_a_deeply_nested_body_is_a_client_error(client: Client, tokens: Tokens,
                                                      body: str) -> None:
    for path in ("/v1/intakes", "/v1/intakes:batch", "/v1/consents"):
        response = await client.post(path, data=body.encode(), headers=tokens.headers(
            "equipe-aller-vers", "intake:write consent:write", **{
                "Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}))
        assert response.status in (400, 422), (path, response.status, await response.text())
        assert response.content_type == PROBLEM


@pytest.mark.parametrize("path", ["/v1/stats", "/v1/stats.csv"])
async def test_a_nul_character_in_a_query_is_a_bad_request(client: Client, tokens: Tokens,
                                                           path: str) -> None:
    response = await client.get(f"{path}?site=qpv%00etouvie",
                                headers=tokens.headers("coordination", "stats:read"))
    assert response.status == 400, await response.text()
    assert response.content_type == PROBLEM
    assert "site" in (await response.json())["detail"]
