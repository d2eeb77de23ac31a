"""The outreach team's app in Chromium, on a phone: a counsellor signs in, picks the day's
permanence, records an anonymous contact in under a minute (issue #11's requirement, timed
from the form's opening to the confirmation), sees what routing proposes, and records the
person's consent, signed on the screen with a finger, which hands the referral off, and shows
the person their receipt; then, on the person's own phone, the receipt's link opens their
consents and they withdraw part of one, which stops the referral; a second journey gives a
person a card and recognises them by its code at the next contact; axe-core on every page, no
console error, nothing wider than the phone, screenshots for the guide."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, expect

from services.auth.api import KEYS
from services.consent.receipt import ALPHABET
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, axe, open_page, watch_errors
from tests.browser.test_console import check, sign_in
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.test_console import TEAM, account
from tests.integration.test_outreach_pages import NADIA, permanence_today

CODE = re.compile(rf"^[{ALPHABET}]{{5}} [{ALPHABET}]{{5}}$")
"""The receipt's withdrawal code, as shown."""
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
            routed_by = time.monotonic() + 30  # routing runs on the intake's event
            while not await proposal.count():  # at most a reload or two
                assert time.monotonic() < routed_by, "no routing proposal after 30 s"
                await phone.get_by_role("link", name="Actualiser la page").click()
                await expect(heading).to_have_text("Contact enregistré")  # the page again
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
            await expect(phone.get_by_label("Nom du témoin")).to_be_hidden()  # signed: no witness
            pad = phone.get_by_role("img", name="Signature de la personne")
            await pad.scroll_into_view_if_needed()
            box = await pad.bounding_box()
            assert box is not None
            await phone.mouse.move(box["x"] + 20, box["y"] + box["height"] * 0.7)
            await phone.mouse.down()
            for step in range(1, 13):  # a signature, drawn with a finger
                await phone.mouse.move(box["x"] + 20 + step * box["width"] / 16,
                                       box["y"] + box["height"] * (0.7 - 0.4 * (step % 2)))
            await phone.mouse.up()
            assert (await phone.locator("#signature").input_value()).startswith(
                "data:image/png;base64,")
            await fits()
            await check(phone, "terrain-accord", errors)
            await phone.get_by_role("button", name="Enregistrer l'accord").click()
            await expect(heading).to_have_text("Accord enregistré")
            await expect(phone.get_by_text("La signature est gardée scellée", exact=False)) \
                .to_be_visible()
            await expect(phone.get_by_text("orientation vers un partenaire, être recontactée.",
                                           exact=False)).to_be_visible()
            await expect(phone.get_by_text(
                "L'orientation est transmise à Mission locale du Grand Amiénois",
                exact=False)).to_be_visible()
            await fits()
            await check(phone, "terrain-accord-enregistre", errors)
            await phone.get_by_role("link", name="Enregistrer un autre contact").click()
            await expect(heading).to_have_text("Nouveau contact")  # the place is remembered
            await phone.go_back()

            await phone.get_by_role("button", name="Montrer le reçu à la personne").click()
            await expect(heading).to_have_text("Reçu de votre accord")
            await expect(phone.get_by_role("img", name="QR code : le lien pour voir et retirer "
                                           "votre accord")).to_be_visible()
            await expect(phone.locator("#code-retrait")).to_have_text(CODE)
            link = await phone.locator("#lien-retrait").inner_text()  # the QR code's target
            await fits()
            await check(phone, "terrain-recu", errors)

        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as person:
            errors = watch_errors(person)  # the person's own phone: no account, no session
            await person.goto(live_server + urlsplit(link).path)
            heading = person.get_by_role("heading", level=1)
            await expect(heading).to_have_text("Mes accords")
            await expect(person.get_by_text("En cours", exact=True)).to_be_visible()
            await person.get_by_role("button", name="Retirer : vous orienter vers un "
                                     "partenaire").click()
            await expect(person.get_by_role("heading", name="C'est fait : votre retrait est "
                                            "enregistré")).to_be_visible()
            await expect(person.get_by_text("En partie retiré", exact=True)).to_be_visible()
            width = await person.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (person.url, width)
            await check(person, "mon-accord", errors)

        pool = relais_app[RUNTIME].pool

        async def stopped() -> bool:  # the Mission locale is told to stop, as for any withdrawal
            return bool(await pool.fetchval(
                "SELECT count(*) = 1 FROM referral.referrals WHERE status = 'cancelled'"
                " AND stopped_at IS NOT NULL"))

        await wait_until(stopped, 30, "the referral cancelled and the recipient told to stop")


async def test_a_card_recognises_the_person_at_the_next_contact(
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
            await phone.get_by_role("button", name="Je suis ici : Étouvie, place du marché",
                                    exact=True).click()
            await expect(heading).to_have_text("Nouveau contact")
            await phone.get_by_text("emploi", exact=True).click()
            await phone.get_by_role("button", name="Enregistrer le contact").click()
            await expect(heading).to_have_text("Contact enregistré")

            await phone.get_by_role("button", name="Donner une carte à la personne").click()
            await expect(heading).to_have_text("Carte à donner à la personne")
            await expect(phone.locator("#code-carte")).to_have_text(CODE)
            code = await phone.locator("#code-carte").inner_text()
            await fits()
            await check(phone, "terrain-carte", errors)

            await phone.get_by_role("link", name="Enregistrer un autre contact").click()
            await expect(heading).to_have_text("Nouveau contact")
            await phone.get_by_label("Personne déjà rencontrée ? Code de sa carte").fill(
                "ZZZZZ ZZZZZ" if code != "ZZZZZ ZZZZZ" else "22222 22222")
            await phone.get_by_text("logement", exact=True).click()
            await phone.get_by_role("button", name="Enregistrer le contact").click()
            await expect(phone.get_by_text("Ce code ne correspond à aucune personne",
                                           exact=False)).to_be_visible()  # next to the field
            await fits()
            assert await axe(phone) == []
            assert [e for e in errors if "status of 422" not in e] == [] and len(errors) == 1
            errors.clear()  # the refusal's own status
            await phone.get_by_label("Personne déjà rencontrée ? Code de sa carte").fill(
                code.lower())
            await phone.get_by_role("button", name="Enregistrer le contact").click()
            await expect(heading).to_have_text("Contact enregistré")
            await expect(phone.get_by_text("C'est sa 2e rencontre.", exact=False)) \
                .to_be_visible()
            await fits()
            await check(phone, "terrain-carte-reconnue", errors)

        pool = relais_app[RUNTIME].pool
        people = await pool.fetch("SELECT person_id, visit_number FROM intake.intakes"
                                  " ORDER BY visit_number")
        assert [r["visit_number"] for r in people] == [1, 2]
        assert people[0]["person_id"] == people[1]["person_id"]
