"""The optional second factor (TOTP) over real HTTP and PostgreSQL: enrolment from "Mon
compte", sign-in with the password then the code (no session before the code), a wrong code,
a replayed code, the lock-out that wrong codes share with wrong passwords, switching it off,
and `relais user reset-2fa`. The server's clock is held still (`Runtime.clock`) so that the
codes computed here belong to a known time step."""

from __future__ import annotations

import argparse
import base64
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientSession

from services.auth import accounts, totp
from services.cli import user_command
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.integration.conftest import Client
from tests.integration.test_console import PASSWORD, account, csrf, sign_in

EMAIL = "camille@ml.example.org"
ACCOUNT = "/compte/double-authentification"


class Clock:
    """The server's clock, held still; `tick` moves it on by one time step."""

    def __init__(self, client: Client) -> None:
        self.moment = datetime.now(UTC)
        client.app[RUNTIME].clock = lambda: self.moment

    def tick(self, steps: int = 1) -> None:
        self.moment += timedelta(seconds=totp.STEP * steps)

    def code(self, secret: bytes) -> str:
        return totp.hotp(secret, totp.time_step(self.moment.timestamp()))


def secret_of(html: str) -> bytes:
    """The key the page shows for typing, as an authenticator app reads it."""
    found = re.search(r'id="cle">([A-Z2-7 ]+)</code>', html)
    assert found, "no key on the page"
    text = found.group(1).replace(" ", "")
    return base64.b32decode(text + "=" * (-len(text) % 8))


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def enrol(client: Client, clock: Clock, email: str = EMAIL) -> bytes:
    """An account, signed in, that switches the second factor on; its secret."""
    await account(client, email)
    assert (await sign_in(client, email)).status == 303
    html = await (await client.get(ACCOUNT)).text()
    secret = secret_of(html)
    done = await client.post(ACCOUNT, data={"csrf": csrf(html), "action": "activer",
                                            "password": PASSWORD, "code": clock.code(secret)},
                             allow_redirects=False)
    assert done.headers["Location"] == f"{ACCOUNT}?message=active", await done.text()
    clock.tick()
    return secret


async def sign_out(client: Client) -> None:
    html = await (await client.get(ACCOUNT)).text()
    out = await client.post("/deconnexion", data={"csrf": csrf(html)}, allow_redirects=False)
    assert out.status == 303


async def type_code(client: Client, code: str, **headers: str) -> Any:
    return await client.post("/connexion/code", data={"code": code}, headers=headers,
                             allow_redirects=False)


def session_cookie(client: Client) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))["relais_session"].value


async def is_refused(client: Client, session: str) -> bool:
    """Whether that session is refused (sent alone, without this client's cookies)."""
    async with ClientSession(cookies={"relais_session": session}) as other:
        response = await other.get(client.make_url("/orientations"), allow_redirects=False)
        return response.status == 303


async def user_row(client: Client, email: str = EMAIL) -> Any:
    return await client.app[RUNTIME].pool.fetchrow(
        "SELECT * FROM auth.users WHERE email = $1", email)


