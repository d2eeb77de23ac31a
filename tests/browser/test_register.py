"""The record of processing activities as a French document in Chromium: axe-core finds no
serious violation, on a tablet and on a phone (docs/screens/registre*.png)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, expect

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.browser.conftest import PHONE, TABLET, open_page, watch_errors
from tests.browser.test_audit import check
from tests.e2e.conftest import Tokens
from tests.integration.test_register import AUDITOR


async def test_the_register_reads_well_on_a_tablet_and_a_phone(
        browser: Browser, relais_app: web.Application, settings: Settings) -> None:
    async with TestClient(TestServer(relais_app, host="127.0.0.1")) as api:
        tokens = Tokens(await relais_app[KEYS].signing(), settings)
        url = str(api.make_url("/v1/audit/register"))
        headers = tokens.headers(*AUDITOR, Accept="text/html")
        for viewport, name in ((TABLET, "registre"), (PHONE, "registre-phone")):
            async with open_page(browser, viewport, extra_http_headers=headers) as page:
                errors = watch_errors(page)
                response = await page.goto(url)
                assert response is not None and response.status == 200
                await expect(page.get_by_role("heading", level=1)).to_have_text(
                    "Registre des traitements (article 30 du RGPD)")
                await expect(page.get_by_role("table", name="Chaque structure, pour ce "
                                              "qu'elle fait dans Relais")).to_be_visible()
                await check(page, errors, name)
