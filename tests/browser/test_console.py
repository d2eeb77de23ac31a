"""The console in Chromium, as a partner counsellor who never saw it: choose a password from
the invitation link, sign in, find the new referral, read the dossier, answer up to the
outcome; with axe-core on every page and screenshots for the guide (docs/guide.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, axe, open_page, screenshot, watch_errors
from tests.e2e.conftest import Tokens
from tests.integration.test_console import (
    PASSWORD,
    account,
    commission_referral,
    handed_off,
    invite,
)


async def sign_in(page: Page, url: str, email: str) -> None:
    """Open `url`: the sign-in page comes first, then the page asked for."""
    await page.goto(url)
    await page.get_by_label("Adresse électronique").fill(email)
    await page.get_by_label("Mot de passe").fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()


async def check(page: Page, name: str, errors: list[str]) -> None:
    """No serious or critical accessibility violation, no console error; a screenshot."""
    violations = await axe(page)
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]])
                              for v in violations]
    assert errors == []
    await screenshot(page, name)


async def test_a_counsellor_answers_a_referral_in_the_browser(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        tokens = Tokens(await relais_app[KEYS].signing(), settings)
        invitation = await invite(api, "camille.martin@mission-locale.example.org")
        # the outreach team hands a person off through the API while the inbox is open
        await journey(browser, live_server, lambda: handed_off(api, tokens), invitation)


async def journey(browser: Browser, live_server: str,
                  hand_off: Callable[[], Awaitable[str]], invitation: str) -> None:

    async with open_page(browser) as page:
        errors = watch_errors(page)
        await page.goto(f"{live_server}/invitation/{invitation}")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("Camille Martin")
        await check(page, "invitation", errors)
        await page.get_by_label("Mot de passe", exact=False).first.fill(PASSWORD)
        await page.get_by_label("Le même mot de passe").fill(PASSWORD)
        await page.get_by_role("button", name="Enregistrer mon mot de passe").click()

        await expect(page.get_by_text("Votre mot de passe est enregistré")).to_be_visible()
        await page.get_by_label("Adresse électronique").fill(
            "camille.martin@mission-locale.example.org")
        await page.get_by_label("Mot de passe").fill(PASSWORD)
        await check(page, "connexion", errors)
        await page.get_by_role("button", name="Se connecter").click()

        await expect(page.get_by_role("heading", level=1)).to_have_text("Orientations reçues")
        await expect(page.get_by_text("Aucune orientation pour le moment")).to_be_visible()
        referral_id = await hand_off()
        card = page.get_by_role("link", name="besoin emploi, 18-25 ans, commune 80021")
        await expect(card).to_be_visible(timeout=20_000)  # live: nobody reloaded the page
        await expect(page.get_by_role("status")).to_have_text(
            "Une nouvelle orientation vient d'arriver : la liste est à jour.")
        await check(page, "orientations-recues", errors)
        await card.click()

        await expect(page.get_by_role("heading", level=1)).to_contain_text("Mission locale")
        await expect(page.get_by_text("Léa")).to_have_count(0)
        await page.get_by_role("button", name="Consulter le dossier").click()
        await expect(page.get_by_text("Téléphone : 06 12 34 56 78")).to_be_visible()
        await check(page, "orientation-dossier", errors)

        await page.get_by_role("button", name="Accepter").click()
        await expect(page.get_by_text("Acceptée").first).to_be_visible()
        await page.get_by_label("Ce qui a commencé").select_option("first_appointment")
        await page.get_by_role("button", name="Premier rendez-vous tenu").click()
        await page.get_by_label("Résultat de l'accompagnement").select_option(
            "contrat_engagement_jeune")
        await page.get_by_role("button", name="Terminer l'accompagnement").click()
        await expect(page.get_by_text("Terminée").first).to_be_visible()
        await expect(page.get_by_text("Par Camille Martin (mission-locale)").first) \
            .to_be_visible()
        await check(page, "orientation-terminee", errors)

        # keyboard alone: the skip link first, then the content
        await page.goto(f"{live_server}/orientations")
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Aller au contenu")).to_be_focused()
        await page.keyboard.press("Enter")
        for _ in range(3):  # the filter, its button, then the first referral
            await page.keyboard.press("Tab")
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(f"{live_server}/orientations/{referral_id}")

    async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as phone:
        errors = watch_errors(phone)
        await phone.goto(f"{live_server}/orientations/{referral_id}")
        await expect(phone.get_by_role("heading", level=1)).to_have_text(
            "Se connecter à Relais")
        await phone.get_by_label("Adresse électronique").fill(
            "camille.martin@mission-locale.example.org")
        await phone.get_by_label("Mot de passe").fill(PASSWORD)
        await phone.get_by_role("button", name="Se connecter").click()
        await expect(phone.get_by_role("heading", level=1)).to_contain_text("Mission locale")
        width = await phone.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
        await check(phone, "orientation-telephone", errors)



async def test_the_outreach_team_follows_its_referrals_in_the_browser(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        tokens = Tokens(await relais_app[KEYS].signing(), settings)
        referral_id = await handed_off(api, tokens)
        await api.post(f"/v1/referrals/{referral_id}/reject", json={"reason": "no_place"},
                       headers=tokens.headers("mission-locale", "referral:write"))
        await account(api, "nadia@camion.example.org", org="equipe-aller-vers",
                      name="Nadia Benali")
        async with open_page(browser) as page:
            errors = watch_errors(page)
            await sign_in(page, f"{live_server}/orientations/envoyees", "nadia@camion.example.org")
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Orientations envoyées")
            await expect(page.get_by_text("Motif : Plus de place disponible")).to_be_visible()
            await check(page, "orientations-envoyees", errors)


async def test_a_member_decides_in_commission_in_the_browser(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        await commission_referral(api, Tokens(await relais_app[KEYS].signing(), settings))
        await account(api, "ines@ml.example.org", name="Inès Robert")
        async with open_page(browser) as page:
            errors = watch_errors(page)
            await sign_in(page, f"{live_server}/commission", "ines@ml.example.org")
            await expect(page.get_by_text("1 orientation")).to_be_visible()
            await check(page, "commission", errors)
            await page.get_by_role("button", name="Ouvrir la séance").click()
            await expect(page.get_by_role("heading", level=1)).to_contain_text("Séance du")
            await page.get_by_label("Décision", exact=True).select_option("refer_partner")
            await page.get_by_label("Partenaire (pour une orientation)").select_option(
                "mission-locale")
            await page.get_by_label("La décision, telle qu'au compte rendu").fill(
                "Orientation vers la Mission locale pour un contrat d'engagement jeune.")
            await page.get_by_role("button", name="Enregistrer la décision").click()
            await expect(page.get_by_text("une nouvelle orientation a été créée")) \
                .to_be_visible()
            await check(page, "commission-seance", errors)


async def test_the_coordination_sets_places_in_the_browser(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        await handed_off(api, Tokens(await relais_app[KEYS].signing(), settings))
        token = await invite(api, "claire@coordination.example.org", org="coordination",
                             role="coordinator", name="Claire Dubois")
        await api.post(f"/invitation/{token}", data={"password": PASSWORD,
                                                     "confirmation": PASSWORD})
        async with open_page(browser) as page:
            errors = watch_errors(page)
            await sign_in(page, f"{live_server}/coordination", "claire@coordination.example.org")
            await page.get_by_label("Places libres chez Mission locale du Grand Amiénois") \
                .fill("4")
            await page.get_by_role(
                "button", name="Enregistrer les places de Mission locale du Grand Amiénois"
            ).click()
            await expect(page.get_by_text("Places de Mission locale du Grand Amiénois "
                                          "enregistrées")).to_be_visible()
            await expect(page.get_by_label("Places libres chez Mission locale du Grand "
                                           "Amiénois")).to_have_value("4")
            await check(page, "coordination", errors)
