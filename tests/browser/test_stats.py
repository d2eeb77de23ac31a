"""The statistics page in Chromium, as a funder: a year of a territory's outreach work (recorded
through the API), read as charts and tables, filtered by site, downloaded as CSV; axe-core,
no console error under the page's CSP, screenshots for the guide (docs/screens/)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, open_page, watch_errors
from tests.browser.test_console import check
from tests.conftest import wait_until
from tests.e2e.conftest import Tokens
from tests.integration.conftest import Client
from tests.integration.test_console import PASSWORD, invite
from tests.integration.test_stats_pages import counted

TEAM = "equipe-aller-vers"
API = "intake:write consent:write referral:read"
EMAIL = "alex.bernard@hautsdefrance.example.org"
PLACES = (  # (permanence, site, channel, people met)
    ("camion-etouvie-mardi", None, "mobile_permanence", 18),
    ("camion-amiens-nord-mercredi", None, "mobile_permanence", 12),
    ("permanence-centre-social-nord", None, "fixed_permanence", 7),
    (None, "en-ligne", "online", 3),
    (None, "qpv-pierre-rollin", "mobile_permanence", 2),
)
AGES = ("18_25", "18_25", "16_17", "26_29", "18_25", "30_49", None)
GENDERS = ("female", "male", "female", "male", None, "female")
NEEDS = (["employment"], ["employment", "training"], ["housing"], ["employment", "mobility"],
         ["training"], ["rights", "administrative_steps"], ["digital_skills"])


async def territory(api: Client, tokens: Tokens) -> None:
    """42 people met over the last months, 4 of them twice; 20 consented to their referral,
    of which the partners accepted 9, refused 3 and acknowledged 2."""
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = []
    for permanence, site, channel, people in PLACES:
        for _ in range(people):
            n = len(items)
            intake: dict[str, Any] = {
                "channel": channel, "contacted_at": (now - timedelta(days=3 + 4 * n)).isoformat(),
                "needs": NEEDS[n % len(NEEDS)], "commune": "80021"}
            intake |= {"permanence": permanence} if permanence else {"site": site}
            if AGES[n % len(AGES)]:
                intake["age_bracket"] = AGES[n % len(AGES)]
            if GENDERS[n % len(GENDERS)]:
                intake["gender"] = GENDERS[n % len(GENDERS)]
            items.append(intake)
    batch = await api.post("/v1/intakes:batch", json={"items": [
        {"idempotency_key": str(uuid.uuid4()), "intake": i} for i in items]},
        headers=tokens.headers(TEAM, API))
    assert batch.status == 200, await batch.text()
    recorded = [r["intake"] for r in (await batch.json())["results"]]
    for first in recorded[:4]:  # they came back to the truck
        again = await api.post("/v1/intakes", json={
            "person_id": first["person_id"], "channel": "mobile_permanence",
            "permanence": "camion-etouvie-mardi", "contacted_at": now.isoformat(),
            "needs": ["employment"]}, headers=tokens.headers(
            TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())}))
        assert again.status == 201, await again.text()
    await counted(api, len(recorded) + 4)

    referrals = [await referral_of(api, tokens, i["id"]) for i in recorded[:20]]
    for intake, referral in zip(recorded[:20], referrals, strict=True):
        consent = await api.post("/v1/consents", json={
            "person_id": intake["person_id"], "purposes": [referral["purpose"]],
            "recipients": [referral["target"]], "categories": ["needs", "situation"],
            "notice_version": "2026-01", "method": "signed_screen", "captured_by": "x"},
            headers=tokens.headers(TEAM, API, **{"Idempotency-Key": str(uuid.uuid4())}))
        assert consent.status == 201, await consent.text()
    for n, referral in enumerate(referrals[:14]):
        await referral_of(api, tokens, referral["intake_id"], "requested")
        answer, body = (("accept", {}) if n < 9 else ("reject", {"reason": "no_place"})
                        if n < 12 else ("receive", {}))
        done = await api.post(f"/v1/referrals/{referral['id']}/{answer}", json=body,
                              headers=tokens.headers(referral["target"],
                                                     "referral:read referral:write"))
        assert done.status == 200, await done.text()


async def referral_of(api: Client, tokens: Tokens, intake_id: str,
                      status: str | None = None) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def seen() -> bool:
        response = await api.get(f"/v1/referrals?intake_id={intake_id}",
                                 headers=tokens.headers(TEAM, API))
        found[:] = [r for r in (await response.json())["items"]
                    if status is None or r["status"] == status]
        return bool(found)

    await wait_until(seen, 30, f"the referral of {intake_id} ({status or 'any'})")
    return found[0]


async def sign_in(page: Page, live_server: str) -> None:
    await page.goto(f"{live_server}/statistiques")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Se connecter à Relais")
    await page.get_by_label("Adresse électronique").fill(EMAIL)
    await page.get_by_label("Mot de passe").fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Statistiques")


async def test_a_funder_reads_the_statistics_in_the_browser(
    browser: Browser, relais_app: web.Application, settings: Settings, tmp_path: Path
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        tokens = Tokens(await relais_app[KEYS].signing(), settings)
        await territory(api, tokens)
        token = await invite(api, EMAIL, org="region-hauts-de-france", role="funder",
                             name="Alex Bernard")
        chosen = await api.post(f"/invitation/{token}", data={
            "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
        assert chosen.status == 303

        async with open_page(browser, accept_downloads=True) as page:
            errors = watch_errors(page)
            await sign_in(page, live_server)
            await expect(page.get_by_role("link", name="Statistiques")).to_have_attribute(
                "aria-current", "page")
            await expect(page.locator(".relais-keys li").first).to_contain_text(
                "42 personnes rencontrées")
            charts = page.get_by_role("img", name=re.compile("diagramme en barres"))
            await expect(charts).to_have_count(9)  # with the arrivals (walk-in, appointment)
            await expect(page.get_by_role("img", name=re.compile("^Contacts par lieu"))) \
                .to_be_visible()
            sites = page.locator("#tableau-site table")
            await expect(sites.get_by_role(
                "row", name="Portail en ligne et messagerie < 5 personnes")).to_be_visible()
            await expect(sites.get_by_role("row", name="Étouvie, place du marché 22")) \
                .to_be_visible()
            answers = page.locator("#tableau-answers table")
            await expect(answers.get_by_role("row", name=re.compile(
                "^Personnes orientées vers une structure, avec leur accord 20$"))) \
                .to_be_visible()
            # bars are drawn, in the DSFR's blue (relais.css: the CSP allows no inline style)
            bar = page.locator("#titre-site ~ svg rect.relais-chart__bar").first
            box = await bar.bounding_box()
            assert box is not None and box["width"] > 100
            fill = await bar.evaluate("e => getComputedStyle(e).fill")
            assert fill == "rgb(0, 0, 145)"
            await check(page, "statistiques", errors)

            await page.get_by_label("Lieu de rencontre").select_option(
                label="Étouvie, place du marché")
            await page.get_by_role("button", name="Afficher").click()
            await expect(page.get_by_text("pour le lieu Étouvie, place du marché")) \
                .to_be_visible()
            async with page.expect_download() as downloading:
                await page.get_by_role("link", name=re.compile("Télécharger ces chiffres")) \
                    .click()
            download = await downloading.value
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
            lines = saved.read_text(encoding="utf-8").splitlines()
            assert lines[0] == "indicateur,categorie,valeur"
            assert "Période,lieu,qpv-etouvie" in lines
            assert errors == []

        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as phone:
            errors = watch_errors(phone)
            await sign_in(phone, live_server)
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"]
            box = await phone.locator("svg.relais-chart").first.bounding_box()
            assert box is not None and box["width"] <= PHONE["width"]
            await check(phone, "statistiques-telephone", errors)
