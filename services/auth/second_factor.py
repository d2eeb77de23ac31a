"""The optional second factor of personal accounts (TOTP, services/auth/totp.py): the second
step of signing in, which asks for the code after a right password and only then opens the
session (`pages.open_session`), and the page where a person switches it on (QR code, then a
code to confirm) or off (a current code). Wrong codes count towards the same lock-out and
throttle as wrong passwords; a code serves once. Codes are checked at the runtime's clock (the
tests set it)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from services.auth import accounts, store, totp
from services.auth.api import KEYS, THROTTLE
from services.auth.pages import PENDING_COOKIE, open_session
from services.runtime import sealing
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.http import client_address

SECOND_STEP = "/connexion/code"
ACCOUNT_PAGE = "/compte/double-authentification"
PASSWORD_REFUSAL = "Mot de passe incorrect. Saisissez le mot de passe de votre compte Relais."
ENROL_REFUSAL = ("Code incorrect. Saisissez le code à 6 chiffres que votre application "
                 "affiche pour Relais ; s'il est refusé encore, vérifiez que l'heure du "
                 "téléphone est réglée automatiquement.")


def _master(request: web.Request) -> sealing.Keyring:
    master = request.app[KEYS].master
    if master is None:
        raise RuntimeError("the auth service has not started: no master key")
    return master


def _address(request: web.Request) -> str:
    return client_address(request, request.app[RUNTIME].settings.trusted_proxies)


# --- signing in: the code after the password --------------------------------------------------

async def _pending(request: web.Request) -> tuple[bytes, asyncpg.Record]:
    """The sign-in awaiting its code, from the cookie the right password left; else back to
    the sign-in page."""
    token = request.cookies.get(PENDING_COOKIE)
    if not token:
        raise web.HTTPSeeOther("/connexion")
    digest = accounts.token_hash(token)
    row = await store.pending_login(request.app[RUNTIME].pool, digest)
    if row is None:
        raise _expired()
    return digest, row


def _expired() -> web.HTTPSeeOther:
    response = web.HTTPSeeOther("/connexion?message=code-expire")
    response.del_cookie(PENDING_COOKIE, path="/connexion")
    return response


def _code_page(request: web.Request, status: int = 200,
               error: str | None = None) -> web.Response:
    return pages.render(request, "auth/connexion-code.html", status=status, error=error)


async def _judge_code(conn: asyncpg.Connection, master: sealing.Keyring, user_id: uuid.UUID,
                      digest: bytes, code: str, now: datetime
                      ) -> tuple[asyncpg.Record, totp.Check, accounts.Attempt] | None:
    """The code typed at sign-in, judged like a password (lock-out, disabled account) and
    recorded; the step it matched is used up and the pending sign-in ends when it is right.
    None when the account has no second factor any more."""
    user = await store.user_by_id(conn, user_id, lock=True)
    if user is None or user["totp_enabled_at"] is None:
        await store.end_pending_login(conn, digest)
        return None
    secret = totp.open_secret(master, user["id"], user["totp_secret"])
    checked = totp.check(secret, code, now.timestamp(), user["totp_last_step"])
    attempt = accounts.judge_login(
        exists=True, disabled=user["disabled_at"] is not None, password_ok=checked.ok,
        failures=user["failed_logins"], locked_until=user["locked_until"], now=now)
    await store.record_attempt(conn, user["id"], attempt.failures, attempt.locked_until)
    if attempt.ok and checked.step is not None:
        await store.used_totp_step(conn, user["id"], checked.step)
        await store.end_pending_login(conn, digest)
    return user, checked, attempt


@pages.page
async def code_form(request: web.Request) -> web.StreamResponse:
    await _pending(request)
    return _code_page(request)


@pages.page
async def check_code(request: web.Request) -> web.StreamResponse:
    fields = await pages.form(request, with_session=False)
    digest, pending = await _pending(request)
    runtime, throttle = request.app[RUNTIME], request.app[THROTTLE]
    address, key = _address(request), f"connexion:{pending['email']}"
    if await throttle.wait(key, address):
        return _code_page(request, 429, accounts.TOO_MANY)
    async with runtime.pool.acquire() as conn, conn.transaction():
        judged = await _judge_code(conn, _master(request), pending["user_id"], digest,
                                   fields.get("code", ""), runtime.clock())
    if judged is None:  # switched off meanwhile (`relais user reset-2fa`): start again
        raise _expired()
    user, checked, attempt = judged
    if not attempt.ok:
        await throttle.failed(key, address)
        replayed = checked.replayed and attempt.locked_until is None \
            and user["disabled_at"] is None
        return _code_page(request, 401,
                          accounts.CODE_REPLAYED if replayed else accounts.CODE_REFUSAL)
    response = await open_session(request, user, pending["suite"])
    response.del_cookie(PENDING_COOKIE, path="/connexion")
    raise response


# --- the person's own page: switching the second factor on or off -----------------------------

async def _account(request: web.Request) -> tuple[uuid.UUID, asyncpg.Record]:
    """The signed-in person's session id and account."""
    principal = await pages.require(request)
    session_id = uuid.UUID(principal.client_id.removeprefix(accounts.SESSION_PREFIX))
    pool = request.app[RUNTIME].pool
    user_id = await store.session_user(pool, session_id)
    user = await store.user_by_id(pool, user_id) if user_id is not None else None
    if user is None:
        raise pages.PageError(404, "Compte introuvable", "Ce compte n'existe plus. Demandez "
                              "à la coordination du territoire.")
    return session_id, user


