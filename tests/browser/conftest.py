"""Browser tests: Debian's Chromium driven by Playwright's async API (in the event loop the
aiohttp test servers run in: the sync API would block it), pages in French, axe-core for
accessibility, full-page screenshots in docs/screens/.

A test serves the real Relais with the `live_server` fixture (its base URL); to add routes
first, a test module overrides `relais_app` (see test_assets.py)."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)

from services.cli import SERVICE_NAMES, service_specs
from services.runtime.app import create_app
from services.runtime.settings import Settings
from tests.integration.conftest import settings  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "web" / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = ROOT / "docs" / "screens"
TABLET = ViewportSize(width=1024, height=768)
PHONE = ViewportSize(width=390, height=844)
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Chromium from Debian's packages (`make tools`); Playwright downloads no browser. Its
    sandbox needs a user other than root: as root (CI, containers) it runs without."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is missing: `make tools` installs it (apt-get install chromium)")
    # Service workers' own requests obey the context's routes only with this (the offline
    # journey of test_outreach_offline.py cuts them too, as a real loss of network would).
    os.environ.setdefault("PW_EXPERIMENTAL_SERVICE_WORKER_NETWORK_EVENTS", "1")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, chromium_sandbox=os.geteuid() != 0)
        yield launched
        await launched.close()


@asynccontextmanager
async def open_page(browser: Browser, viewport: ViewportSize = TABLET,
                    **options: Any) -> AsyncIterator[Page]:
    """A page in a context of its own (no cookies shared between tests), in French. The
    pages' Content-Security-Policy is enforced, as in a real browser."""
    context = await browser.new_context(locale="fr-FR", viewport=viewport, **options)
    try:
        yield await context.new_page()
    finally:
        await context.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A tablet-sized page (1024x768)."""
    async with open_page(browser) as opened:
        yield opened


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    """A phone-sized page (390x844, touch)."""
    async with open_page(browser, PHONE, is_mobile=True, has_touch=True) as opened:
        yield opened


@functools.cache
def axe_source() -> str:
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS} is missing: `make install` runs npm ci in web/")
    return AXE_JS.read_text()


async def axe(page: Page) -> list[dict[str, Any]]:
    """The page's serious and critical accessibility violations, by axe-core. The script is
    evaluated through the DevTools protocol, which the page's CSP (`script-src 'self'`) does
    not govern: a <script> tag with the same content would be refused."""
    if not await page.evaluate("typeof axe !== 'undefined'"):
        await page.evaluate(axe_source() + "\n;undefined")
    violations: list[dict[str, Any]] = await page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)")
    return [v for v in violations if v.get("impact") in BLOCKING]


def watch_errors(page: Page) -> list[str]:
    """A list that fills with what went wrong on the page from now on: console errors (a
    resource the CSP refused, a 404, including the favicon), uncaught script errors."""
    errors: list[str] = []
    page.on("console", lambda message: _keep_error(message, errors))
    page.on("pageerror", lambda exc: errors.append(f"script: {exc}"))
    return errors


def _keep_error(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(f"console: {message.text} ({message.location.get('url')})")


async def screenshot(page: Page, name: str) -> Path:
    """The whole page, scrolled, in docs/screens/<name>.png."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    await page.screenshot(path=path, full_page=True)
    return path


@pytest.fixture
def relais_app(settings: Settings) -> web.Application:  # noqa: F811 (the fixture)
    """The real Relais, every service on a fresh database, not started yet."""
    assert settings.database_url
    return create_app(settings, settings.database_url, service_specs(SERVICE_NAMES))


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serves `app` over real HTTP on a loopback port; yields its base URL."""
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")


@pytest.fixture
async def live_server(relais_app: web.Application) -> AsyncIterator[str]:
    """http://127.0.0.1:PORT, where the browser reaches the running `relais_app`."""
    async with serve(relais_app) as url:
        yield url
