"""The outreach app without a network, in Chromium on a phone (issue #11's check): the
counsellor opens the offline page while online (the service worker keeps it); the network is
cut (the browser's offline mode, the service worker's requests cut too) and a page of the app
opens all the same, from the device; three contacts with consents are recorded, one signed
on the screen and named, two oral before a witness; the device's storage (IndexedDB, read by
the test) holds nothing readable; the network comes back: exactly three intakes and three
consents arrive, with the times they were made, and the referrals go out; signing out wipes
the device. axe-core on the offline page, nothing wider than the phone, screenshots."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, Route, expect

from services.auth.api import KEYS
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, watch_errors
from tests.browser.test_console import check, sign_in
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.test_console import ML, TEAM, account
from tests.integration.test_outreach_pages import NADIA, permanence_today

STORED = """() => new Promise((resolve, reject) => {
  const opened = indexedDB.open("relais-terrain");
  opened.onerror = () => reject(opened.error);
  opened.onsuccess = () => {
    const all = opened.result.transaction("file").objectStore("file").getAll();
    all.onsuccess = () => resolve(JSON.stringify(all.result));
  };
})"""
"""Everything the device keeps for the app, as text."""


async def until(page: Page, expression: str) -> None:
    """Polls an expression in the page (wait_for_function evaluates strings, which the
    pages' CSP refuses)."""
    deadline = time.monotonic() + 30  # (a service worker's install on a loaded machine)
    while not await page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"never true in 30 s: {expression}")
        await page.wait_for_timeout(100)


async def cut(route: Route) -> None:
    await route.abort("internetdisconnected")


async def sign(phone: Page) -> None:
    pad = phone.get_by_role("img", name="Signature de la personne")
    await pad.scroll_into_view_if_needed()
    box = await pad.bounding_box()
    assert box is not None
    await phone.mouse.move(box["x"] + 20, box["y"] + box["height"] * 0.6)
    await phone.mouse.down()
    for step in range(1, 10):
        await phone.mouse.move(box["x"] + 20 + step * box["width"] / 12,
                               box["y"] + box["height"] * (0.6 - 0.3 * (step % 2)))
    await phone.mouse.up()


async def test_contacts_recorded_offline_arrive_once_with_their_own_time(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        await permanence_today(api, Tokens(await relais_app[KEYS].signing(), settings))
        await account(api, NADIA, org=TEAM, name="Nadia Benali")
        context = await browser.new_context(locale="fr-FR", viewport=PHONE, is_mobile=True,
                                            has_touch=True, service_workers="allow")
        try:
            phone = await context.new_page()
            errors = watch_errors(phone)
            heading = phone.get_by_role("heading", level=1)
            state = phone.locator("#file-etat")
            await sign_in(phone, f"{live_server}/terrain", NADIA)
            await expect(heading).to_have_text("Sur le terrain")
            await phone.get_by_role("link", name="Contacts hors ligne").click()
            await expect(heading).to_have_text("Contacts hors ligne")
            await expect(phone.get_by_text("Réseau disponible", exact=False)).to_be_visible()
            await until(phone, "navigator.serviceWorker.controller !== null")  # installed
            await until(phone, "caches.match('/terrain/hors-ligne').then(Boolean)")  # kept

            await context.set_offline(True)
            await context.route("**/*", cut)
            await phone.goto(f"{live_server}/terrain/contact")  # from the device, not Relais
            await expect(heading).to_have_text("Contacts hors ligne")
            await expect(phone.get_by_text("Pas de réseau", exact=False)).to_be_visible()
            errors.clear()  # what could not load without a network (fonts) is no fault
            made = datetime.now(UTC)
            for n in range(3):
                await phone.get_by_text("emploi", exact=True).click()
                await phone.get_by_text("18-25 ans", exact=True).click()
                await phone.get_by_text("Mission locale du Grand Amiénois", exact=True).click()
                if n == 0:  # named, and signed on the screen
                    await phone.get_by_role("button", name="Si la personne le souhaite : son "
                                            "nom et ses coordonnées").click()
                    await phone.get_by_label("Prénom").fill("Léa")
                    await phone.get_by_label("Nom", exact=True).fill("Martin")
                    await sign(phone)
                else:
                    await phone.get_by_text("Oral, devant un témoin", exact=True).click()
                    await phone.get_by_label("Nom du témoin").fill("Karim Diallo")
                if n == 2:
                    width = await phone.evaluate("document.documentElement.scrollWidth")
                    assert width <= PHONE["width"], width
                    await check(phone, "terrain-hors-ligne", errors)
                await phone.get_by_role("button", name="Garder le contact et l'accord").click()
                waiting = f"{n + 1} contact{'s' if n else ''} en attente d'envoi."
                await expect(state).to_contain_text(waiting)
            kept = await phone.evaluate(STORED)
            assert len(json.loads(kept)) == 3
            for readable in ("Léa", "Martin", "Karim", "employment", "18_25", ML, "2026-01"):
                assert readable not in kept, readable  # sealed: nothing readable on the device
            await check(phone, "terrain-hors-ligne-attente", errors)

            await context.unroute("**/*", cut)
            back = datetime.now(UTC)
            await context.set_offline(False)
            await expect(state).to_contain_text("Aucun contact en attente d'envoi.",
                                                timeout=30_000)
            await expect(state).to_contain_text("3 envoyés")
            await check(phone, "terrain-hors-ligne-envoye", errors)

            pool = relais_app[RUNTIME].pool
            intakes = await pool.fetch("SELECT id, contacted_at, has_identity"
                                       " FROM intake.intakes ORDER BY contacted_at")
            consents = await pool.fetch("SELECT granted_at, method, witness, evidence_sha256,"
                                        " notice_version FROM consent.consents"
                                        " ORDER BY granted_at")
            assert len(intakes) == 3 and len(consents) == 3  # exactly once each
            assert [r["has_identity"] for r in intakes] == [True, False, False]
            for row in (*intakes, *consents):
                at = row["contacted_at"] if "contacted_at" in row else row["granted_at"]
                assert made <= at < back  # when it was recorded, not when it was sent
            assert [(r["method"], r["evidence_sha256"] is not None) for r in consents] == [
                ("signed_screen", True), ("oral_witnessed", False), ("oral_witnessed", False)]
            assert {r["notice_version"] for r in consents} == {"2026-01"}

            async def handed_off() -> bool:
                return bool(await pool.fetchval(
                    "SELECT count(*) = 3 FROM referral.referrals WHERE status = 'requested'"
                    " AND consent_id IS NOT NULL"))

            await wait_until(handed_off, 30, "the three referrals handed off")

            await phone.get_by_role("button", name="Menu").click()
            await phone.get_by_role("button", name="Se déconnecter").locator("visible=true") \
                .click()
            await expect(heading).to_have_text("Se connecter à Relais")
            names = await phone.evaluate("indexedDB.databases().then(d => d.map(x => x.name))")
            assert "relais-terrain" not in names  # signing out wiped the device
            assert not await phone.evaluate("caches.keys().then(k => k.length)")
        finally:
            await context.close()
