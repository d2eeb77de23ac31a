"""Rectification (GDPR art. 16) from the audit page in Chromium, as the data-protection
officer on a tablet: open the person's identity, type a wrong phone number (said next to the
field, what was typed kept), correct it and the name, see the confirmation; axe-core finds no
serious violation, no console error, and screenshots (docs/screens/rectification*.png)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, expect

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.browser.conftest import open_page, watch_errors
from tests.browser.test_audit import EMAIL, check, sign_in
from tests.e2e.conftest import Tokens
from tests.integration.test_console import PASSWORD, invite
from tests.integration.test_rectification_pages import identity_of, met


async def test_the_officer_corrects_an_identity_in_the_browser(
        browser: Browser, relais_app: web.Application, settings: Settings) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        tokens = Tokens(await relais_app[KEYS].signing(), settings)
        person = await met(api, tokens)
        token = await invite(api, EMAIL, "coordination", "dpo", "Dominique Petit")
        done = await api.post(f"/invitation/{token}", data={
            "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
        assert done.status == 303

        async with open_page(browser) as page:
            errors = watch_errors(page)
            await sign_in(page, live_server, f"/audit?personne={person}")
            await page.get_by_role("link", name="Corriger l'identité").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Corriger l'identité de la personne")
            await expect(page.get_by_label("Prénom")).to_have_value("Léa")
            await expect(page.get_by_label("Date de naissance")).to_have_value("02/04/2006")
            phone = page.get_by_label("Téléphone")
            await expect(phone).to_have_value("06 12 34 56 78")
            await check(page, errors, "rectification")

            await page.locator("#nom").fill("Martin-Dubois")
            await phone.fill("06 12 AB")
            await page.get_by_role("button", name="Enregistrer la correction").click()
            await expect(page.locator("#telephone-messages")).to_contain_text(
                "Un numéro de téléphone : des chiffres")
            await expect(phone).to_have_value("06 12 AB")
            await expect(page.locator("#nom")).to_have_value("Martin-Dubois")
            # the page answers 422, which Chromium reports, as it does any 4xx document
            assert [e for e in errors if "status of 422" not in e] == [] and len(errors) == 1
            errors.clear()
            await check(page, errors, "rectification-erreur")

            await phone.fill("07 98 76 54 32")
            await page.get_by_label("Adresse électronique").fill("")
            await page.get_by_role("button", name="Enregistrer la correction").click()
            await expect(page.get_by_role("status")).to_contain_text(
                "Identité corrigée : courriel, nom, téléphone")
            await expect(page.get_by_role("status")).to_be_in_viewport()
            assert page.url.endswith(f"/audit?personne={person}&corrige=email,last_name,phone"
                                     "#droits")
            await check(page, errors)
        assert await identity_of(api, tokens, person) == {
            "first_name": "Léa", "last_name": "Martin-Dubois", "birth_date": "2006-04-02",
            "phone": "07 98 76 54 32", "email": None}
