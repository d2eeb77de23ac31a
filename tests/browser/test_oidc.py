"""Signing in with OpenID Connect in Chromium: the sign-in page's ProConnect button (the DSFR's
own, under the pages' CSP), the real provider's sign-in and consent pages (panva's
oidc-provider, tests/oidc/), back to the first page; and a refusal said in French. axe-core on
Relais's pages; the screenshot goes to docs/screens/connexion-oidc.png."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect

from deploy.kafka.broker import free_port
from services.auth.oidc import CALLBACK
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.browser.conftest import axe, open_page, screenshot, watch_errors
from tests.integration.conftest import Client
from tests.integration.test_console import ML, invite
from tests.integration.test_oidc import CAMILLE, PEOPLE
from tests.oidc.provider import Provider, openid_provider


@pytest.fixture
def relais_port() -> int:
    return free_port()


@pytest.fixture
def provider(relais_port: int, tmp_path: Path) -> Iterator[Provider]:
    with openid_provider(f"http://127.0.0.1:{relais_port}{CALLBACK}", PEOPLE,
                         tmp_path) as started:
        yield started


@pytest.fixture
async def relais(database: str, tmp_path: Path, provider: Provider,
                 relais_port: int) -> AsyncIterator[Client]:
    settings = Settings.model_validate({
        "data_dir": tmp_path, "database_url": database, "oidc_name": "ProConnect",
        "public_url": f"http://127.0.0.1:{relais_port}", **provider.settings()})
    app = create_app(settings, database, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1", port=relais_port)) as client:
        yield client


async def no_violation(page: Page, errors: list[str]) -> None:
    violations = await axe(page)
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]])
                              for v in violations]
    assert errors == []


async def at_the_provider(page: Page, login: str) -> None:
    """The provider's own pages (its development sign-in: any password)."""
    await page.locator("input[name=login]").fill(login)
    await page.locator("input[name=password]").fill("peu importe")
    await page.get_by_role("button", name="Sign-in").click()
    await page.get_by_role("button", name="Continue").click()


async def test_a_counsellor_signs_in_with_proconnect_in_the_browser(
    browser: Browser, relais: Client
) -> None:
    live = str(relais.make_url("")).rstrip("/")
    await invite(relais, CAMILLE, ML, name="Camille Martin")
    async with open_page(browser) as page:
        errors = watch_errors(page)
        await page.goto(f"{live}/orientations")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Se connecter à Relais")
        proconnect = page.get_by_role("link", name="S’identifier avec ProConnect")
        await expect(proconnect).to_be_visible()
        await expect(page.get_by_label("Adresse électronique")).to_be_visible()  # still there
        await no_violation(page, errors)
        await screenshot(page, "connexion-oidc")
        await proconnect.click()

        await at_the_provider(page, "camille")  # its pages load fonts from the Internet:
        await expect(page.get_by_role("heading", level=1)).to_have_text("Orientations reçues")
        errors.clear()  # what failed there is not Relais's
        await expect(page.get_by_text("Camille Martin · mission-locale").first).to_be_visible()
        await no_violation(page, errors)

    async with open_page(browser) as page:
        errors = watch_errors(page)
        await page.goto(f"{live}/connexion")
        await page.get_by_role("link", name="S’identifier avec ProConnect").click()
        await at_the_provider(page, "inconnu")
        await expect(page.get_by_role("heading", level=1)).to_have_text("Pas de compte Relais")
        errors.clear()
        await expect(page.get_by_text("Aucun compte Relais n'est ouvert pour l'adresse "
                                      "personne@mission-locale.example.org")).to_be_visible()
        await no_violation(page, errors)
        assert "relais_session" not in {c["name"] for c in await page.context.cookies()}
