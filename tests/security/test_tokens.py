"""Access tokens and the token endpoint against a real Relais: a revoked client is refused
within seconds (also by a service in another process, through the revocation list), the
token endpoint answers an unknown client as it answers a wrong secret (same body, same
time) and throttles repeated failures, and a token must say it is an access token
(`typ: at+jwt`, RFC 9068)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from ipaddress import ip_network

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from joserfc import jws, jwt

from services.auth import api
from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, client_command, service_specs
from services.runtime.app import create_app
from services.runtime.auth import VERIFIER
from services.runtime.problem import Problem
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.integration.conftest import Client
from tests.integration.test_oauth import basic, get_token, new_client, read_intake


async def token_of(client: Client, client_id: str, secret: str) -> str:
    response = await get_token(client, client_id, secret)
    assert response.status == 200, await response.text()
    token: str = (await response.json())["access_token"]
    return token


# --- 1. revocation ----------------------------------------------------------------------------

async def test_a_revoked_client_is_refused_within_seconds(client: Client,
                                                          settings: Settings) -> None:
    client_id, secret = await new_client(client, "ccas", "intake:read")
    token = await token_of(client, client_id, secret)
    assert await read_intake(client, token) == 404, "authenticated (then not found)"
    assert await read_intake(client, token) == 404, "again, from the verifier's cache"

    revoke = argparse.Namespace(command="client", action="revoke", client_id=client_id)
    assert await client_command(settings, revoke) == 0
    revoked_at = time.monotonic()

    async def refused() -> bool:
        return await read_intake(client, token) == 401

    await wait_until(refused, 5.0, "the revoked client's token to be refused")
    assert time.monotonic() - revoked_at <= 5.0
    response = await client.get(f"/v1/intakes/{uuid.uuid4()}",
                                headers={"Authorization": f"Bearer {token}"})
    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.content_type == "application/problem+json"


async def test_a_service_in_another_process_reads_the_revocation_list(
    client: Client, settings: Settings
) -> None:
    client_id, secret = await new_client(client, "ccas", "intake:read")
    kept_id, kept_secret = await new_client(client, "ccas", "intake:read")
    token, kept = (await token_of(client, client_id, secret),
                   await token_of(client, kept_id, kept_secret))
    revoke = argparse.Namespace(command="client", action="revoke", client_id=client_id)
    assert await client_command(settings, revoke) == 0

    listed = await client.get("/oauth/revoked")
    assert listed.status == 200
    assert client_id in (await listed.json())["revoked"]
    assert kept_id not in (await listed.json())["revoked"]

    # The intake service alone, as in its own process: keys and revocations over HTTP.
    base = str(client.make_url("")).rstrip("/")
    alone = settings.model_copy(update={"public_url": base, "jwt_issuer": settings.issuer})
    verifier = create_app(alone, "postgresql://unused", service_specs(["intake"]))[VERIFIER]
    assert (await verifier.verify(kept)).client_id == kept_id
    with pytest.raises(Problem) as refused:
        await verifier.verify(token)
    assert refused.value.status == 401


# --- 2. the token endpoint --------------------------------------------------------------------

async def test_an_unknown_client_gets_the_answer_of_a_wrong_secret(client: Client) -> None:
    client_id, _secret = await new_client(client, "ccas", "intake:read")
    wrong = await get_token(client, client_id, "not-the-secret")
    unknown = await get_token(client, f"nobody-{uuid.uuid4().hex[:6]}", "not-the-secret")
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()
    assert wrong.headers.get("WWW-Authenticate") == unknown.headers.get("WWW-Authenticate")


async def test_an_unknown_client_takes_as_long_as_a_wrong_secret(client: Client) -> None:
    client_id, _secret = await new_client(client, "ccas", "intake:read")

    async def timed(who: str) -> float:
        start = time.perf_counter()
        response = await get_token(client, who, "not-the-secret")
        elapsed = time.perf_counter() - start
        assert response.status == 401
        return elapsed

    wrong, unknown = [], []
    for _ in range(5):
        wrong.append(await timed(client_id))
        unknown.append(await timed(f"nobody-{uuid.uuid4().hex[:6]}"))
    assert statistics.median(unknown) >= 0.5 * statistics.median(wrong), (unknown, wrong)


def without_refill(app: web.Application) -> None:
    """The failure buckets keep their size (10 per client id, 30 per address) but no longer
    refill during the test: whether the next try is refused must depend on the count, not on
    how fast this (shared, noisy) machine ran the scrypt checks before it. The refill itself
    is a RateLimiter's, tested with an injected clock in tests/unit/test_ratelimit.py."""
    throttle = app[api.THROTTLE]
    throttle.by_client.rate = throttle.by_address.rate = 1 / 86_400


