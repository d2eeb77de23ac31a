"""Signing in to the console with OpenID Connect, against a real, certified OpenID provider
(panva's oidc-provider, run by Node: tests/oidc/) and real HTTP, without a browser: the
authorization code flow with PKCE to a session, and every refusal (no account, another
organisation, a disabled account, an unverified address, another identity for the same
address, a tampered or replayed state, the person cancelling, a bad nonce, a refused client)
as a French page with no session."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from deploy.kafka.broker import free_port
from services.auth import oidc
from services.auth import store as auth_store
from services.auth.oidc import CALLBACK, FLOW_COOKIE
from services.cli import SERVICE_NAMES, service_specs, user_command
from services.runtime.app import RUNTIME, create_app
from services.runtime.settings import Settings
from tests.integration.conftest import Client
from tests.integration.test_console import ML, invite
from tests.oidc.provider import (
    Provider,
    abort_at_provider,
    browser,
    openid_provider,
    through_provider,
)

CAMILLE = "camille.martin@mission-locale.example.org"
PEOPLE: dict[str, dict[str, Any]] = {
    "camille": {"email": CAMILLE, "email_verified": True, "name": "Camille M.",
                "organisation": ML},
    "inconnu": {"email": "personne@mission-locale.example.org", "email_verified": True,
                "organisation": ML},
    "lou": {"email": "lou@mission-locale.example.org", "email_verified": True,
            "organisation": "france-travail"},
    "sasha": {"email": "sasha@mission-locale.example.org", "email_verified": True,
              "organisation": ML},
    "eden": {"email": "eden@mission-locale.example.org", "email_verified": False,
             "organisation": ML},
    "imposteur": {"email": CAMILLE, "email_verified": True, "organisation": ML},
}
"""The provider's accounts, by login name (their `sub`)."""


@pytest.fixture
def relais_port() -> int:
    return free_port()


@pytest.fixture
def claims_in() -> str:
    """Where the provider gives the person's claims: "userinfo" (its userinfo answer, which
    Relais then reads: the library's default), "signed-userinfo" (the same, as a signed JWT,
    as ProConnect does), or "id-token" (the ID token too)."""
    return "userinfo"


@pytest.fixture
def provider(relais_port: int, tmp_path: Path, claims_in: str) -> Iterator[Provider]:
    redirect = f"http://127.0.0.1:{relais_port}{CALLBACK}"
    with openid_provider(redirect, PEOPLE, tmp_path, id_token_claims=claims_in == "id-token",
                         signed_userinfo=claims_in == "signed-userinfo") as started:
        yield started


@pytest.fixture
def oidc_settings(database: str, tmp_path: Path, provider: Provider,
                  relais_port: int) -> Settings:
    return Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "poll_interval": 0.5,
        "public_url": f"http://127.0.0.1:{relais_port}", **provider.settings()})


