"""Opening a magic link (`/lien/<link>`): the email's recipient sees that one referral
without an account.

The link must be one Relais made (sealed, `services/runtime/links.py`), in date, and its
address must still receive its organisation's referrals (the notify service says so). It is
bound to the first device that opens it (a random cookie, of which only the hash is kept): a
link forwarded to someone else, opened elsewhere, shows no data. Its address must be no
account's (a person with an account signs in, with their second factor). The link shows a
button first: opening is a POST, so that robots following links in mailboxes use nothing. It
then opens a short session limited to its referral (cookie sent to that referral's pages
only), in which the referral pages check that the referral is open and the person's consent
still covers it."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from services.auth import store
from services.auth.api import KEYS
from services.runtime import links, peers
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import TokenIssuer
from services.runtime.problem import Problem

LINK_KEY = web.AppKey("link_key", bytes)
SCOPES = "referral:read referral:write people:read"
DEVICE_DAYS = 400
SERVICE_CLIENT = "relais:auth"


def _unusable(status: int, title: str, detail: str) -> pages.PageError:
    return pages.PageError(status, title, detail + " Vous pouvez aussi vous connecter avec "
                           "votre compte Relais, si vous en avez un.")


async def _link(request: web.Request) -> links.Link:
    """The link of the address, if Relais made it, it is in date, and its address is no
    account's (a person with an account signs in: their second factor, their lock-out)."""
    try:
        link = links.open_link(request.app[LINK_KEY], request.match_info["token"])
    except links.LinkError as exc:
        raise _unusable(404, "Lien non valable", "Ce lien n'a pas été fait par Relais, ou il "
                        "a été modifié ou coupé. Ouvrez-le directement depuis l'e-mail, sans "
                        "le recopier.") from exc
    if link.expired(datetime.now(UTC)):
        raise _unusable(410, "Lien expiré", "Ce lien n'est plus valable. Pour une orientation "
                        "encore en attente, Relais envoie un rappel avec un nouveau lien ; "
                        "sinon, contactez la structure qui vous a orienté la personne.")
    principal = await pages.signed_in(request)
    page = f"/orientations/{link.referral}"
    if principal is not None and principal.org == link.org \
            and "referral:read" in principal.scopes:  # signed in already: the page itself
        raise web.HTTPSeeOther(page)
    account = await store.user_by_email(request.app[RUNTIME].pool, link.email)
    if account is not None and account["disabled_at"] is not None:
        raise pages.PageError(410, "Lien retiré", "Le compte Relais de cette adresse est "
                              "désactivé : ses liens ne s'ouvrent plus.")
    if account is not None:
        raise web.HTTPSeeOther(f"/connexion?message=compte&suite={quote(page, safe='')}")
    return link


@pages.page
async def confirm_link(request: web.Request) -> web.StreamResponse:
    """What the email's link shows first: a button. Opening it is a POST, so that the
    robots that follow links in mailboxes (link scanners, previews) use nothing up."""
    await _link(request)
    return pages.render(request, "auth/lien.html", token=request.match_info["token"])


@pages.page
async def open_link(request: web.Request) -> web.StreamResponse:
    await pages.form(request, with_session=False)
    link = await _link(request)
    runtime = request.app[RUNTIME]
    device = request.cookies.get(links.DEVICE_COOKIE) or secrets.token_urlsafe(32)
    device_hash = hashlib.sha256(device.encode()).digest()
    async with runtime.pool.acquire() as conn, conn.transaction():
        row = await store.open_link(conn, link.id, link.referral, link.org, link.email,
                                    device_hash)
    if row["revoked_at"] is not None:
        raise _unusable(410, "Lien retiré", "Ce lien a été retiré.")
    if row["device_hash"] != device_hash:
        raise _unusable(403, "Lien déjà ouvert sur un autre appareil", "Ce lien personnel a "
                        "déjà été ouvert sur un autre appareil : il ne s'ouvre que sur celui-là. "
                        "Si c'est vous qui l'avez ouvert, continuez sur cet appareil. Si vous "
                        "l'avez reçu par transfert, demandez à la coordination de vous ajouter "
                        "aux destinataires de votre structure : vous recevrez votre propre "
                        "lien.")
    if not await _still_listed(request, link):
        await store.revoke_link(runtime.pool, link.id, "address no longer a recipient")
        raise _unusable(410, "Lien retiré", "Cette adresse ne reçoit plus les orientations de "
                        "cette structure : le lien a été retiré.")
    settings = runtime.settings
    issuer = TokenIssuer(await request.app[KEYS].signing(), settings.issuer,
                         settings.jwt_audience)
    ttl = links.SESSION_MINUTES * 60
    token = issuer.issue(link.org, SCOPES, f"{links.PREFIX}{link.id}", ttl, link.email,
                         referral=link.referral, person=link.person)
    secure = settings.base_url.startswith("https://")
    response = web.HTTPSeeOther(f"/orientations/{link.referral}")
    response.set_cookie(links.COOKIE, token, max_age=ttl, path=f"/orientations/{link.referral}",
                        httponly=True, samesite="Lax", secure=secure)
    response.set_cookie(links.DEVICE_COOKIE, device, max_age=DEVICE_DAYS * 86400, path="/lien",
                        httponly=True, samesite="Lax", secure=secure)
    raise response


async def _still_listed(request: web.Request, link: links.Link) -> bool:
    """Whether the notify service still sends this organisation's referrals to the link's
    address (asked as the auth service itself, with a scope no client can hold)."""
    settings = request.app[RUNTIME].settings
    token = TokenIssuer(await request.app[KEYS].signing(), settings.issuer,
                        settings.jwt_audience).issue("relais", "links:check", SERVICE_CLIENT, 60)
    try:
        said = await peers.link_standing(request, str(link.id), token)
    except Problem as exc:
        raise pages.PageError(503, "Service momentanément indisponible", "Le lien n'a pas pu "
                              "être vérifié pour le moment. Réessayez dans quelques "
                              "minutes.") from exc
    return said is not None and said.listed and said.address.lower() == link.email \
        and said.org == link.org


def routes(app: web.Application) -> None:
    peers.setup(app)
    app.router.add_get("/lien/{token}", confirm_link)
    app.router.add_post("/lien/{token}", open_link)