def _account_page(request: web.Request, user: asyncpg.Record, status: int = 200,
                  error: str | None = None, notice: str | None = None,
                  password_error: str | None = None) -> web.Response:
    enrolment: dict[str, Any] | None = None
    if user["totp_enabled_at"] is None and user["totp_secret"] is not None:
        secret = totp.open_secret(_master(request), user["id"], user["totp_secret"])
        uri = totp.provisioning_uri(secret, user["email"])
        enrolment = {"qr": totp.qr_code(uri), "secret": totp.secret_text(secret), "uri": uri}
    return pages.render(request, "auth/compte.html", status=status, account=user,
                        role=accounts.ROLE_LABELS.get(accounts.Role(user["role"]), user["role"]),
                        enrolment=enrolment, error=error, notice=notice,
                        password_error=password_error)


@pages.page
async def account_page(request: web.Request) -> web.StreamResponse:
    _session, user = await _account(request)
    if user["totp_enabled_at"] is None:  # an enrolment (re)begins, with a secret of its own
        pool = request.app[RUNTIME].pool
        sealed = totp.seal_secret(_master(request), user["id"], totp.new_secret())
        await store.start_totp(pool, user["id"], sealed)
        user = await store.user_by_id(pool, user["id"]) or user
    return _account_page(request, user, notice=request.query.get("message"))


@pages.page
async def change_second_factor(request: web.Request) -> web.StreamResponse:
    """`action=activer`: the code of the app just enrolled switches it on (and ends the
    person's other sessions); `action=desactiver`: a current code switches it off."""
    session_id, user = await _account(request)
    fields = await pages.form(request)
    action, code = fields.get("action"), fields.get("code", "")
    runtime, throttle = request.app[RUNTIME], request.app[THROTTLE]
    address, key = _address(request), f"connexion:{user['email']}"
    if await throttle.wait(key, address):
        return _account_page(request, user, 429, accounts.TOO_MANY)
    master, now = _master(request), runtime.clock()
    done, error = "", accounts.CODE_REFUSAL
    if action == "activer":  # a session alone does not switch it on: whoever holds a
        # stolen one can neither lock the owner out with a phone of their own, nor try
        # passwords here more than at the sign-in (the same lock-out)
        matches = await asyncio.to_thread(accounts.password_matches,
                                          fields.get("password", ""), user["password_hash"])
        async with runtime.pool.acquire() as conn, conn.transaction():
            locked = await store.user_by_id(conn, user["id"], lock=True)
            assert locked is not None
            attempt = accounts.judge_login(
                exists=True, disabled=False, password_ok=matches,
                failures=locked["failed_logins"], locked_until=locked["locked_until"], now=now)
            await store.record_attempt(conn, locked["id"], attempt.failures,
                                       attempt.locked_until)
        if not attempt.ok:
            await throttle.failed(key, address)
            return _account_page(request, user, 401, password_error=PASSWORD_REFUSAL
                                 if attempt.locked_until is None else accounts.GENERIC_REFUSAL)
    async with runtime.pool.acquire() as conn, conn.transaction():
        locked = await store.user_by_id(conn, user["id"], lock=True)
        assert locked is not None
        enabled = locked["totp_enabled_at"] is not None
        if action == "activer" and not enabled and locked["totp_secret"] is not None:
            secret = totp.open_secret(master, locked["id"], locked["totp_secret"])
            checked = totp.check(secret, code, now.timestamp(), locked["totp_last_step"])
            if checked.step is not None:
                await store.enable_totp(conn, locked["id"], checked.step)
                await store.end_other_sessions(conn, locked["id"], session_id)
                done = "active"
            error = ENROL_REFUSAL
        elif action == "desactiver" and enabled:
            secret = totp.open_secret(master, locked["id"], locked["totp_secret"])
            checked = totp.check(secret, code, now.timestamp(), locked["totp_last_step"])
            attempt = accounts.judge_login(  # a session alone does not switch it off
                exists=True, disabled=False, password_ok=checked.ok,
                failures=locked["failed_logins"], locked_until=locked["locked_until"], now=now)
            await store.record_attempt(conn, locked["id"], attempt.failures,
                                       attempt.locked_until)
            if attempt.ok:
                await store.disable_totp(conn, locked["id"])
                done = "desactive"
            elif checked.replayed and attempt.locked_until is None:
                error = accounts.CODE_REPLAYED
        else:  # done meanwhile (another tab), or no such action: the page as it is now
            done = "-"
    if done:
        raise web.HTTPSeeOther(ACCOUNT_PAGE if done == "-" else f"{ACCOUNT_PAGE}?message={done}")
    await throttle.failed(key, address)
    return _account_page(request, await store.user_by_id(runtime.pool, user["id"]) or user,
                         422, error)


def routes(app: web.Application) -> None:
    app.router.add_get(SECOND_STEP, code_form)
    app.router.add_post(SECOND_STEP, check_code)
    app.router.add_get(ACCOUNT_PAGE, account_page)
    app.router.add_post(ACCOUNT_PAGE, change_second_factor)
