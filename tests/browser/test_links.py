"""A partner without an account, in Chromium: the magic link from the email the test's SMTP
server received opens the referral, its dossier and the answers; the same link forwarded to
another browser, or altered, shows a French page and no data."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, expect

from services.auth.api import KEYS
from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, open_page, watch_errors
from tests.browser.test_console import check
from tests.conftest import Mailbox
from tests.e2e.conftest import Tokens
from tests.integration.test_console import handed_off
from tests.integration.test_links import link_for, settings  # noqa: F401 (the fixture)


async def test_a_partner_answers_from_the_emailed_link(
        browser: Browser, settings: Settings,  # noqa: F811 (the fixture)
        smtp_server: Mailbox) -> None:
    assert settings.database_url
    app = create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))
    async with TestClient(TestServer(app, host="127.0.0.1")) as api:
        url = str(api.make_url("")).rstrip("/")
        tokens = Tokens(await app[KEYS].signing(), settings)
        referral = await handed_off(api, tokens)
        link = url + await link_for(smtp_server, referral)

        async with open_page(browser) as page:
            errors = watch_errors(page)
            await page.goto(link)
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Ouvrir l'orientation")
            await check(page, "lien-ouvrir", errors)
            await page.get_by_role("button", name="Ouvrir l'orientation").click()
            await expect(page).to_have_url(f"{url}/orientations/{referral}")
            await expect(page.get_by_role("heading", level=1)).to_contain_text("Mission locale")
            await expect(page.get_by_text("Accès par le lien de l'e-mail").first).to_be_visible()
            await expect(page.get_by_text("Léa")).to_have_count(0)
            await check(page, "lien-orientation", errors)
            await page.get_by_role("button", name="Consulter le dossier").click()
            await expect(page.get_by_text("Téléphone : 06 12 34 56 78")).to_be_visible()
            await page.get_by_role("button", name="Accepter").click()
            await expect(page.get_by_text("Acceptée").first).to_be_visible()
            await expect(page.get_by_text(
                "Par accueil@mission-locale.example.org (mission-locale)").first).to_be_visible()

        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as forwarded:
            errors = watch_errors(forwarded)
            await forwarded.goto(link)
            await forwarded.get_by_role("button", name="Ouvrir l'orientation").click()
            await expect(forwarded.get_by_role("heading", level=1)).to_have_text(
                "Lien déjà ouvert sur un autre appareil")
            await expect(forwarded.get_by_text("Léa")).to_have_count(0)
            await check(forwarded, "lien-refuse", [e for e in errors if "403" not in e])
            await forwarded.goto(link[:-4] + "AAAA")
            await expect(forwarded.get_by_role("heading", level=1)).to_have_text(
                "Lien non valable")
            await forwarded.goto(f"{url}/orientations/{referral}")
            await expect(forwarded.get_by_role("heading", level=1)).to_have_text(
                "Se connecter à Relais")
