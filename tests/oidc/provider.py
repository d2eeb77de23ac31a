"""A real OpenID provider for the tests: panva's oidc-provider (OpenID Certified), run by Node
from provider.mjs beside this file (installed by `make install`: npm ci in tests/oidc/), and
a person going through it with a plain HTTP client (its own sign-in and consent forms)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError
from urllib.parse import urljoin

import aiohttp
import pytest

from deploy.kafka.broker import free_port

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "provider.mjs"
CLIENT_ID = "relais-console"
CLIENT_SECRET = "un secret de client assez long pour oidc-provider"


@dataclass(frozen=True)
class Provider:
    issuer: str
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    def settings(self) -> dict[str, str]:
        """Relais's settings for this provider."""
        return {"oidc_issuer": self.issuer, "oidc_client_id": self.client_id,
                "oidc_client_secret": self.client_secret}


@contextmanager
def openid_provider(redirect_uri: str, accounts: dict[str, dict[str, Any]], folder: Path,
                    id_token_claims: bool = False,
                    signed_userinfo: bool = False) -> Iterator[Provider]:
    """The provider on a free loopback port, with one client (Relais, redirected to
    `redirect_uri`) and these accounts (login name: claims), which it gives in the userinfo
    answer (a signed JWT with `signed_userinfo`), and in the ID token too with
    `id_token_claims`; stopped after."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: install Node.js 20.19+ (`make install` needs it too)")
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        pytest.fail(f"{HERE}/node_modules is missing: `make install` runs npm ci there")
    port = free_port()
    config = folder / "oidc-provider.json"
    config.write_text(json.dumps({"port": port, "client_id": CLIENT_ID,
                                  "client_secret": CLIENT_SECRET,
                                  "redirect_uri": redirect_uri, "accounts": accounts,
                                  "id_token_claims": id_token_claims,
                                  "signed_userinfo": signed_userinfo}))
    output = folder / "oidc-provider.log"
    with output.open("w") as log:
        process = subprocess.Popen([node, str(SCRIPT), str(config)], stdout=log,
                                   stderr=subprocess.STDOUT, cwd=HERE)
    issuer = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"the OpenID provider stopped: {output.read_text()}")
            try:
                with urllib.request.urlopen(
                        f"{issuer}/.well-known/openid-configuration", timeout=2) as answer:
                    if json.load(answer)["issuer"] == issuer:
                        break
            except (URLError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the OpenID provider did not start: {output.read_text()}")
            time.sleep(0.1)
        yield Provider(issuer)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def browser() -> aiohttp.ClientSession:
    """A browser of its own (cookies included, on IP addresses too), that follows nothing by
    itself."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def follow(http: aiohttp.ClientSession, url: str, stop: str) -> tuple[str, str]:
    """GET `url` and the redirects after it, until a page (its address and HTML) or an address
    starting with `stop` (that address, not opened, and "")."""
    for _ in range(10):
        if url.startswith(stop):
            return url, ""
        async with http.get(url, allow_redirects=False) as response:
            if response.status in (302, 303):
                url = urljoin(url, response.headers["Location"])
                continue
            assert response.status == 200, (response.status, await response.text())
            return url, await response.text()
    raise AssertionError("too many redirects")


def _form(page: str, prompt: str, where: str) -> str:
    found = re.search(r'<form[^>]*action="([^"]+)"[^>]*>\s*<input type="hidden" name="prompt" '
                      rf'value="{prompt}"', page)
    assert found, f"no {prompt} form on the provider's page: {page[:2000]}"
    return urljoin(where, str(found.group(1)).replace("&amp;", "&"))


async def through_provider(http: aiohttp.ClientSession, authorization: str, login: str,
                           callback: str) -> str:
    """What a person does at the provider: sign in as `login` (any password), consent when
    asked; returns the callback address the provider sends the browser back to."""
    where, page = await follow(http, authorization, callback)
    for _ in range(3):
        if not page:
            return where
        if 'value="login"' in page:
            data = {"prompt": "login", "login": login, "password": "peu importe"}
            action = _form(page, "login", where)
        else:
            data, action = {"prompt": "consent"}, _form(page, "consent", where)
        async with http.post(action, data=data, allow_redirects=False) as response:
            assert response.status in (302, 303), (response.status, await response.text())
            where, page = await follow(http, urljoin(action, response.headers["Location"]),
                                       callback)
    raise AssertionError("the provider kept asking")


async def abort_at_provider(http: aiohttp.ClientSession, authorization: str,
                            callback: str) -> str:
    """The person clicks the provider's "Cancel": the callback address it then sends."""
    where, page = await follow(http, authorization, callback)
    found = re.search(r'href="([^"]+/abort)"', page)
    assert found, page[:2000]
    url, _ = await follow(http, urljoin(where, str(found.group(1))), callback)
    return url
