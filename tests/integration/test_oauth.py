"""The OAuth2 authorization server over real HTTP: client credentials (basic and post),
scopes, revocation, RFC 8414 metadata, JWKS, key rotation without downtime, and a service
that trusts an external identity provider's JWKS."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from joserfc import jwt
from joserfc.jwk import OKPKey

from deploy.kafka.broker import free_port
from services.auth import domain, keys, store
from services.cli import service_specs
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.integration.conftest import Client


async def new_client(client: Client, org: str, scopes: str) -> tuple[str, str]:
    client_id, secret = f"{org}-{uuid.uuid4().hex[:6]}", domain.new_secret()
    await store.insert_client(client.app[RUNTIME].pool, client_id, domain.hash_secret(secret),
                              org, "test", scopes.split())
    return client_id, secret


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def get_token(client: Client, client_id: str, secret: str, how: str = "basic",
                    **form: str) -> aiohttp.ClientResponse:
    data = {"grant_type": "client_credentials", **form}
    if how == "basic":
        return await client.post("/oauth/token", data=data,
                                 headers={"Authorization": basic(client_id, secret)})
    return await client.post("/oauth/token",
                             data=data | {"client_id": client_id, "client_secret": secret})


async def read_intake(client: Client, token: str) -> int:
    response = await client.get(f"/v1/intakes/{uuid.uuid4()}",
                                headers={"Authorization": f"Bearer {token}"})
    return response.status


@pytest.mark.parametrize("how", ["basic", "post"])
async def test_a_client_gets_a_token_that_every_service_accepts(client: Client,
                                                                how: str) -> None:
    client_id, secret = await new_client(client, "ccas", "intake:read consent:read")
    response = await get_token(client, client_id, secret, how)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert set(body["scope"].split()) == {"intake:read", "consent:read"}
    assert response.headers["Cache-Control"] == "no-store"
    header = jwt.decode(body["access_token"], await client.app[keys_key()].signing(),
                        algorithms=["EdDSA"]).header
    assert header["alg"] == "EdDSA" and header["kid"]
    assert await read_intake(client, body["access_token"]) == 404  # authenticated: not found


def keys_key() -> web.AppKey[keys.SigningKeys]:
    from services.auth.api import KEYS

    return KEYS


async def test_a_token_carries_only_the_scopes_asked_for(client: Client) -> None:
    client_id, secret = await new_client(client, "ccas", "intake:read consent:read")
    body = await (await get_token(client, client_id, secret, scope="consent:read")).json()
    assert body["scope"] == "consent:read"
    assert await read_intake(client, body["access_token"]) == 403


async def test_the_token_endpoint_refuses_what_it_must(client: Client) -> None:
    client_id, secret = await new_client(client, "ccas", "intake:read")
    wrong = await get_token(client, client_id, "not-the-secret")
    assert wrong.status == 401
    assert (await wrong.json())["error"] == "invalid_client"
    unknown = await get_token(client, "nobody", secret, how="post")
    assert (await unknown.json())["error"] == "invalid_client"
    bad_scope = await get_token(client, client_id, secret, scope="audit:everything")
    assert bad_scope.status == 400
    assert (await bad_scope.json())["error"] == "invalid_scope"
    bad_grant = await client.post("/oauth/token", data={"grant_type": "password"},
                                  headers={"Authorization": basic(client_id, secret)})
    assert (await bad_grant.json())["error"] == "unsupported_grant_type"

    await store.revoke_client(client.app[RUNTIME].pool, client_id)
    revoked = await get_token(client, client_id, secret)
    assert revoked.status == 401


async def test_metadata_and_jwks_are_published(client: Client, settings: Settings) -> None:
    meta = await (await client.get("/.well-known/oauth-authorization-server")).json()
    assert meta["issuer"] == settings.issuer
    assert meta["token_endpoint"].endswith("/oauth/token")
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"client_secret_basic",
                                                                 "client_secret_post"}
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    [key] = jwks["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519" and "d" not in key


async def test_keys_rotate_without_downtime(client: Client) -> None:
    client_id, secret = await new_client(client, "ccas", "intake:read")
    before = (await (await get_token(client, client_id, secret)).json())["access_token"]
    runtime = client.app[RUNTIME]
    await keys.rotate(runtime.pool, runtime.keyring())
    await client.app[keys_key()].signing()  # the in-process cache would refresh within 30 s
    client.app[keys_key()]._loaded_at = -1e9
    after = (await (await get_token(client, client_id, secret)).json())["access_token"]
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    assert len(jwks["keys"]) == 2, "the old key stays published until its tokens expire"
    assert await read_intake(client, before) == 404
    assert await read_intake(client, after) == 404


async def test_a_service_can_trust_an_external_identity_provider(database: str,
                                                                 tmp_path: Path) -> None:
    idp_key = OKPKey.generate_key("Ed25519", parameters={"kid": "idp-1"})
    idp = web.Application()
    async def serve_jwks(_request: web.Request) -> web.Response:
        return web.json_response({"keys": [idp_key.as_dict(private=False)]})

    idp.router.add_get("/jwks", serve_jwks)
    runner = web.AppRunner(idp)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = Settings.model_validate({
            "data_dir": tmp_path, "database_url": database, "jwt_issuer": "https://idp.example",
            "jwks_url": f"http://127.0.0.1:{port}/jwks", "jwt_audience": "relais",
        })
        app = create_app(settings, database, service_specs(["intake"]))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            now = int(time.time())
            claims = {"iss": "https://idp.example", "aud": "relais", "sub": "svc", "org": "ccas",
                      "scope": "intake:read", "exp": now + 60, "nbf": now}
            header = {"alg": "Ed25519", "kid": "idp-1", "typ": "at+jwt"}  # RFC 9068
            good = jwt.encode(header, claims, idp_key,
                              algorithms=["Ed25519"])
            other = OKPKey.generate_key("Ed25519", parameters={"kid": "idp-1"})
            forged = jwt.encode(header, claims, other,
                                algorithms=["Ed25519"])
            assert await read_intake(client, good) == 404
            assert await read_intake(client, forged) == 401
    finally:
        await runner.cleanup()


async def test_a_valid_token_meets_503_not_401_while_the_keys_cannot_be_read(
        database: str, tmp_path: Path) -> None:
    """A service in its own process that restarts while the auth service (or its database)
    is away cannot read the JWKS: the partner's token is not called invalid (401), the call
    is 503 with Retry-After, and the same token works as soon as the keys can be read again
    (found by bench/faults.py: 401 'signed by an unknown key' after a restart)."""
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "auth-1"})
    away = True
    issuer = web.Application()

    async def serve_jwks(_request: web.Request) -> web.Response:
        if away:
            return web.json_response({"title": "Service Unavailable"}, status=503)
        return web.json_response({"keys": [key.as_dict(private=False)]})

    issuer.router.add_get("/jwks", serve_jwks)
    runner = web.AppRunner(issuer)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = Settings.model_validate({
            "data_dir": tmp_path, "database_url": database, "jwt_issuer": "https://idp.example",
            "jwks_url": f"http://127.0.0.1:{port}/jwks", "jwt_audience": "relais"})
        app = create_app(settings, database, service_specs(["intake"]))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            now = int(time.time())
            token = jwt.encode({"alg": "EdDSA", "kid": "auth-1", "typ": "at+jwt"}, {
                "iss": "https://idp.example", "aud": "relais", "sub": "svc", "org": "ccas",
                "scope": "intake:read", "exp": now + 60, "nbf": now}, key, algorithms=["EdDSA"])
            response = await client.get(f"/v1/intakes/{uuid.uuid4()}",
                                        headers={"Authorization": f"Bearer {token}"})
            assert response.status == 503, await response.text()
            assert response.headers["Retry-After"] == "2"
            assert response.content_type == "application/problem+json"
            assert await read_intake(client, token) == 503  # asked again within the second
            away = False
            started = time.monotonic()
            while await read_intake(client, token) == 503:
                assert time.monotonic() - started < 3, "the keys are fetched again within 1 s"
                await asyncio.sleep(0.1)
            assert await read_intake(client, token) == 404  # authenticated; no such intake
    finally:
        await runner.cleanup()


async def test_calls_that_arrive_together_at_a_fresh_start_all_wait_for_the_keys(
        database: str, tmp_path: Path) -> None:
    """The first calls after a service starts arrive together: all wait for the one JWKS
    fetch under way (before, the second call took the fetch as done and answered 401
    'signed by an unknown key': found by bench/faults.py after restarts)."""
    key = OKPKey.generate_key("Ed25519", parameters={"kid": "auth-1"})
    issuer = web.Application()

    async def serve_jwks(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)  # an auth service busy at its own start
        return web.json_response({"keys": [key.as_dict(private=False)]})

    issuer.router.add_get("/jwks", serve_jwks)
    runner = web.AppRunner(issuer)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = Settings.model_validate({
            "data_dir": tmp_path, "database_url": database, "jwt_issuer": "https://idp.example",
            "jwks_url": f"http://127.0.0.1:{port}/jwks", "jwt_audience": "relais"})
        app = create_app(settings, database, service_specs(["intake"]))
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            now = int(time.time())
            token = jwt.encode({"alg": "EdDSA", "kid": "auth-1", "typ": "at+jwt"}, {
                "iss": "https://idp.example", "aud": "relais", "sub": "svc", "org": "ccas",
                "scope": "intake:read", "exp": now + 60, "nbf": now}, key, algorithms=["EdDSA"])
            statuses = await asyncio.gather(*(read_intake(client, token) for _ in range(5)))
            assert statuses == [404] * 5  # authenticated, no such intake
    finally:
        await runner.cleanup()
