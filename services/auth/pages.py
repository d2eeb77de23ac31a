"""Signing in as oneself: the sign-in page, the invitation link that sets a password, and
signing out (this session, or every session of the person)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from services.auth import accounts, oidc, store
from services.auth.api import KEYS, THROTTLE
from services.runtime import peers
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, TokenIssuer
from services.runtime.http import client_address
from services.runtime.problem import Problem

PENDING_COOKIE = "relais_connexion"
"""A right password awaiting its code (the second factor): a random id, of which the database
keeps the hash (`auth.pending_logins`)."""


@pages.page
async def home(request: web.Request) -> web.StreamResponse:
    """The first page the person's role opens."""
    principal = await pages.require(request)
    target = pages.home_of(principal, await _kind_of(request, principal))
    if target is None:
        raise pages.PageError(403, "Aucune page pour votre rôle", "Votre compte n'ouvre "
                              "encore aucune page. Demandez à la coordination de votre "
                              "structure.")
    raise web.HTTPSeeOther(target)


async def _kind_of(request: web.Request, principal: Principal) -> str | None:
    """The kind of the person's organisation, as the directory says (`GET /v1/directory`, as
    the person), when a page of their role is for one kind only; else, or when the directory
    cannot be read, None (the role's first page then)."""
    if not any(href in pages.HOME_OF_KIND.values() and scope in principal.scopes
               for href, _label, scope in pages.MENU):
        return None
    try:
        directory = await peers.directory(request)
    except Problem:
        return None
    organisation = directory.get(principal.org) if directory else None
    return organisation.kind if organisation else None


@pages.page
async def sign_in_form(request: web.Request) -> web.StreamResponse:
    if await pages.signed_in(request) is not None:
        raise web.HTTPSeeOther(pages.local_path(request.query.get("suite")))
    return pages.render(request, "auth/connexion.html", suite=request.query.get("suite", ""),
                        email="", error=None, notice=request.query.get("message"),
                        oidc=oidc.button(request.app[RUNTIME].settings))


@pages.page
async def sign_in(request: web.Request) -> web.StreamResponse:
    fields = await pages.form(request, with_session=False)
    email, password = fields.get("email", "").strip(), fields.get("password", "")
    suite = pages.local_path(fields.get("suite"))  # "/" then leads to the role's first page
    runtime = request.app[RUNTIME]
    throttle = request.app[THROTTLE]
    address = client_address(request, runtime.settings.trusted_proxies)
    if await throttle.wait(f"connexion:{email.lower()}", address):
        return pages.render(request, "auth/connexion.html", status=429, suite=suite,
                            email=email, error=accounts.TOO_MANY, notice=None,
                            oidc=oidc.button(runtime.settings))
    # The hash is checked before a connection is taken: a flood of sign-ins must not hold
    # the pool that every service shares.
    known = await store.user_by_email(runtime.pool, email) if email else None
    checked = known["password_hash"] if known else None
    matches = await asyncio.to_thread(accounts.password_matches, password, checked)
    now = datetime.now(UTC)
    pending, digest = accounts.new_token()
    async with runtime.pool.acquire() as conn, conn.transaction():
        user = await store.user_by_email(conn, email, lock=True) if known else None
        attempt = accounts.judge_login(
            exists=user is not None, disabled=bool(user and user["disabled_at"]),
            password_ok=matches and user is not None and user["password_hash"] == checked,
            failures=user["failed_logins"] if user else 0,
            locked_until=user["locked_until"] if user else None, now=now)
        needs_code = attempt.ok and user is not None and user["totp_enabled_at"] is not None
        if user is not None and not needs_code:  # a right password alone does not clear
            await store.record_attempt(  # the failures of wrong codes
                conn, user["id"], attempt.failures, attempt.locked_until)
        if needs_code and user is not None:
            await store.insert_pending_login(conn, digest, user["id"], suite, now + timedelta(
                minutes=accounts.PENDING_MINUTES))
    if not attempt.ok or user is None:
        await throttle.failed(f"connexion:{email.lower()}", address)
        return pages.render(request, "auth/connexion.html", status=401, suite=suite,
                            email=email, error=attempt.message, notice=None,
                            oidc=oidc.button(runtime.settings))
    if needs_code:  # no session yet: the second step first (services/auth/second_factor.py)
        response = web.HTTPSeeOther("/connexion/code")
        response.set_cookie(PENDING_COOKIE, pending, max_age=accounts.PENDING_MINUTES * 60,
                            path="/connexion", httponly=True, samesite="Strict",
                            secure=runtime.settings.base_url.startswith("https://"))
        raise response
    raise await open_session(request, user, suite)


