"""The second factor in Chromium, as a counsellor would switch it on: "Mon compte", the QR code
and the key, a code from the app (computed here from the key the page shows), then signing in
again with the password and a code; axe-core on each page and screenshots for the guide."""

from __future__ import annotations

import base64
import time

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, expect

from services.auth import totp
from tests.browser.conftest import axe, open_page, watch_errors
from tests.browser.test_console import check, sign_in
from tests.integration.test_console import PASSWORD, account

EMAIL = "camille.martin@mission-locale.example.org"


def code_at(secret: bytes, step: int) -> str:
    return totp.hotp(secret, step)


async def test_a_counsellor_switches_on_the_second_factor_in_the_browser(
    browser: Browser, relais_app: web.Application
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        await account(api, EMAIL)
        async with open_page(browser) as page:
            errors = watch_errors(page)
            await sign_in(page, f"{live_server}/orientations", EMAIL)
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Orientations reçues")
            await page.get_by_role("link", name="Mon compte").click()

            await expect(page.get_by_role("heading", level=1)).to_have_text("Mon compte")
            qr = page.get_by_role("img", name="QR code à scanner avec votre application "
                                               "d'authentification")
            await expect(qr).to_be_visible()
            assert await qr.evaluate("img => img.complete && img.naturalWidth > 100")
            key = (await page.locator("#cle").inner_text()).replace(" ", "")
            secret = base64.b32decode(key + "=" * (-len(key) % 8))
            await check(page, "double-authentification", errors)

            enrolled = totp.time_step(time.time())
            await page.get_by_label("Votre mot de passe Relais").fill(PASSWORD)
            await page.get_by_label("Code à 6 chiffres affiché par l'application").fill(
                code_at(secret, enrolled))
            await page.get_by_role("button", name="Activer la double authentification").click()
            await expect(page.get_by_text("La double authentification est activée")) \
                .to_be_visible()
            await expect(page.get_by_text("Activée", exact=True)).to_be_visible()

            await page.get_by_role("button", name="Se déconnecter").click()
            await expect(page.get_by_text("Vous êtes déconnecté")).to_be_visible()
            await page.get_by_label("Adresse électronique").fill(EMAIL)
            await page.get_by_label("Mot de passe").fill(PASSWORD)
            await page.get_by_role("button", name="Se connecter").click()

            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Saisir le code de connexion")
            field = page.get_by_label("Code à 6 chiffres")
            await expect(field).to_have_attribute("autocomplete", "one-time-code")
            await expect(field).to_have_attribute("inputmode", "numeric")
            await expect(field).to_be_focused()
            await check(page, "connexion-code", errors)

            await field.fill("000000" if code_at(secret, enrolled) != "000000" else "111111")
            await page.get_by_role("button", name="Valider le code").click()
            await expect(page.get_by_text("Code incorrect ou expiré")).to_be_visible()
            await expect(page.get_by_label("Code à 6 chiffres")).to_have_attribute(
                "aria-invalid", "true")
            assert await axe(page) == []
            assert [e for e in errors if "status of 401" not in e] == []  # the refusal's
            errors.clear()

            fresh = max(totp.time_step(time.time()), enrolled + 1)  # a code serves once
            await page.get_by_label("Code à 6 chiffres").fill(code_at(secret, fresh))
            await page.get_by_role("button", name="Valider le code").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Orientations reçues")
            assert errors == []
