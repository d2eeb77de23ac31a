"""Pages for people: the shared layout, the signed-in person, forms with CSRF protection, and
the security headers of HTML answers.

Each service serves its own pages beside its API (`pages.py`, templates in `screens/`,
registered here with `templates()`), calling its own units of work. A session is an access
token in an HttpOnly cookie, verified like any other token (so it is refused everywhere
within seconds once ended), whose client id names the session and whose `name` claim names
the person."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, time
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

import jinja2
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from schemas import vocab_fr
from services.directory import Recurrence, Slot, Weekday, calendar
from services.runtime import links
from services.runtime.app import RUNTIME
from services.runtime.auth import VERIFIER, Principal
from services.runtime.problem import Problem

SESSION_COOKIE = "relais_session"
SESSION_PREFIX = "session:"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
MENU: tuple[tuple[str, str, str], ...] = (
    ("/orientations", "Orientations reçues", "referral:read"),
    ("/orientations/envoyees", "Orientations envoyées", "referral:read"),
    ("/terrain", "Sur le terrain", "intake:write"),
    ("/commission", "Commission", "referral:write"),
    ("/coordination", "Coordination", "directory:write"),
    ("/statistiques", "Statistiques", "stats:read"),
    ("/audit", "Audit", "audit:read"),
)
"""The console's menu (one base URL for every service): address, label, the scope it needs."""
HOME_OF_KIND: dict[str, str] = {"outreach_team": "/terrain"}
"""Where the people of an organisation of this kind land, when their role opens it (an
outreach team starts its day on the field; a partner, with the referrals it received)."""
_packages: dict[str, str] = {"layout": "services.runtime"}
_environment: jinja2.Environment | None = None


def templates(prefix: str, package: str) -> None:
    """Make `package`'s `screens/` templates available as `prefix/<name>`."""
    global _environment
    _packages[prefix] = package
    _environment = None


PARIS = ZoneInfo("Europe/Paris")


def paris(moment: datetime, pattern: str) -> str:
    """A moment as people in France read it (the database keeps UTC)."""
    return moment.astimezone(PARIS).strftime(pattern)


WEEKDAYS: dict[str, str] = {
    Weekday.monday: "lundi", Weekday.tuesday: "mardi", Weekday.wednesday: "mercredi",
    Weekday.thursday: "jeudi", Weekday.friday: "vendredi", Weekday.saturday: "samedi",
    Weekday.sunday: "dimanche",
}
NBSP = "\u00a0"


def hour(moment: time) -> str:
    """9 h, 9 h 30 (as French people write it, without breaking the line inside)."""
    text = f"{moment.hour}{NBSP}h"
    return text if moment.minute == 0 else f"{text}{NBSP}{moment.minute:02d}"


def slot(s: Slot, weekday: bool = True) -> str:
    """"mardi 9 h 30 – 12 h 30" (on one line), or "9 h 30 – 12 h 30" without the day."""
    hours = (hour(s.start), "–", hour(s.end))
    return NBSP.join((WEEKDAYS[s.weekday], *hours) if weekday else hours)


def schedule(slots: Iterable[Slot], recurrences: Iterable[Recurrence] = ()) -> list[str]:
    """Each slot of a week, Monday first: "mardi 9 h 30 – 12 h 30" (on one line), then each
    recurrence: "un mardi sur deux à partir du 17 mars 2026, 9 h 30 – 12 h 30"."""
    order = list(Weekday)
    return [slot(s) for s in sorted(slots, key=lambda s: (order.index(s.weekday), s.start))] \
        + [calendar.in_words(r) for r in recurrences]


def rule_in_words(explanation: dict[str, Any], names: dict[str, str]) -> str:
    """A routing rule's reason, naming organisations by their names, not their ids."""
    reason = str(explanation.get("reason") or "")
    slug, sep, rest = reason.partition(" : ")
    return f"{names[slug]} : {rest}" if sep and slug in names else reason


def environment() -> jinja2.Environment:
    global _environment
    if _environment is None:
        loader = jinja2.PrefixLoader({
            prefix: jinja2.FileSystemLoader(str(resources.files(package) / "screens"))
            for prefix, package in _packages.items()})
        _environment = jinja2.Environment(loader=loader, autoescape=True,
                                          undefined=jinja2.StrictUndefined,
                                          trim_blocks=True, lstrip_blocks=True)
        _environment.globals["fr"] = vocab_fr
        _environment.filters["paris"] = paris
    return _environment


# --- the signed-in person -----------------------------------------------------------------

def session_token(request: web.Request) -> str | None:
    """The token this request acts with: the one `require` accepted (a session's, or a magic
    link's), else the session cookie's."""
    accepted: str | None = request.get("token")
    return accepted or request.cookies.get(SESSION_COOKIE) or None


async def signed_in(request: web.Request) -> Principal | None:
    """The person whose session cookie this is, if it is valid and not ended."""
    token = session_token(request)
    if token is None:
        return None
    try:
        principal = await request.app[VERIFIER].verify(token)
    except Problem:
        return None
    return principal if principal.client_id.startswith(SESSION_PREFIX) else None


async def _link_session(request: web.Request, referral: uuid.UUID) -> Principal | None:
    """A magic link's session for this referral (its cookie is sent to its pages only)."""
    token = request.cookies.get(links.COOKIE)
    if not token:
        return None
    try:
        principal = await request.app[VERIFIER].verify(token)
    except Problem as refused:
        raise PageError(401, "Accès par lien terminé", "Votre accès à cette orientation par le "
                        "lien de l'e-mail a pris fin. Ouvrez de nouveau le lien de l'e-mail "
                        "reçu, depuis le même appareil.") from refused
    if not principal.client_id.startswith(links.PREFIX) or principal.referral != referral:
        return None
    request["token"] = token
    return principal