async def test_repeated_failures_for_a_client_are_throttled(client: Client) -> None:
    without_refill(client.app)
    client_id, secret = await new_client(client, "ccas", "intake:read")
    statuses = [(await get_token(client, client_id, "guess")).status for _ in range(10)]
    assert statuses == [401] * 10
    throttled = await get_token(client, client_id, secret)
    assert throttled.status == 429, "not even the right secret is tried once throttled"
    assert int(throttled.headers["Retry-After"]) >= 1
    assert throttled.content_type == "application/problem+json"
    other_id, other_secret = await new_client(client, "ccas", "intake:read")
    assert (await get_token(client, other_id, other_secret)).status == 200, \
        "another client is not held back by this one's failures"


async def test_repeated_failures_from_one_address_are_throttled(client: Client) -> None:
    without_refill(client.app)
    statuses = [(await get_token(client, f"guess-{n}", "guess")).status for n in range(30)]
    assert statuses == [401] * 30
    client_id, secret = await new_client(client, "ccas", "intake:read")
    throttled = await get_token(client, client_id, secret)
    assert throttled.status == 429
    assert int(throttled.headers["Retry-After"]) >= 1


async def test_behind_a_trusted_proxy_failures_count_per_forwarded_address(
    settings: Settings,
) -> None:
    proxied = settings.model_copy(update={"trusted_proxies": [ip_network("127.0.0.0/8")]})
    assert proxied.database_url
    app = create_app(proxied, proxied.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        without_refill(client.app)

        async def attempt(who: str, secret: str, address: str) -> int:
            response = await client.post(
                "/oauth/token", data={"grant_type": "client_credentials"},
                headers={"Authorization": basic(who, secret),
                         "X-Forwarded-For": f"198.51.100.7, {address}"})
            return response.status

        statuses = [await attempt(f"guess-{n}", "guess", "203.0.113.9") for n in range(30)]
        assert statuses == [401] * 30
        client_id, secret = await new_client(client, "ccas", "intake:read")
        assert await attempt(client_id, secret, "203.0.113.9") == 429
        assert await attempt(client_id, secret, "203.0.113.10") == 200, \
            "others behind the same proxy are not held back"


# --- 3. typ -----------------------------------------------------------------------------------

async def test_a_token_that_is_not_an_access_token_is_refused(client: Client,
                                                              settings: Settings) -> None:
    key = await client.app[KEYS].signing()
    now = int(time.time())
    claims = {"iss": settings.issuer, "aud": settings.jwt_audience, "sub": "dev",
              "client_id": "dev", "org": "ccas", "scope": "intake:read", "iat": now,
              "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    header = {"alg": "Ed25519", "kid": key.kid}
    good = jwt.encode(header | {"typ": "at+jwt"}, claims, key, algorithms=["Ed25519"])
    assert await read_intake(client, good) == 404
    id_token_like = jwt.encode(header | {"typ": "JWT"}, claims, key, algorithms=["Ed25519"])
    assert await read_intake(client, id_token_like) == 401
    untyped = jws.serialize_compact(header, json.dumps(claims).encode(), key,
                                    algorithms=["Ed25519"])
    assert "typ" not in jws.extract_compact(untyped.encode()).headers()
    assert await read_intake(client, untyped) == 401

