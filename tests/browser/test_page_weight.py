"""Issue #10's budget of JavaScript: no page of the console makes the browser download more
than 300 KB of script, and none from another origin. Every page each role opens is visited
once in Chromium, signed in as that role, with the browser's cache off (as on a first
visit); the scripts' bytes are those the browser received (decoded bodies of the `script`
responses)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, Page, Request, Response, Route

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, open_page
from tests.browser.test_console import sign_in
from tests.e2e.conftest import Tokens
from tests.integration.test_console import (
    API,
    PASSWORD,
    TEAM,
    commission_referral,
    handed_off,
    invite,
)

BUDGET = 300 * 1024
COMMISSION = "commission-remobilisation"
PEOPLE = {  # who: (email, organisation, role)
    "ml": ("camille@mission-locale.example.org", "mission-locale", "counsellor"),
    "team": ("nadia@camion.example.org", TEAM, "counsellor"),
    "coord": ("claire@coordination.example.org", "coordination", "coordinator"),
    "funder": ("alex@region.example.org", "coordination", "funder"),
    "auditor": ("dominique@dpo.example.org", "coordination", "auditor"),
}


async def story(api: TestClient[Any, Any], tokens: Tokens) -> dict[str, str]:
    """A referral handed off to the Mission locale, a commission session with its agenda,
    and an account per role."""
    received = await handed_off(api, tokens)
    await commission_referral(api, tokens)
    opened = await api.post("/v1/commission/sessions", json={
        "commission": COMMISSION, "held_on": date.today().isoformat(),
        "members": ["mission-locale"]}, headers=tokens.headers(
        COMMISSION, "referral:write", **{"Idempotency-Key": str(uuid.uuid4())}))
    assert opened.status == 201, await opened.text()
    referral = await (await api.get(f"/v1/referrals/{received}",
                                    headers=tokens.headers(TEAM, API))).json()
    for email, org, role in PEOPLE.values():
        token = await invite(api, email, org, role)
        chosen = await api.post(f"/invitation/{token}", data={
            "password": PASSWORD, "confirmation": PASSWORD}, allow_redirects=False)
        assert chosen.status == 303
    return {"received": received, "session": (await opened.json())["id"],
            "person": referral["person_id"], "intake": referral["intake_id"],
            "consent": referral["consent_id"]}


def pages_of(ids: dict[str, str]) -> dict[str, list[str]]:
    """Each role's pages (the MENU's and the pages they lead to); "" signs nobody in."""
    return {
        "": ["/connexion"],
        "ml": ["/orientations", f"/orientations/{ids['received']}", "/orientations/envoyees",
               "/commission", f"/commission/seances/{ids['session']}",
               "/coordination/annuaire", "/compte/double-authentification"],
        "team": ["/terrain", "/terrain/contact", "/terrain/recherche", "/orientations/envoyees",
                 f"/orientations/{ids['received']}", f"/terrain/accord/{ids['intake']}",
                 f"/terrain/accord/{ids['intake']}/{ids['consent']}"],
        "coord": ["/coordination", "/coordination/annuaire",
                  "/coordination/organisations/mission-locale/notifications"],
        "funder": ["/statistiques"],
        "auditor": ["/audit", f"/audit?personne={ids['person']}"],
    }


async def signed_in(page: Page, live_server: str, who: str) -> None:
    """`who` signs in through the sign-in form (nobody: "")."""
    if who:
        await sign_in(page, f"{live_server}/", PEOPLE[who][0])
        await page.wait_for_url(lambda url: "/connexion" not in url)


async def weigh(page: Page, url: str) -> tuple[int, list[str], list[str]]:
    """The bytes of script a visit of `url` downloads, the scripts asked for, and those that
    failed."""
    asked: list[Request] = []
    answered: list[Response] = []

    def request(r: Request) -> None:
        if r.resource_type == "script":
            asked.append(r)

    def response(r: Response) -> None:
        if r.request.resource_type == "script":
            answered.append(r)

    page.on("request", request)
    page.on("response", response)
    try:
        document = await page.goto(url, wait_until="load")
        assert document is not None and document.status == 200, (url, document)
        assert "/connexion" not in page.url or url.endswith("/connexion"), url
        size = sum([len(await r.body()) for r in answered])
    finally:
        page.remove_listener("request", request)
        page.remove_listener("response", response)
    return size, [r.url for r in asked], [r.url for r in answered if not r.ok]


async def first_visits(route: Route) -> None:
    """Every request goes to the server (Chromium's cache is off while a route is set),
    except the styles, fonts and images, which weigh no script: not fetched, to go faster."""
    if route.request.resource_type in ("stylesheet", "font", "image"):
        await route.abort()
    else:
        await route.continue_()


async def test_no_page_downloads_more_than_300_kb_of_script(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        ids = await story(api, Tokens(await relais_app[KEYS].signing(), settings))
        weights: dict[str, int] = {}
        foreign: list[str] = []
        failed: list[str] = []
        for who, paths in pages_of(ids).items():
            async with open_page(browser) as page:
                await page.route("**/*", first_visits)
                await signed_in(page, live_server, who)
                for path in paths:
                    size, scripts, broken = await weigh(page, live_server + path)
                    weights[f"{who or 'anyone'} {path}"] = size
                    foreign += [s for s in scripts
                                if urlsplit(s).netloc != urlsplit(live_server).netloc]
                    failed += broken
        assert foreign == [], "scripts from another origin"
        assert failed == [], "scripts that did not load"
        assert all(size > 0 for size in weights.values()), weights  # the DSFR's, at least
        over = {page: size for page, size in weights.items() if size > BUDGET}
        assert over == {}, f"over {BUDGET} bytes of script: {over}"


async def test_every_page_fits_a_phone(
    browser: Browser, relais_app: web.Application, settings: Settings
) -> None:
    """Each page on a phone (390 px): nothing wider than the screen but the tables, which
    scroll inside their own box (DSFR's `fr-table__wrapper`), so the page never scrolls
    sideways."""
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        live_server = str(api.make_url("")).rstrip("/")
        ids = await story(api, Tokens(await relais_app[KEYS].signing(), settings))
        too_wide: dict[str, int] = {}
        for who, paths in pages_of(ids).items():
            async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as page:
                await signed_in(page, live_server, who)
                for path in paths:
                    await page.goto(live_server + path, wait_until="load")
                    width = await page.evaluate("document.documentElement.scrollWidth")
                    if width > PHONE["width"]:
                        too_wide[f"{who or 'anyone'} {path}"] = width
        assert too_wide == {}, f"wider than a {PHONE['width']} px phone: {too_wide}"