@pytest.fixture
async def relais(oidc_settings: Settings, relais_port: int) -> AsyncIterator[Client]:
    assert oidc_settings.database_url
    app = create_app(oidc_settings, oidc_settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1", port=relais_port)) as client:
        yield client


def base(relais: Client) -> str:
    return str(relais.make_url("")).rstrip("/")


async def authorization(http: aiohttp.ClientSession, relais: Client,
                        suite: str = "/orientations") -> str:
    """Click the sign-in page's button: the provider's address Relais sends the browser to."""
    async with http.get(f"{base(relais)}/connexion/oidc?{urlencode({'suite': suite})}",
                        allow_redirects=False) as started:
        assert started.status == 303, await started.text()
        cookie = started.cookies[FLOW_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        assert cookie["path"] == "/connexion/oidc"
        return started.headers["Location"]


async def back_at_relais(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    """Open the callback address: its status, its page, and where it sends to."""
    async with http.get(url, allow_redirects=False) as answer:
        return answer.status, await answer.text(), answer.headers.get("Location", "")


async def sign_in_as(relais: Client, login: str,
                     http: aiohttp.ClientSession) -> tuple[int, str, str]:
    """The whole flow, as the provider's person `login`, in the browser `http`."""
    url = await authorization(http, relais)
    callback = await through_provider(http, url, login, f"{base(relais)}{CALLBACK}")
    return await back_at_relais(http, callback)


async def sessions(relais: Client) -> int:
    count: int = await relais.app[RUNTIME].pool.fetchval("SELECT count(*) FROM auth.sessions")
    return count


@pytest.mark.parametrize("claims_in", ["userinfo", "signed-userinfo", "id-token"])
async def test_a_counsellor_signs_in_with_the_provider(
    relais: Client, provider: Provider, claims_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[dict[str, Any]] = []
    userinfo = oidc.userinfo

    async def counted(*args: Any) -> dict[str, Any]:
        asked.append(await userinfo(*args))
        return asked[-1]

    monkeypatch.setattr(oidc, "userinfo", counted)
    await invite(relais, CAMILLE, ML, name="Camille Martin")  # no password chosen
    page = await (await relais.get("/connexion?suite=%2Forientations")).text()
    assert 'href="/connexion/oidc?suite=/orientations"' in page
    assert "Se connecter avec le compte de votre structure" in page

    async with browser() as http:
        url = await authorization(http, relais)
        query = dict(parse_qsl(urlsplit(url).query))
        assert url.startswith(f"{provider.issuer}/")
        assert query["response_type"] == "code" and query["client_id"] == provider.client_id
        assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
        assert query["state"] and query["nonce"] and "code_verifier" not in query
        assert query["redirect_uri"] == f"{base(relais)}{CALLBACK}"
        callback = await through_provider(http, url, "camille", f"{base(relais)}{CALLBACK}")
        assert "code=" in callback and "iss=" in callback
        async with http.get(callback, allow_redirects=False) as answer:
            assert answer.status == 303, await answer.text()
            assert answer.headers["Location"] == "/orientations"
            cookie = answer.cookies["relais_session"]
            assert cookie["httponly"] and cookie["samesite"] == "Lax"
            assert answer.cookies[FLOW_COOKIE].value == ""  # the flow's cookie is dropped
        async with http.get(f"{base(relais)}/orientations", allow_redirects=False) as inbox:
            html = await inbox.text()
            assert inbox.status == 200, html
            assert "Camille Martin · mission-locale" in html  # the account's name, not the IdP's
        if claims_in == "id-token":
            assert asked == []
        else:
            assert [a["organisation"] for a in asked] == [ML]
            assert ("iss" in asked[0]) == (claims_in == "signed-userinfo")  # a JWT's claims

        replayed = await back_at_relais(http, callback)  # the same code and state again
        assert replayed[0] == 400 and "Connexion expirée" in replayed[1]

    user = await auth_store.user_by_email(relais.app[RUNTIME].pool, CAMILLE)
    assert user is not None
    assert (user["oidc_issuer"], user["oidc_subject"]) == (provider.issuer, "camille")
    assert user["password_hash"] is None
    async with browser() as again:  # a second time, the same identity: in
        status, _, where = await sign_in_as(relais, "camille", again)
        assert (status, where) == (303, "/orientations")
    assert await sessions(relais) == 2


async def test_who_may_not_come_in_is_told_why(relais: Client, provider: Provider,
                                               oidc_settings: Settings) -> None:
    await invite(relais, CAMILLE, ML)
    await invite(relais, "lou@mission-locale.example.org", ML)
    await invite(relais, "sasha@mission-locale.example.org", ML)
    await invite(relais, "eden@mission-locale.example.org", ML)
    await auth_store.disable_user(relais.app[RUNTIME].pool, "sasha@mission-locale.example.org")
    async with browser() as http:
        status, _, _ = await sign_in_as(relais, "camille", http)  # binds the identity
        assert status == 303
    before = await sessions(relais)
    for login, title in (("inconnu", "Pas de compte Relais"), ("lou", "Autre structure"),
                         ("sasha", "Compte désactivé"),
                         ("eden", "Adresse électronique non vérifiée"),
                         ("imposteur", "Compte rattaché à une autre identité")):
        async with browser() as http:
            status, page, _ = await sign_in_as(relais, login, http)
            assert status == 403, (login, page)
            assert title in page and 'lang="fr"' in page, (login, page)
            assert "relais_session" not in {c.key for c in http.cookie_jar}, login
    assert await sessions(relais) == before
    user = await auth_store.user_by_email(relais.app[RUNTIME].pool, CAMILLE)
    assert user is not None and user["oidc_subject"] == "camille"  # not taken over

    # the administrator unbinds it (the person's identity changed at the provider): the
    # next identity presenting the address is bound instead
    unlink = argparse.Namespace(action="unlink-oidc", email=CAMILLE.upper())
    assert await user_command(oidc_settings, unlink) == 0
    async with browser() as http:
        status, _, _ = await sign_in_as(relais, "imposteur", http)
        assert status == 303
    user = await auth_store.user_by_email(relais.app[RUNTIME].pool, CAMILLE)
    assert user is not None and user["oidc_subject"] == "imposteur"
    unknown = argparse.Namespace(action="unlink-oidc", email="personne@example.org")
    assert await user_command(oidc_settings, unknown) == 1


async def test_a_state_tampered_with_or_from_another_browser_opens_nothing(
    relais: Client
) -> None:
    await invite(relais, CAMILLE, ML)
    callback_base = f"{base(relais)}{CALLBACK}"
    async with browser() as http, browser() as other:
        url = await authorization(http, relais)
        callback = await through_provider(http, url, "camille", callback_base)
        params = dict(parse_qsl(urlsplit(callback).query))
        tampered = f"{callback_base}?{urlencode(params | {'state': params['state'] + 'x'})}"
        status, page, _ = await back_at_relais(http, tampered)
        assert status == 400 and "Connexion expirée" in page
        status, page, _ = await back_at_relais(other, callback)  # sent to someone else
        assert status == 400 and "Connexion expirée" in page
        none = f"{callback_base}?{urlencode({k: v for k, v in params.items() if k != 'state'})}"
        assert (await back_at_relais(http, none))[0] == 400
        assert await sessions(relais) == 0
        status, _, where = await back_at_relais(http, callback)  # still good for its browser
        assert (status, where) == (303, "/orientations")


async def test_the_provider_s_refusals_and_failures_are_pages(
    relais: Client, provider: Provider
) -> None:
    await invite(relais, CAMILLE, ML)
    callback_base = f"{base(relais)}{CALLBACK}"
    async with browser() as http:  # the person cancels at the provider
        url = await authorization(http, relais)
        callback = await abort_at_provider(http, url, callback_base)
        assert "error=access_denied" in callback
        status, page, _ = await back_at_relais(http, callback)
        assert status == 403 and "Connexion annulée" in page

    async with browser() as http:  # the ID token's nonce is not the flow's
        url = await authorization(http, relais)
        await relais.app[RUNTIME].pool.execute("UPDATE auth.oidc_flows SET nonce = 'autre'")
        callback = await through_provider(http, url, "camille", callback_base)
        status, page, _ = await back_at_relais(http, callback)
        assert status == 502 and "n&#39;a pas pu être vérifiée" in page

    settings = relais.app[RUNTIME].settings
    async with browser() as http:  # the provider refuses Relais's client secret
        url = await authorization(http, relais)
        callback = await through_provider(http, url, "camille", callback_base)
        settings.oidc_client_secret = "pas le bon secret"
        try:
            status, page, _ = await back_at_relais(http, callback)
        finally:
            settings.oidc_client_secret = provider.client_secret
        assert status == 502 and "Connexion impossible" in page

    async with browser() as http:  # the provider does not answer
        settings.oidc_issuer = f"http://127.0.0.1:{free_port()}"
        try:
            async with http.get(f"{base(relais)}/connexion/oidc", allow_redirects=False) as a:
                assert a.status == 502 and "Service de connexion injoignable" in await a.text()
        finally:
            settings.oidc_issuer = provider.issuer
    assert await sessions(relais) == 0
    user = await auth_store.user_by_email(relais.app[RUNTIME].pool, CAMILLE)
    assert user is not None and user["oidc_subject"] is None  # nothing half-written


async def test_without_a_provider_the_routes_lead_to_the_password_form(
    client: Client
) -> None:
    page = await (await client.get("/connexion")).text()
    assert "/connexion/oidc" not in page and "fr-hr-or" not in page
    for path in ("/connexion/oidc", f"{CALLBACK}?state=x&code=y"):
        answer = await client.get(path, allow_redirects=False)
        assert answer.status == 303 and answer.headers["Location"] == "/connexion"



async def test_sign_ins_started_from_one_address_are_limited(
    relais: Client, provider: Provider
) -> None:
    """Each start writes a row (kept 10 minutes): one address starts a few, not thousands."""
    statuses = []
    async with browser() as http:
        for _ in range(oidc.STARTS_BURST + 20):
            async with http.get(f"{base(relais)}/connexion/oidc", allow_redirects=False) as r:
                statuses.append(r.status)
                if r.status == 429:
                    assert "Trop de connexions commencées" in await r.text()
    # the burst goes through; then refused (a start every 2 s may come back meanwhile: the
    # 20 more would have to take 40 s for none to be refused)
    assert statuses[:oidc.STARTS_BURST] == [303] * oidc.STARTS_BURST
    assert 429 in statuses
    rows = await relais.app[RUNTIME].pool.fetchval("SELECT count(*) FROM auth.oidc_flows")
    assert rows == statuses.count(303), "a refused start writes nothing"
