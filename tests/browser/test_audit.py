"""The audit page in Chromium, as a data-protection officer: sign in, search a person with the
keyboard alone, read the proofs, download the trail and the keys; on a tablet and on a phone,
with axe-core, no console error, and screenshots (docs/screens/audit*.png)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, expect

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, axe, open_page, screenshot, watch_errors
from tests.e2e.conftest import Tokens
from tests.integration.test_audit_pages import story
from tests.integration.test_console import PASSWORD, invite

EMAIL = "dominique.petit@coordination.example.org"


@pytest.fixture
def settings(database: str, tmp_path: Path) -> Settings:
    """Checkpoints and expiries within a second (the story's second consent expires)."""
    return Settings.model_validate({"data_dir": tmp_path, "database_url": database,
                                    "poll_interval": 0.3, "checkpoint_interval": 0.3,
                                    "expiry_interval": 0.3})


async def check(page: Page, errors: list[str], name: str | None = None) -> None:
    """No serious or critical accessibility violation, no console error; a screenshot."""
    violations = await axe(page)
    assert violations == [], [(v["id"], v["help"], [n["target"] for n in v["nodes"]])
                              for v in violations]
    assert errors == []
    if name:
        await screenshot(page, name)


async def sign_in(page: Page, live_server: str, target: str) -> None:
    await page.goto(f"{live_server}{target}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Se connecter à Relais")
    await page.get_by_label("Adresse électronique").fill(EMAIL)
    await page.get_by_label("Mot de passe").fill(PASSWORD)
    await page.get_by_role("button", name="Se connecter").click()


async def test_an_auditor_checks_a_person_in_the_browser(
    browser: Browser, relais_app: web.Application, settings: Settings, tmp_path: Path
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        facts = await story(api, Tokens(await relais_app[KEYS].signing(), settings))
        token = await invite(api, EMAIL, "coordination", "dpo", "Dominique Petit")
        done = await api.post(f"/invitation/{token}", data={
            "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
        assert done.status == 303
        person = facts["person"]

        async with open_page(browser) as page:
            errors = watch_errors(page)
            await sign_in(page, live_server, "/audit")
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Audit du consentement")
            await expect(page.get_by_role("link", name="Audit")).to_have_attribute(
                "aria-current", "page")

            # a wrong id, with the keyboard alone: skip link, the field, Enter
            await page.keyboard.press("Tab")
            await expect(page.get_by_role("link", name="Aller au contenu")).to_be_focused()
            await page.keyboard.press("Enter")
            await page.keyboard.press("Tab")
            field = page.get_by_label("Identifiant de la personne")
            await expect(field).to_be_focused()
            await page.keyboard.type("5d0c1f8e")
            await page.keyboard.press("Enter")
            await expect(page.locator("#personne-erreur")).to_contain_text(
                "n'est pas un identifiant de personne")
            await expect(field).to_have_attribute("aria-describedby", "personne-erreur")
            # the page answers 422, which Chromium reports, as it does any 4xx document
            assert [e for e in errors if "status of 422" not in e] == [] and len(errors) == 1
            errors.clear()
            await check(page, errors)

            await field.fill(person)
            await field.press("Enter")
            await expect(page.get_by_role("heading", level=2, name=f"Personne {person}")) \
                .to_be_visible()
            journal = page.locator("#journal tbody tr")
            await expect(journal).to_have_count(6)
            await expect(journal.get_by_text("Preuve vérifiée")).to_have_count(6)
            await expect(page.get_by_role(
                "cell", name="la personne elle-même, par téléphone", exact=True)).to_be_visible()
            await check(page, errors, "audit")

            async with page.expect_download() as trail:
                await page.get_by_role("link", name="Télécharger le journal").click()
            assert (await trail.value).suggested_filename == "trail.jsonl"
            async with page.expect_download() as keys:
                await page.get_by_role("link", name="Télécharger les clés publiques").click()
            assert (await keys.value).suggested_filename == "keys.json"
            assert errors == []

        async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as phone:
            errors = watch_errors(phone)
            await sign_in(phone, live_server, f"/audit?personne={person}")
            await expect(phone.locator("#journal tbody tr")).to_have_count(6)
            width = await phone.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], "nothing wider than the phone but the tables"
            split = await phone.evaluate("[...document.querySelectorAll('#commande > span')]"
                                         ".filter(word => word.getClientRects().length > 1)"
                                         ".map(word => word.textContent)")
            assert split == [], "the command wraps between its words, never inside one"
            await check(phone, errors, "audit-telephone")
