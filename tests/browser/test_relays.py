"""The relays of the network in Chromium (issue #11, MiloMouv'): a coordinator creates a relay
for the mobile team and copies its personal link; on the relay's phone, without an account,
the link opens a short form that signals a young person, and a page thanks the relay; on the
counsellor's phone the signal is in the day's list, and a contact picked as its answer closes
it; axe-core on every page, no console error, nothing wider than the phone, screenshots for
the guide."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect

from services.auth.api import KEYS
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, open_page, watch_errors
from tests.browser.test_console import check, sign_in
from tests.e2e.conftest import Tokens
from tests.integration.test_console import PASSWORD, TEAM, account, invite
from tests.integration.test_outreach_pages import NADIA, permanence_today

COORDINATOR = "claire@coordination.example.org"
SALEUX = "Mairie de Saleux"


async def fits(page: Page) -> None:
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (page.url, width)


async def test_a_relay_signals_a_young_person_whom_the_team_then_meets(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        await permanence_today(api, Tokens(await relais_app[KEYS].signing(), settings))
        await account(api, NADIA, org=TEAM, name="Nadia Benali")
        token = await invite(api, COORDINATOR, org="coordination", role="coordinator",
                             name="Claire Dubois")
        await api.post(f"/invitation/{token}", data={"password": PASSWORD,
                                                     "confirmation": PASSWORD})

        async with open_page(browser) as page:  # the coordination, at its desk
            errors = watch_errors(page)
            heading = page.get_by_role("heading", level=1)
            await sign_in(page, f"{live_server}/coordination", COORDINATOR)
            await page.get_by_role("link", name="Relais du réseau", exact=False).click()
            await expect(heading).to_have_text("Relais du réseau")
            await page.get_by_label("Type de relais").select_option(label="Mairie")
            await page.get_by_label("Nom du relais").fill(SALEUX)
            await page.get_by_label("Équipe mobile qui reçoit ses signalements").select_option(
                label="Équipe mobile « Le Camion » (aller vers)")
            await check(page, "relais-coordination", errors)
            await page.get_by_role("button", name="Créer le relais et son lien").click()
            await expect(heading).to_have_text(f"Lien de {SALEUX}")
            link = await page.get_by_label(f"Lien personnel de {SALEUX}").input_value()
            assert urlsplit(link).path.startswith("/signalement/")
            await check(page, "relais-lien", errors)
            await page.get_by_role("link", name="Voir les relais").click()
            await expect(page.get_by_role("row", name=SALEUX, exact=False)).to_contain_text(
                "Actif")
            await check(page, "relais-liste", errors)

        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as relay:
            errors = watch_errors(relay)  # the mayor's phone: no account, no session
            heading = relay.get_by_role("heading", level=1)
            await relay.goto(live_server + urlsplit(link).path)
            await expect(heading).to_have_text("Signaler un jeune")
            await relay.get_by_label("Son prénom, ou comment la reconnaître").fill(
                "Léa, la nièce de la secrétaire")
            await relay.get_by_label("Comment la joindre").fill("06 12 34 56 78, le soir")
            await relay.get_by_text("emploi", exact=True).click()
            await relay.get_by_text("mobilité", exact=True).click()
            await relay.get_by_text("18-25 ans", exact=True).click()
            await expect(relay.get_by_label("emploi", exact=True)).to_be_checked()
            await fits(relay)
            await check(relay, "signalement", errors)
            await relay.get_by_role("button", name="Envoyer le signalement").click()
            await expect(heading).to_have_text("Merci, c'est envoyé")
            await expect(relay.get_by_text("va prendre contact avec la personne",
                                           exact=False)).to_be_visible()
            await fits(relay)
            await check(relay, "signalement-merci", errors)

        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as phone:
            errors = watch_errors(phone)  # the counsellor, in the truck
            heading = phone.get_by_role("heading", level=1)
            await sign_in(phone, f"{live_server}/", NADIA)
            await expect(heading).to_have_text("Sur le terrain")
            await expect(phone.get_by_role("heading", name="Signalements du réseau à traiter "
                                           "(1)")).to_be_visible()
            await expect(phone.get_by_text(f"Signalé par {SALEUX}", exact=False)) \
                .to_be_visible()
            await expect(phone.get_by_text("Pour la joindre : 06 12 34 56 78, le soir")) \
                .to_be_visible()
            await fits(phone)
            await check(phone, "terrain-signalements", errors)
            await phone.get_by_role("button", name="Je suis ici : Étouvie, place du marché",
                                    exact=True).click()
            await expect(heading).to_have_text("Nouveau contact")
            await phone.locator("label", has_text="Léa, la nièce de la secrétaire").click()
            await expect(phone.get_by_role("radio", name="Léa, la nièce de la secrétaire",
                                           exact=False)).to_be_checked()
            await phone.get_by_text("emploi", exact=True).click()
            await fits(phone)
            await check(phone, "terrain-contact-signalement", errors)
            await phone.get_by_role("button", name="Enregistrer le contact").click()
            await expect(heading).to_have_text("Contact enregistré")
            await phone.goto(f"{live_server}/terrain")
            await expect(heading).to_have_text("Sur le terrain")
            await expect(phone.get_by_text("Signalements du réseau à traiter")).to_have_count(0)

        pool = relais_app[RUNTIME].pool
        signal = await pool.fetchrow("SELECT * FROM intake.signals")
        assert (signal["status"], signal["outcome"], signal["relay_name"]) == (
            "closed", "reached", SALEUX)
        intake = await pool.fetchval("SELECT id FROM intake.intakes WHERE signal_id = $1",
                                     signal["id"])
        assert intake == signal["intake_id"]