async def test_enrol_then_sign_in_with_the_password_and_a_code(client: Client) -> None:
    clock = Clock(client)
    await account(client, EMAIL)
    await sign_in(client, EMAIL)
    earlier_session = session_cookie(client)
    await sign_in(client, EMAIL)  # a second session: this one enrols
    assert not await is_refused(client, earlier_session)
    inbox = await (await client.get("/orientations")).text()
    assert f'href="{ACCOUNT}"' in inbox and "Mon compte" in inbox

    page = await client.get(ACCOUNT)
    html = await page.text()
    assert page.status == 200 and "Désactivée" in html
    assert 'src="data:image/svg+xml' in html and "default-src 'self'" in page.headers[
        "Content-Security-Policy"]
    seen_before = secret_of(html)  # by someone else holding the session, say
    html = await (await client.get(ACCOUNT)).text()
    secret = secret_of(html)
    assert secret != seen_before, "a new secret each time the enrolment is shown"
    stored = await user_row(client)
    assert stored["totp_secret"] is not None and secret not in stored["totp_secret"]  # sealed
    assert stored["totp_enabled_at"] is None  # not before a code is typed

    forged = await client.post(ACCOUNT, data={"csrf": "x" * 43, "action": "activer",
                                              "code": clock.code(secret)})
    assert forged.status == 403
    no_password = await client.post(ACCOUNT, data={"csrf": csrf(html), "action": "activer",
                                                   "password": "pas le bon mot de passe",
                                                   "code": clock.code(secret)})
    text = await no_password.text()
    assert no_password.status == 401 and "Mot de passe incorrect" in text
    assert 'aria-describedby="password-erreur"' in text and secret_of(text) == secret
    assert (await user_row(client))["totp_enabled_at"] is None, "a session alone does not"
    refused = await client.post(ACCOUNT, data={"csrf": csrf(html), "action": "activer",
                                               "password": PASSWORD,
                                               "code": wrong(clock.code(secret))})
    text = await refused.text()
    assert refused.status == 422 and "Code incorrect" in text
    assert 'aria-describedby="code-erreur"' in text and secret_of(text) == secret
    done = await client.post(ACCOUNT, data={"csrf": csrf(html), "action": "activer",
                                            "password": PASSWORD, "code": clock.code(secret)},
                             allow_redirects=False)
    assert done.headers["Location"] == f"{ACCOUNT}?message=active"
    enabled = await (await client.get(done.headers["Location"])).text()
    assert "Activée" in enabled and "Vos autres sessions ont été fermées" in enabled
    assert 'id="cle"' not in enabled  # the key is shown only while enrolling

    await wait_until(lambda: is_refused(client, earlier_session), 10, "the other session to end")
    assert (await client.get("/orientations")).status == 200  # this one goes on

    await sign_out(client)
    clock.tick()
    password = await sign_in(client, EMAIL)
    assert password.status == 303 and password.headers["Location"] == "/connexion/code"
    assert "relais_session" not in password.cookies  # no session before the code
    pending = password.cookies["relais_connexion"]
    assert pending["httponly"] and pending["samesite"] == "Strict"
    assert pending["path"] == "/connexion"
    assert (await client.get("/orientations", allow_redirects=False)).status == 303
    [row] = await client.app[RUNTIME].pool.fetch("SELECT * FROM auth.pending_logins")
    assert row["id_hash"] == accounts.token_hash(pending.value)  # only its hash is kept
    assert timedelta(minutes=4) < row["expires_at"] - datetime.now(UTC) <= timedelta(minutes=5)

    step = await client.get("/connexion/code")
    form = await step.text()
    assert step.status == 200 and 'autocomplete="one-time-code"' in form
    assert 'inputmode="numeric"' in form
    cross = await type_code(client, clock.code(secret), Origin="https://attaquant.example")
    assert cross.status == 403
    bad = await type_code(client, wrong(clock.code(secret)))
    assert bad.status == 401 and accounts.CODE_REFUSAL.replace("'", "&#39;") in await bad.text()
    assert (await user_row(client))["failed_logins"] == 1
    good = await type_code(client, clock.code(secret))
    assert good.status == 303 and good.headers["Location"] == "/orientations"
    assert good.cookies["relais_session"]["httponly"]
    assert (await client.get("/orientations")).status == 200
    assert (await user_row(client))["failed_logins"] == 0
    assert await client.app[RUNTIME].pool.fetchval("SELECT count(*) FROM auth.pending_logins") \
        == 0
    again = await client.get("/connexion/code", allow_redirects=False)
    assert again.status == 303 and again.headers["Location"].startswith("/connexion")

    # The same code once more, within its 30 seconds: refused.
    await sign_out(client)
    assert (await sign_in(client, EMAIL)).headers["Location"] == "/connexion/code"
    replayed = await type_code(client, clock.code(secret))
    assert replayed.status == 401
    assert "Ce code a déjà servi" in await replayed.text()
    assert (await client.get("/orientations", allow_redirects=False)).status == 303
    clock.tick()
    assert (await type_code(client, clock.code(secret))).status == 303


async def test_wrong_codes_lock_the_account_like_wrong_passwords(client: Client) -> None:
    clock = Clock(client)
    secret = await enrol(client, clock)
    await sign_out(client)
    await sign_in(client, EMAIL)
    for _ in range(accounts.MAX_FAILURES - 1):
        assert (await type_code(client, wrong(clock.code(secret)))).status == 401
    # The right password again does not clear the failures of the wrong codes.
    assert (await sign_in(client, EMAIL)).headers["Location"] == "/connexion/code"
    assert (await user_row(client))["failed_logins"] == accounts.MAX_FAILURES - 1
    assert (await type_code(client, "abcdef")).status == 401
    assert (await user_row(client))["locked_until"] is not None
    locked = await type_code(client, clock.code(secret))  # the right code, refused
    assert locked.status == 401
    assert accounts.CODE_REFUSAL.replace("'", "&#39;") in await locked.text()
    assert (await client.get("/orientations", allow_redirects=False)).status == 303
    password = await sign_in(client, EMAIL)
    assert password.status == 401
    assert accounts.GENERIC_REFUSAL.replace("'", "&#39;") in await password.text()