async def require(request: web.Request, scope: str | None = None, *,
                  link: uuid.UUID | None = None) -> Principal:
    """The signed-in person, who must hold `scope`; else the sign-in page, coming back here
    after. A page of one referral names it (`link`): a magic link's session for that referral
    is then accepted too (never on any other page)."""
    principal, ended = None, None
    if link is not None:  # the link's own session first: this browser may be signed in as
        try:             # someone of another organisation
            principal = await _link_session(request, link)
        except PageError as error:
            ended = error
    if principal is None:
        principal = await signed_in(request)
    if principal is None and ended is not None:
        raise ended
    if principal is None:  # back here after signing in; a form's target is no page to go to
        back = request.path_qs if request.method == "GET" else "/"
        raise web.HTTPSeeOther(f"/connexion?suite={quote(back, safe='')}")
    request["principal"] = principal
    if scope is not None and scope not in principal.scopes:
        raise PageError(403, "Accès refusé", "Votre rôle ne donne pas accès à cette page. "
                        "Demandez à la coordination du territoire si vous en avez besoin.")
    return principal


async def require_script(request: web.Request, scope: str) -> Principal:
    """For the calls a page's script makes (JSON, not a page): the signed-in person, who must
    hold `scope`, from this site with the page's CSRF token in `X-CSRF-Token`; else a French
    problem (401 to sign in again, 403), never a redirection to the sign-in page."""
    principal = await signed_in(request)
    if principal is None:
        raise Problem(401, "Session terminée", "Votre session est terminée : reconnectez-vous "
                      "pour envoyer ce qui attend sur l'appareil.")
    request["principal"] = principal
    if not _same_origin(request) or not hmac.compare_digest(
            request.headers.get("X-CSRF-Token", ""), csrf_token(request)):
        raise Problem(403, "Page expirée", "Cette page a expiré : rechargez-la.")
    if scope not in principal.scopes:
        raise Problem(403, "Accès refusé", "Votre rôle ne permet pas d'enregistrer des "
                      "contacts.")
    return principal


def paragraphs(text: str) -> tuple[str, list[str]]:
    """A text's title and its paragraphs, each on one line (an information notice is
    wrapped)."""
    blocks = [" ".join(line.strip() for line in block.splitlines())
              for block in text.strip().split("\n\n") if block.strip()]
    return (blocks[0], blocks[1:]) if blocks else ("", [])


def bearer(request: web.Request) -> str:
    """The caller's token, from the Authorization header or the session cookie: what a call
    to another service carries on the caller's behalf."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return session_token(request) or ""


def start_session(response: web.StreamResponse, token: str, max_age: int,
                  secure: bool) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, path="/", httponly=True,
                        samesite="Lax", secure=secure)


def end_session(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")


def local_path(target: str | None, default: str = "/") -> str:
    """Where to go after signing in: a path of this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else default


# --- forms ----------------------------------------------------------------------------------

def csrf_token(request: web.Request) -> str:
    """Bound to the session: a page of another site can neither read nor guess it."""
    session = session_token(request) or ""
    digest = hashlib.sha256(b"relais-csrf|" + session.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _same_origin(request: web.Request) -> bool:
    """The form comes from this site: as the browser says (`Sec-Fetch-Site`, `Origin`), the
    origin being this server's own or its public base URL's (behind a reverse proxy)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    ours = {request.host, urlsplit(request.app[RUNTIME].settings.base_url).netloc}
    return origin is None or urlsplit(origin).netloc in ours


async def form(request: web.Request, *, with_session: bool = True) -> MultiDictProxy[str]:
    """The posted form's text fields, from this site (and, when signed in, with the
    session's token)."""
    data = await request.post()
    fields = MultiDictProxy(MultiDict((k, v) for k, v in data.items() if isinstance(v, str)))
    if not _same_origin(request) or (with_session and not hmac.compare_digest(
            fields.get("csrf", ""), csrf_token(request))):
        raise PageError(403, "Formulaire expiré", "Ce formulaire ne vient pas de cette page ou "
                        "a expiré. Rechargez la page et recommencez.")
    return fields


# --- answers --------------------------------------------------------------------------------

class PageError(Exception):
    """A page that cannot be shown, said in French; rendered with the layout."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def menu(principal: Principal | None, path: str) -> list[dict[str, Any]]:
    """The entries this person may open; the current one is the longest address the path
    starts with."""
    allowed = [(href, label) for href, label, scope in MENU
               if principal is not None and principal.referral is None
               and scope in principal.scopes]
    here = max((href for href, _ in allowed if path == href or path.startswith(href + "/")),
               key=len, default=None)
    return [{"href": href, "label": label, "current": href == here}
            for href, label in allowed]


def home_of(principal: Principal, kind: str | None = None) -> str | None:
    """Where a person lands after signing in: their organisation's kind's page (`kind`, from
    the directory) if their role opens it, else the first page their role opens."""
    opened = [href for href, _label, scope in MENU if scope in principal.scopes]
    special = HOME_OF_KIND.get(kind or "")
    return special if special in opened else next(iter(opened), None)


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    principal = request.get("principal")
    page = environment().get_template(name).render(
        user=principal, csrf=csrf_token(request) if principal else "", path=request.path,
        menu=menu(principal, request.path), **context)
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8",
                        headers=html_headers())


def html_headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "Referrer-Policy": "same-origin",
            "X-Frame-Options": "DENY", "Permissions-Policy": "camera=(), microphone=()"}


PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: PageHandler) -> PageHandler:
    """A page handler: a refusal becomes a French page in the layout, never JSON or a 500."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PageError as error:
            return render(request, "layout/error.html", error.status, title=error.title,
                          detail=error.detail)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped
