"""The coordination's directory and notification pages in Chromium: reached from the
coordination page, read and filled with the keyboard alone, an error said next to its field,
a webhook added and stopped; axe-core on every page, and the screenshots of the guide
(docs/guide.md, section 7)."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import axe, open_page, watch_errors
from tests.browser.test_console import check, sign_in
from tests.integration.test_console import PASSWORD, invite

EMAIL = "claire@coordination.example.org"
ML = "Mission locale du Grand Amiénois"


async def no_violations(page: Page) -> None:
    violations = await axe(page)
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]])
                              for v in violations]


async def tab_to(page: Page, name: str, limit: int = 30) -> None:
    """Press Tab until the control called `name` has the focus."""
    for _ in range(limit):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "document.activeElement && (document.activeElement.innerText || "
            "document.activeElement.labels?.[0]?.innerText || '')")
        if name in focused:
            return
    raise AssertionError(f"{name!r} never got the focus")


async def test_the_coordination_reads_the_directory_and_sets_notifications(
    browser: Browser, relais_app: web.Application
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        token = await invite(api, EMAIL, org="coordination", role="coordinator",
                             name="Claire Dubois")
        await api.post(f"/invitation/{token}", data={"password": PASSWORD,
                                                     "confirmation": PASSWORD})
        async with open_page(browser) as page:
            errors = watch_errors(page)
            await sign_in(page, f"{live_server}/coordination", EMAIL)
            await page.get_by_role("link", name=re.compile("^Annuaire du territoire")).click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Annuaire du territoire")
            etouvie = page.get_by_role("row", name=re.compile("Étouvie, place du marché"))
            await expect(etouvie).to_contain_text("mardi 9 h 30 – 12 h 30")
            await expect(etouvie).to_contain_text("Mobile (camion)")
            centre = page.get_by_role("row", name=re.compile("Centre social Nord"))
            await expect(centre).to_contain_text("lundi 14 h – 17 h")
            await expect(centre).to_contain_text("jeudi 14 h – 17 h")
            await check(page, "annuaire", errors)

            # the keyboard alone, from the directory's link to the saved settings
            link = page.get_by_role("link", name=f"Réglages des notifications de {ML}")
            await link.focus()
            await page.keyboard.press("Enter")
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                f"Notifications de {ML}")
            await no_violations(page)
            await tab_to(page, "Adresse de l'équipe")
            await page.keyboard.press("Control+A")
            await page.keyboard.type("equipe-ml")
            await page.keyboard.press("Enter")  # submits the form: refused, said in place
            email = page.get_by_label("Adresse de l'équipe")
            await expect(email).to_have_attribute("aria-invalid", "true")
            await expect(page.locator("#email-erreur")).to_have_text(
                "Saisissez une adresse électronique valide, par exemple accueil@structure.fr.")
            await no_violations(page)
            errors[:] = [e for e in errors if "status of 422" not in e]

            await email.focus()
            await page.keyboard.press("Control+A")
            await page.keyboard.type("equipe@mission-locale.example.org")
            await page.keyboard.press("Tab")
            await expect(page.get_by_label("Adresses des conseillers et conseillères")) \
                .to_be_focused()
            await page.keyboard.type("camille.martin@mission-locale.example.org")
            await tab_to(page, "Rappel : orientation sans réponse")
            await page.keyboard.press("Space")
            await tab_to(page, "Enregistrer les réglages")
            await page.keyboard.press("Enter")
            await expect(page.get_by_text("Réglages des notifications enregistrés")) \
                .to_be_visible()
            await expect(page.get_by_label("Adresse de l'équipe")).to_have_value(
                "equipe@mission-locale.example.org")
            await expect(page.get_by_label("Rappel : orientation sans réponse")).to_be_checked()
            await check(page, "notifications-structure", errors)

            # the coordination's own webhooks: added (the secret once), then stopped
            await page.goto(f"{live_server}/coordination")
            await page.get_by_role("link", name="Notifications et webhooks de la coordination") \
                .click()
            await page.get_by_label("Adresse web qui reçoit les messages").fill(
                "http://192.168.1.20/relais")
            await page.get_by_role("button", name="Ajouter le webhook").click()
            await expect(page.locator("#url-erreur")).to_contain_text(
                "« 192.168.1.20 » mène à une adresse privée")
            await no_violations(page)
            await page.get_by_label("Adresse web qui reçoit les messages").fill(
                "https://93.184.215.14/relais")
            await page.get_by_role("group", name=re.compile("^Messages à envoyer")) \
                .get_by_text("Orientation sans réponse après le délai").click()  # its label
            await page.get_by_role("button", name="Ajouter le webhook").click()
            await expect(page.get_by_label("Clé secrète du webhook")).to_have_value(
                re.compile("^whsec_"))
            await no_violations(page)
            await page.get_by_role(
                "button", name="Désactiver le webhook https://93.184.215.14/relais").click()
            await expect(page.get_by_text("Webhook désactivé")).to_be_visible()
            await expect(page.get_by_label("Clé secrète du webhook")).to_have_count(0)
            await no_violations(page)
            assert [e for e in errors if "status of 422" not in e] == []