async def open_session(request: web.Request, user: Mapping[str, Any],
                       suite: str = "/") -> web.HTTPSeeOther:
    """The one way a session opens, for a person who has proved who they are (their password,
    and their code when they have a second factor): the session's row, its token in the
    cookie, and the answer that goes on to `suite` (a local path; "/" leads to the role's
    first page). `user` is their `auth.users` row; the caller has checked that the account is
    enabled."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    session_id, hours = uuid.uuid4(), accounts.SESSION_HOURS
    await store.insert_session(runtime.pool, session_id, user["id"],
                               datetime.now(UTC) + timedelta(hours=hours))
    issuer = TokenIssuer(await request.app[KEYS].signing(), settings.issuer,
                         settings.jwt_audience)
    token = issuer.issue(user["org"], " ".join(accounts.SCOPES_OF[accounts.Role(user["role"])]),
                         f"{accounts.SESSION_PREFIX}{session_id}", hours * 3600, user["name"])
    response = web.HTTPSeeOther(pages.local_path(suite))
    pages.start_session(response, token, hours * 3600,
                        secure=settings.base_url.startswith("https://"))
    return response


@pages.page
async def sign_out(request: web.Request) -> web.StreamResponse:
    """Ends this session, or every session of the person ("partout"): refused everywhere
    within seconds."""
    principal = await pages.require(request)
    fields = await pages.form(request)
    pool = request.app[RUNTIME].pool
    session_id = uuid.UUID(principal.client_id.removeprefix(accounts.SESSION_PREFIX))
    if fields.get("partout"):
        user_id = await store.session_user(pool, session_id)
        if user_id is not None:
            await store.end_sessions(pool, user_id)
    else:
        await store.end_session(pool, session_id)
    response = web.HTTPSeeOther("/connexion?message=deconnecte")
    pages.end_session(response)
    # The device forgets this site: the outreach app's queue (sealed, but wiped all the same),
    # its service worker and what it kept (services/intake/offline_pages.py).
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    raise response


async def _invitation(request: web.Request) -> tuple[bytes, dict[str, object]]:
    digest = accounts.token_hash(request.match_info["token"])
    row = await store.open_invitation(request.app[RUNTIME].pool, digest)
    if row is None:
        raise pages.PageError(404, "Lien expiré ou déjà utilisé", "Ce lien d'invitation n'est "
                              "plus valable. Demandez à la coordination du territoire un "
                              "nouveau lien.")
    return digest, dict(row)


@pages.page
async def invitation_form(request: web.Request) -> web.StreamResponse:
    _digest, user = await _invitation(request)
    return pages.render(request, "auth/invitation.html", invited=user, error=None)


@pages.page
async def accept_invitation(request: web.Request) -> web.StreamResponse:
    digest, user = await _invitation(request)
    fields = await pages.form(request, with_session=False)
    password = fields.get("password", "")
    problem = accounts.password_problem(password, fields.get("confirmation", ""))
    if problem:
        return pages.render(request, "auth/invitation.html", status=422, invited=user,
                            error=problem)
    hashed = await asyncio.to_thread(accounts.hash_password, password)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        if not await store.accept_invitation(conn, digest, uuid.UUID(str(user["id"])), hashed):
            raise pages.PageError(409, "Lien déjà utilisé", "Ce lien vient d'être utilisé.")
    raise web.HTTPSeeOther("/connexion?message=mot-de-passe")


def routes(app: web.Application) -> None:
    pages.templates("auth", "services.auth")
    app.router.add_get("/", home)
    app.router.add_get("/connexion", sign_in_form)
    app.router.add_post("/connexion", sign_in)
    app.router.add_post("/deconnexion", sign_out)
    app.router.add_get("/invitation/{token}", invitation_form)
    app.router.add_post("/invitation/{token}", accept_invitation)
