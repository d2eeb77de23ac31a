"""The outreach team's app in Chromium, on a phone: a counsellor signs in, picks the day's
permanence, records an anonymous contact in under a minute (issue #11's requirement, timed
from the form's opening to the confirmation), sees what routing proposes, and records the
person's consent, oral before a named witness, which hands the referral off; axe-core on
every page, no console error, nothing wider than the phone, screenshots for the guide."""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, expect

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, open_page, watch_errors
from tests.browser.test_console import check, sign_in
from tests.e2e.conftest import Tokens
from tests.integration.test_console import TEAM, account
from tests.integration.test_outreach_pages import NADIA, permanence_today

UNDER = 60.0
"""Seconds: a contact is recorded in under a minute."""


async def test_an_outreach_counsellor_records_a_contact_on_a_phone(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        await permanence_today(api, Tokens(await relais_app[KEYS].signing(), settings))
        await account(api, NADIA, org=TEAM, name="Nadia Benali")
        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as phone:
            errors = watch_errors(phone)
            heading = phone.get_by_role("heading", level=1)

            async def fits() -> None:
                width = await phone.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"], (phone.url, width)

            await sign_in(phone, f"{live_server}/", NADIA)
            await expect(heading).to_have_text("Sur le terrain")  # where the team lands
            await expect(phone.get_by_text("Avec : Mission locale du Grand Amiénois")) \
                .to_be_visible()
            await fits()
            await check(phone, "terrain-journee", errors)
            await phone.get_by_role("button", name="Je suis ici : Étouvie, place du marché",
                                    exact=True).click()

            await expect(heading).to_have_text("Nouveau contact")
            opened = time.monotonic()
            await phone.get_by_text("emploi", exact=True).click()
            await phone.get_by_text("mobilité", exact=True).click()
            await phone.get_by_text("18-25 ans", exact=True).click()
            await phone.get_by_text("15\u00a0min", exact=True).click()
            await expect(phone.get_by_label("emploi", exact=True)).to_be_checked()
            await expect(phone.get_by_label("Prénom")).to_be_hidden()  # anonymous by default
            await fits()
            paused = time.monotonic()  # the checks and the screenshot are not the counsellor's
            await check(phone, "terrain-contact", errors)
            opened += time.monotonic() - paused
            await phone.get_by_role("button", name="Enregistrer le contact").click()
            await expect(heading).to_have_text("Contact enregistré")
            took = time.monotonic() - opened
            assert took < UNDER, f"the contact took {took:.1f} s to record"

            proposal = phone.get_by_role("heading", name="Vers Mission locale du Grand Amiénois")
            for _ in range(20):  # routing runs on the intake's event: at most a reload or two
                if await proposal.count():
                    break
                await phone.get_by_role("link", name="Actualiser la page").click()
            await expect(proposal).to_be_visible()
            await expect(phone.get_by_text("En attente du consentement", exact=True)) \
                .to_be_visible()
            await fits()
            await check(phone, "terrain-proposition", errors)

            await phone.get_by_role("link", name="Recueillir l'accord de la personne").click()
            await expect(heading).to_have_text("Recueillir l'accord de la personne")
            await expect(phone.get_by_text("Vous pouvez retirer votre accord à tout moment",
                                           exact=False)).to_be_visible()  # the notice
            await expect(phone.get_by_label("Mission locale du Grand Amiénois")) \
                .to_be_checked()  # as routing proposed
            await phone.get_by_text("être recontactée", exact=True).click()  # changeable
            await phone.get_by_label("Nom du témoin").fill("Karim Diallo")
            await fits()
            await check(phone, "terrain-accord", errors)
            await phone.get_by_role("button", name="Enregistrer l'accord").click()
            await expect(heading).to_have_text("Accord enregistré")
            await expect(phone.get_by_text("orientation vers un partenaire, être recontactée.",
                                           exact=False)).to_be_visible()
            await expect(phone.get_by_text(
                "L'orientation est transmise à Mission locale du Grand Amiénois",
                exact=False)).to_be_visible()
            await fits()
            await check(phone, "terrain-accord-enregistre", errors)
            await phone.get_by_role("link", name="Enregistrer un autre contact").click()
            await expect(heading).to_have_text("Nouveau contact")  # the place is remembered