async def test_the_password_asked_to_switch_it_on_is_no_way_round_the_lock_out(
        client: Client) -> None:
    """Whoever holds a stolen session tries no more passwords at "Mon compte" than at the
    sign-in: the same count, the same lock-out."""
    clock = Clock(client)
    await account(client, EMAIL)
    assert (await sign_in(client, EMAIL)).status == 303
    for _ in range(accounts.MAX_FAILURES):
        html = await (await client.get(ACCOUNT)).text()
        guess = await client.post(ACCOUNT, data={
            "csrf": csrf(html), "action": "activer", "password": "devinette numéro un",
            "code": clock.code(secret_of(html))})
        assert guess.status == 401
    row = await user_row(client)
    assert row["locked_until"] is not None and row["totp_enabled_at"] is None
    html = await (await client.get(ACCOUNT)).text()
    right = await client.post(ACCOUNT, data={"csrf": csrf(html), "action": "activer",
                                             "password": PASSWORD,
                                             "code": clock.code(secret_of(html))})
    assert right.status == 401, "locked: even the right password waits"
    assert (await user_row(client))["totp_enabled_at"] is None


async def test_switching_it_off_needs_a_current_code(client: Client) -> None:
    clock = Clock(client)
    secret = await enrol(client, clock)
    html = await (await client.get(ACCOUNT)).text()
    refused = await client.post(ACCOUNT, data={"csrf": csrf(html), "action": "desactiver",
                                               "code": wrong(clock.code(secret))})
    assert refused.status == 422 and "Code incorrect" in await refused.text()
    assert (await user_row(client))["totp_enabled_at"] is not None
    done = await client.post(ACCOUNT, data={"csrf": csrf(html), "action": "desactiver",
                                            "code": clock.code(secret)}, allow_redirects=False)
    assert done.headers["Location"] == f"{ACCOUNT}?message=desactive"
    row = await user_row(client)
    assert row["totp_secret"] is None and row["totp_enabled_at"] is None
    await sign_out(client)
    signed = await sign_in(client, EMAIL)
    assert signed.headers["Location"] == "/orientations"  # the password alone, again


async def test_an_administrator_resets_a_lost_phone(
    client: Client, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock(client)
    secret = await enrol(client, clock)
    session = session_cookie(client)
    client.session.cookie_jar.clear()
    assert (await sign_in(client, EMAIL)).headers["Location"] == "/connexion/code"

    reset = argparse.Namespace(action="reset-2fa", email="Camille@ML.example.org")
    assert await user_command(settings, reset) == 0
    assert "removed" in capsys.readouterr().out
    unknown = argparse.Namespace(action="reset-2fa", email="personne@ml.example.org")
    assert await user_command(settings, unknown) == 1

    late = await type_code(client, clock.code(secret))  # the sign-in under way is dropped
    assert late.status == 303 and late.headers["Location"] == "/connexion?message=code-expire"

    await wait_until(lambda: is_refused(client, session), 10, "the person's sessions to end")
    row = await user_row(client)
    assert row["totp_secret"] is None and row["totp_enabled_at"] is None
    assert (await sign_in(client, EMAIL)).headers["Location"] == "/orientations"
    page = await (await client.get(ACCOUNT)).text()
    assert secret_of(page) != secret  # a new phone enrols with a new key


async def test_a_sign_in_waits_five_minutes_for_its_code(client: Client) -> None:
    clock = Clock(client)
    secret = await enrol(client, clock)
    await sign_out(client)
    await sign_in(client, EMAIL)
    await client.app[RUNTIME].pool.execute(
        "UPDATE auth.pending_logins SET expires_at = now() - interval '1 second'")
    expired = await client.get("/connexion/code", allow_redirects=False)
    assert expired.headers["Location"] == "/connexion?message=code-expire"
    notice = await (await client.get(expired.headers["Location"])).text()
    assert "Le délai pour saisir le code est dépassé" in notice
    late = await type_code(client, clock.code(secret))  # its cookie is gone too
    assert late.status == 303 and late.headers["Location"].startswith("/connexion")
    assert "relais_session" not in late.cookies
