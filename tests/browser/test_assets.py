"""The chain the pages stand on: the DSFR served by Relais itself (no CDN), applied in
Chromium under a strict Content-Security-Policy, axe-core finding nothing serious, a
screenshot; and the static routes over plain HTTP: cacheable, no way out of their folders."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from playwright.async_api import Page

from services.runtime import assets
from tests.browser.conftest import PHONE, axe, screenshot, watch_errors

DSFR_BLUE = "rgb(0, 0, 145)"  # --background-action-high-blue-france
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
"""The policy the pages are meant to carry; the DSFR's logo is a data: image."""
PAGE = """<!doctype html>
<html lang="fr" data-fr-scheme="light">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Essai du système de design — Relais</title>
  <link rel="stylesheet" href="/static/dsfr/dsfr.min.css">
  <link rel="stylesheet" href="/static/relais/relais.css">
  <link rel="icon" href="/static/dsfr/favicon/favicon.svg" type="image/svg+xml">
</head>
<body>
  <header role="banner" class="fr-header">
    <div class="fr-header__body"><div class="fr-container"><div class="fr-header__body-row">
      <div class="fr-header__brand fr-enlarge-link">
        <div class="fr-header__brand-top">
          <div class="fr-header__logo"><p class="fr-logo">République<br>Française</p></div>
        </div>
        <div class="fr-header__service">
          <a href="/essai-dsfr" title="Accueil — Relais">
            <p class="fr-header__service-title">Relais</p>
          </a>
          <p class="fr-header__service-tagline">Orienter une personne, avec son accord</p>
        </div>
      </div>
    </div></div></div>
  </header>
  <main role="main" id="contenu" class="fr-container fr-my-6w">
    <h1>Essai du système de design</h1>
    <p>Cette page ne sert qu'aux tests : elle vérifie que le DSFR est servi et appliqué.</p>
    <button class="fr-btn" type="button">Continuer</button>
  </main>
  <script type="module" src="/static/dsfr/dsfr.module.min.js"></script>
</body>
</html>
"""


async def dsfr_page(_request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html",
                        headers={"Content-Security-Policy": CSP})


@pytest.fixture
def relais_app(relais_app: web.Application) -> web.Application:
    """The real app, plus (in this test only) a page using the DSFR."""
    relais_app.router.add_get("/essai-dsfr", dsfr_page)
    return relais_app


async def test_the_dsfr_is_served_and_applied(live_server: str, page: Page) -> None:
    errors = watch_errors(page)
    answer = await page.goto(f"{live_server}/essai-dsfr")
    assert answer is not None and answer.status == 200
    await page.wait_for_function("document.documentElement.dataset.frJs === 'true'")
    await page.evaluate("document.fonts.ready")
    button = await page.eval_on_selector(".fr-btn", "e => getComputedStyle(e).backgroundColor")
    assert button == DSFR_BLUE
    assert await page.evaluate("document.fonts.check('1rem Marianne')")
    assert await axe(page) == []
    await screenshot(page, "essai-dsfr")
    assert errors == []  # nothing missing or refused by the CSP, no script error


async def test_the_dsfr_fits_a_phone(live_server: str, phone: Page) -> None:
    await phone.goto(f"{live_server}/essai-dsfr")
    await phone.wait_for_function("document.documentElement.dataset.frJs === 'true'")
    assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert await phone.is_visible(".fr-btn")
    await screenshot(phone, "essai-dsfr-telephone")


async def test_static_answers_are_cacheable(live_server: str) -> None:
    async with ClientSession() as http:
        for path in ("/static/dsfr/dsfr.min.css", "/static/relais/relais.css"):
            async with http.get(f"{live_server}{path}") as answer:
                assert answer.status == 200, path
                assert answer.content_type == "text/css"
                assert answer.headers["Cache-Control"] == assets.STATIC_CACHE
                assert answer.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(f"{live_server}/static/dsfr/nothing-here.css") as missing:
            assert missing.status == 404
            assert missing.headers["Cache-Control"] == "no-store"
        async with http.get(f"{live_server}/healthz") as api:
            assert api.headers["Cache-Control"] == "no-store"


TRAVERSALS = (
    "/static/dsfr/../../",
    "/static/dsfr/../../../../pyproject.toml",
    "/static/dsfr/%2e%2e/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
    "/static/dsfr/..%2f..%2f..%2f..%2fpyproject.toml",
    "/static/relais/../assets.py",
    "/static/relais/%2e%2e/assets.py",
    "/static/dsfr/",
    "/static/relais/",
)


async def test_no_way_out_of_the_static_folders(live_server: str) -> None:
    """Sent byte for byte (an HTTP client would resolve the dots first): no file from
    outside the folders, and no directory listing."""
    for path in TRAVERSALS:
        status, body = await _raw_get(live_server, path)
        assert status in (403, 404), (path, status)
        assert b"[build-system]" not in body and b"import" not in body, path


async def _raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_the_app_starts_without_the_dsfr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    """npm not run: no /static/dsfr/ route, one warning that says what to do."""
    monkeypatch.setattr(assets, "DSFR_DIST", tmp_path / "absent")
    app = web.Application()
    assets.add_static(app)
    assert "dsfr" not in app.router and "relais" in app.router
    logged = capfd.readouterr().err
    assert logged.count("dsfr_missing") == 1 and "make install" in logged
