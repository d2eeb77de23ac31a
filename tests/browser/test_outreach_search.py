"""The search by name in Chromium, on a phone (issue #11, point 3): a counsellor records a
contact with the person's first and last names, finds her again by typing them without the
accents, sees how many times the team met her and her path, starts a new contact from the
result (the visit number follows), and is told plainly when nobody has the name; axe-core on
every page, no console error, nothing wider than the phone, screenshots for the guide."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect

from services.auth.api import KEYS
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, axe, open_page, watch_errors
from tests.browser.test_console import check, sign_in
from tests.e2e.conftest import Tokens
from tests.integration.test_console import TEAM, account
from tests.integration.test_outreach_pages import NADIA, permanence_today


async def fits(phone: Page) -> None:
    width = await phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (phone.url, width)


async def test_a_person_met_before_is_found_by_name_and_met_again(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        await permanence_today(api, Tokens(await relais_app[KEYS].signing(), settings))
        await account(api, NADIA, org=TEAM, name="Nadia Benali")
        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as phone:
            errors = watch_errors(phone)
            heading = phone.get_by_role("heading", level=1)
            await sign_in(phone, f"{live_server}/", NADIA)
            await phone.get_by_role("button", name="Je suis ici : Étouvie, place du marché",
                                    exact=True).click()
            await expect(heading).to_have_text("Nouveau contact")
            await phone.get_by_text("emploi", exact=True).click()
            await phone.get_by_role("button", name="Si la personne le souhaite : son nom et "
                                    "ses coordonnées").click()
            await phone.get_by_label("Prénom").fill("Léa")
            await phone.locator("#nom").fill("Martin-Dupré")
            await phone.get_by_role("button", name="Enregistrer le contact").click()
            await expect(heading).to_have_text("Contact enregistré")

            await phone.get_by_role("link", name="Enregistrer un autre contact").click()
            await phone.get_by_role("link", name="Sans carte : retrouver la personne par son "
                                    "nom").click()
            await expect(heading).to_have_text("Retrouver une personne")
            await phone.get_by_label("Son prénom, son nom, ou les deux").fill("lea martin dupre")
            await phone.get_by_role("button", name="Rechercher").click()
            await expect(phone.get_by_role("heading", name="1 personne trouvée")).to_be_visible()
            await expect(phone.get_by_role("heading", name="Léa Martin-Dupré")).to_be_visible()
            await expect(phone.get_by_text("1 rencontre", exact=True)).to_be_visible()
            await expect(phone.get_by_text("En attente du consentement")).to_be_visible()
            await fits(phone)
            await check(phone, "terrain-recherche", errors)

            await phone.get_by_role("link", name="Nouveau contact avec Léa Martin-Dupré").click()
            await expect(heading).to_have_text("Nouveau contact")
            await expect(phone.get_by_text("ce sera sa 2e rencontre avec vous", exact=False)) \
                .to_be_visible()
            await expect(phone.get_by_label("Personne déjà rencontrée ? Code de sa carte")) \
                .to_have_count(0)  # the person is known: no card to type
            await phone.get_by_text("logement", exact=True).click()
            await fits(phone)
            await check(phone, "terrain-recherche-contact", errors)
            await phone.get_by_role("button", name="Enregistrer le contact").click()
            await expect(heading).to_have_text("Contact enregistré")
            await expect(phone.get_by_text("C'est sa 2e rencontre.", exact=False)) \
                .to_be_visible()

            await phone.goto(f"{live_server}/terrain")
            await phone.get_by_role("link", name="Retrouver une personne").click()
            await phone.get_by_label("Son prénom, son nom, ou les deux").fill("MARTIN-DUPRÉ")
            await phone.get_by_role("button", name="Rechercher").click()
            await expect(phone.get_by_text("2 rencontres", exact=True)).to_be_visible()

            await phone.get_by_label("Son prénom, son nom, ou les deux").fill("Inès Roux")
            await phone.get_by_role("button", name="Rechercher").click()
            await expect(phone.get_by_role("heading", name="Personne ne porte ce nom")) \
                .to_be_visible()
            await fits(phone)
            assert await axe(phone) == [] and errors == []
            await phone.get_by_label("Son prénom, son nom, ou les deux").fill("L")
            await phone.get_by_role("button", name="Rechercher").click()
            await expect(phone.get_by_text("Tapez au moins 2 lettres", exact=False)) \
                .to_be_visible()  # next to the field
            assert await axe(phone) == []
            assert [e for e in errors if "status of 422" not in e] == [] and len(errors) == 1

        pool = relais_app[RUNTIME].pool
        visits = await pool.fetch("SELECT person_id, visit_number FROM intake.intakes"
                                  " ORDER BY visit_number")
        assert [r["visit_number"] for r in visits] == [1, 2]
        assert visits[0]["person_id"] == visits[1]["person_id"]
        assert await pool.fetchval("SELECT count(*) FROM intake.access_log") == 2  # two shown
