"""Signing in to the console with OpenID Connect, against any provider (ProConnect, a Keycloak
realm...): the authorization code flow with PKCE (S256), a `state` and a `nonce`; the ID token
checked against the provider's keys (signature, issuer, audience, expiry, nonce); claims the
ID token lacks read from the userinfo endpoint.

Only a person with a Relais account gets in (`relais user create`; no password needed): the
provider's email (verified, when it says) must be the account's, the account enabled, and the
organisation claim must name the account's organisation. The role is the account's. The
provider's identity (`sub`) is bound to the account at the first sign-in: a different one
presenting the same email is refused after. The session then opens as after a password
(`pages.open_session`).

The sign-in under way is kept on the server (`auth.oidc_flows`), found by the hash of its
`state` and bound to the browser that started it by a random value in an HttpOnly cookie
(so a callback address sent by someone else opens nothing). The pure helpers come first, then
the calls to the provider, then the two pages."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit
from uuid import UUID

import aiohttp
import asyncpg
from aiohttp import web
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key
from joserfc.jws import extract_compact

from services.auth import accounts, store
from services.runtime import web as pages
from services.runtime.app import RUNTIME
from services.runtime.auth import LEEWAY, RemoteJWKS
from services.runtime.http import client_address
from services.runtime.logging import get_logger
from services.runtime.ratelimit import SharedLimiter, buckets
from services.runtime.settings import Settings

log = get_logger("relais.oidc")
START = "/connexion/oidc"
CALLBACK = "/connexion/oidc/retour"
FLOW_COOKIE = "relais_oidc"
FLOW_MINUTES = 10
METADATA_TTL = 3600.0
TIMEOUT = aiohttp.ClientTimeout(total=10)
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA", "Ed25519")
"""Signatures accepted on ID tokens: asymmetric only (never `none`, never the client secret)."""
DEFAULT_NAME = "le compte de votre structure"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


class ProviderError(Exception):
    """The provider could not be reached, or answered something this flow must not trust."""


# --- pure helpers -----------------------------------------------------------------------------

def settings_problem(settings: Settings) -> str | None:
    """What is wrong with the OpenID settings (None: fine, or OpenID Connect not used)."""
    if not settings.oidc_issuer:
        return None
    parts = urlsplit(settings.oidc_issuer)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return "RELAIS_OIDC_ISSUER must be an https URL (http only on a loopback address)"
    if not settings.oidc_client_id or not settings.oidc_client_secret:
        return "RELAIS_OIDC_ISSUER needs RELAIS_OIDC_CLIENT_ID and RELAIS_OIDC_CLIENT_SECRET"
    if "openid" not in settings.oidc_scopes.split():
        return "RELAIS_OIDC_SCOPES must include openid"
    return None


def provider_name(settings: Settings) -> str:
    return settings.oidc_name.strip() or DEFAULT_NAME


def button(settings: Settings) -> dict[str, Any] | None:
    """The sign-in page's button for the provider (None when OpenID Connect is not used)."""
    if not settings.oidc_issuer:
        return None
    name = provider_name(settings)
    return {"href": START, "name": name, "proconnect": name.lower() == "proconnect"}


def redirect_uri(settings: Settings) -> str:
    """Where the provider sends the browser back: to be registered with it."""
    return f"{settings.base_url.rstrip('/')}{CALLBACK}"


@dataclass(frozen=True, slots=True)
class Metadata:
    """What Relais uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    token_auth_methods: tuple[str, ...]

    @classmethod
    def from_document(cls, document: object, issuer: str) -> Metadata:
        """The document of `issuer` (OpenID Connect Discovery 1.0), checked: it names the very
        issuer asked, its endpoints are https when the issuer is, and it does PKCE with S256
        when it says which methods it does."""
        if not isinstance(document, dict):
            raise ProviderError("the discovery document is not a JSON object")
        if document.get("issuer") != issuer:
            raise ProviderError(f"the discovery document names another issuer: "
                                f"{document.get('issuer')!r}")
        secure = issuer.startswith("https://")
        endpoints: dict[str, str | None] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                     "userinfo_endpoint"):
            value = document.get(name)
            if value is None and name == "userinfo_endpoint":
                endpoints[name] = None
                continue
            if not isinstance(value, str) or urlsplit(value).scheme not in (
                    ("https",) if secure else ("https", "http")):
                raise ProviderError(f"the discovery document's {name} is missing or not "
                                    f"{'https' if secure else 'http(s)'}")
            endpoints[name] = value
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise ProviderError("the provider does not do PKCE with S256")
        auth = document.get("token_endpoint_auth_methods_supported")
        return cls(issuer=issuer,
                   authorization_endpoint=str(endpoints["authorization_endpoint"]),
                   token_endpoint=str(endpoints["token_endpoint"]),
                   jwks_uri=str(endpoints["jwks_uri"]),
                   userinfo_endpoint=endpoints["userinfo_endpoint"],
                   token_auth_methods=tuple(str(m) for m in auth) if isinstance(auth, list)
                   else ("client_secret_basic",))


@dataclass(frozen=True, slots=True)
class Flow:
    """The secrets of one sign-in: `state` (comes back in the callback), `nonce` (comes back
    in the ID token), the PKCE verifier (sent with the code)."""

    state: str
    nonce: str
    verifier: str


def new_flow() -> Flow:
    return Flow(state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
                verifier=generate_token(64))


def authorization_url(metadata: Metadata, settings: Settings, flow: Flow) -> str:
    return str(prepare_grant_uri(
        metadata.authorization_endpoint, settings.oidc_client_id, "code",
        redirect_uri=redirect_uri(settings), scope=settings.oidc_scopes, state=flow.state,
        nonce=flow.nonce, code_challenge=create_s256_code_challenge(flow.verifier),
        code_challenge_method="S256"))


def client_authentication(metadata: Metadata, client_id: str, secret: str,
                          form: dict[str, str]) -> dict[str, str]:
    """The token request's headers; the credentials go in the Authorization header
    (client_secret_basic, form-encoded first as RFC 6749 2.3.1 says) unless the provider only
    takes them in the body (client_secret_post), where they are added to `form`."""
    if "client_secret_basic" not in metadata.token_auth_methods and \
            "client_secret_post" in metadata.token_auth_methods:
        form.update(client_id=client_id, client_secret=secret)
        return {}
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}


def key_id(token: str) -> str:
    """The `kid` of a signed token's header (the ID token is looked up in the JWKS by it)."""
    try:
        kid = extract_compact(token.encode()).headers().get("kid")
    except (JoseError, ValueError) as exc:
        raise ProviderError(f"not a signed JWT: {exc}") from exc
    if not isinstance(kid, str) or not kid:
        raise ProviderError("the signed JWT names no key (kid)")
    return kid


def id_token_claims(token: str, key: Key, *, issuer: str, client_id: str, nonce: str,
                    access_token: str | None = None, now: int | None = None) -> dict[str, Any]:
    """The ID token's claims, once its signature (by `key`, an asymmetric algorithm), issuer,
    audience (and authorized party), expiry, issue time, nonce and access token hash (when
    given) are checked (OpenID Connect Core 3.1.3.7)."""
    try:
        decoded = jwt.decode(token, key, algorithms=list(ALGORITHMS))
        claims = CodeIDToken(
            decoded.claims, decoded.header,
            options={"iss": {"essential": True, "value": issuer},
                     "aud": {"essential": True, "value": client_id},
                     "nonce": {"essential": True, "value": nonce},
                     "sub": {"essential": True}},
            params={"nonce": nonce, "client_id": client_id, "access_token": access_token})
        claims.validate(now=int(time.time()) if now is None else now, leeway=LEEWAY)
    except (JoseError, ValueError, TypeError) as exc:
        raise ProviderError(f"invalid ID token: {exc}") from exc
    return dict(claims)


def merged_claims(id_claims: Mapping[str, Any], userinfo: Mapping[str, Any]) -> dict[str, Any]:
    """The ID token's claims, completed by the userinfo answer, which must be about the same
    person (Core 5.3.2); the ID token's own claims win."""
    if userinfo.get("sub") != id_claims.get("sub"):
        raise ProviderError("the userinfo answer is about another subject")
    return {**userinfo, **id_claims}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the provider says the person is."""

    subject: str
    email: str | None
    email_verified: bool | None
    organisations: tuple[str, ...]


def identity(claims: Mapping[str, Any], org_claim: str) -> Identity:
    email = claims.get("email")
    verified = claims.get("email_verified")
    if isinstance(verified, str):  # some providers send "true" / "false"
        verified = {"true": True, "false": False}.get(verified.lower())
    org = claims.get(org_claim)
    if isinstance(org, dict):  # e.g. Keycloak's organization claim: {alias: {...}}
        values = tuple(str(k) for k in org)
    elif isinstance(org, list):
        values = tuple(str(v) for v in org if isinstance(v, str | int))
    elif isinstance(org, str | int) and not isinstance(org, bool):
        values = (str(org),)
    else:
        values = ()
    return Identity(subject=str(claims["sub"]),
                    email=email.strip() if isinstance(email, str) and email.strip() else None,
                    email_verified=verified if isinstance(verified, bool) else None,
                    organisations=values)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    title: str
    detail: str


def refusal(who: Identity, account: Mapping[str, Any] | None, *, issuer: str,
            subject_owner: UUID | None, organisations: Mapping[str, str],
            org_claim: str, provider: str) -> Refusal | None:
    """Why this person may not open a session (None: they may), in French. They proved to the
    provider who they are, so telling them whether their own address has an account is
    fine."""
    ask = "Demandez à la coordination du territoire."
    if who.email is None:
        return Refusal(403, "Adresse électronique non transmise", f"Le service de connexion "
                       f"({provider}) n'a pas transmis votre adresse électronique : Relais ne "
                       f"peut pas retrouver votre compte. {ask}")
    if who.email_verified is False:
        return Refusal(403, "Adresse électronique non vérifiée", f"Le service de connexion "
                       f"({provider}) indique que votre adresse {who.email} n'est pas "
                       "vérifiée. Vérifiez-la chez lui, puis reconnectez-vous.")
    if account is None:
        return Refusal(403, "Pas de compte Relais", f"Aucun compte Relais n'est ouvert pour "
                       f"l'adresse {who.email}. La coordination du territoire crée les "
                       "comptes : demandez-lui le vôtre, à cette adresse.")
    if account["disabled_at"] is not None:
        return Refusal(403, "Compte désactivé", f"Votre compte Relais ({who.email}) est "
                       f"désactivé. {ask}")
    if account["oidc_issuer"] == issuer and account["oidc_subject"] != who.subject:
        return Refusal(403, "Compte rattaché à une autre identité", "Votre compte Relais "
                       f"({who.email}) est déjà rattaché à une autre identité chez le service "
                       f"de connexion ({provider}). {ask}")
    if subject_owner is not None and subject_owner != account["id"]:
        return Refusal(403, "Identité rattachée à un autre compte", "Cette identité du service "
                       f"de connexion ({provider}) est déjà rattachée à un autre compte Relais. "
                       f"{ask}")
    if not who.organisations:
        return Refusal(403, "Structure non transmise", f"Le service de connexion ({provider}) "
                       f"n'a pas transmis votre structure (« {org_claim} ») : Relais ne peut "
                       f"pas vérifier qu'elle est celle de votre compte. {ask}")
    if account["org"] not in {organisations.get(v, v) for v in who.organisations}:
        return Refusal(403, "Autre structure", f"Le service de connexion ({provider}) vous "
                       "rattache à une autre structure que celle de votre compte Relais "
                       f"({account['org']}). {ask}")
    return None


def provider_refusal(error: str, provider: str) -> Refusal:
    """The provider sent back an error instead of a code (RFC 6749 4.1.2.1)."""
    if error in ("access_denied", "login_required", "consent_required",
                 "interaction_required"):
        return Refusal(403, "Connexion annulée", f"La connexion chez le service de connexion "
                       f"({provider}) a été annulée ou refusée. Vous pouvez recommencer depuis "
                       "la page de connexion.")
    code = error if _ERROR_CODE.fullmatch(error) else "invalide"
    return Refusal(502, "Connexion impossible", f"Le service de connexion ({provider}) a "
                   f"répondu par une erreur ({code}). Réessayez dans un moment, ou "
                   "connectez-vous avec votre mot de passe.")


# --- the provider -----------------------------------------------------------------------------

class OpenIdProvider:
    """The configured provider: its discovery document (read again after an hour, or after a
    failure) and its keys (read again when an ID token names an unknown one)."""

    def __init__(self) -> None:
        self._metadata: Metadata | None = None
        self._read_at = 0.0
        self._keys: RemoteJWKS | None = None
        self._lock = asyncio.Lock()

    async def metadata(self, issuer: str) -> Metadata:
        if self._metadata is None or self._metadata.issuer != issuer or \
                time.monotonic() - self._read_at > METADATA_TTL:
            async with self._lock:
                if self._metadata is None or self._metadata.issuer != issuer or \
                        time.monotonic() - self._read_at > METADATA_TTL:
                    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
                    self._metadata = Metadata.from_document(await _get_json(url), issuer)
                    self._read_at = time.monotonic()
                    if self._keys is None or self._keys.url != self._metadata.jwks_uri:
                        self._keys = RemoteJWKS(self._metadata.jwks_uri)
        return self._metadata

    async def key(self, kid: str) -> Key:
        key = await self._keys.key(kid) if self._keys is not None else None
        if key is None:
            raise ProviderError(f"the provider's keys (JWKS) have no key {kid!r}")
        return key


async def _get_json(url: str) -> Any:
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, \
                session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise ProviderError(f"{url} answered {response.status}")
            return await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ProviderError(f"{url} could not be read: {exc!r}") from exc


async def exchange(metadata: Metadata, settings: Settings, code: str,
                   verifier: str) -> dict[str, Any]:
    """The token endpoint's answer for this code (with the PKCE verifier)."""
    form = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": redirect_uri(settings), "code_verifier": verifier}
    headers = client_authentication(metadata, settings.oidc_client_id or "",
                                    settings.oidc_client_secret or "", form)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.post(
                metadata.token_endpoint, data=form, allow_redirects=False,
                headers={**headers, "Accept": "application/json"}) as response:
            body = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ProviderError(f"the token endpoint could not be read: {exc!r}") from exc
    if status != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        raise ProviderError(f"the token endpoint answered {status} ({error})")
    if not isinstance(body.get("id_token"), str):
        raise ProviderError("the token endpoint gave no ID token")
    return body


async def userinfo(provider: OpenIdProvider, metadata: Metadata, settings: Settings,
                   access_token: str) -> dict[str, Any]:
    """The userinfo answer: JSON, or a JWT signed by the provider (as ProConnect answers),
    whose issuer and audience, when it names them, must be the provider and Relais."""
    if metadata.userinfo_endpoint is None:
        raise ProviderError("the provider has no userinfo endpoint")
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session, session.get(
                metadata.userinfo_endpoint, allow_redirects=False,
                headers={"Authorization": f"Bearer {access_token}"}) as response:
            status, kind, text = response.status, response.content_type, await response.text()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ProviderError(f"the userinfo endpoint could not be read: {exc!r}") from exc
    if status != 200:
        raise ProviderError(f"the userinfo endpoint answered {status}")
    try:
        if kind == "application/jwt":
            decoded = jwt.decode(text.strip(), await provider.key(key_id(text.strip())),
                                 algorithms=list(ALGORITHMS))
            jwt.JWTClaimsRegistry(
                leeway=LEEWAY, iss={"value": metadata.issuer},
                aud={"value": settings.oidc_client_id or ""},
            ).validate(decoded.claims)
            body: Any = decoded.claims
        else:
            body = json.loads(text)
    except (JoseError, ValueError) as exc:
        raise ProviderError(f"invalid userinfo answer: {exc}") from exc
    if not isinstance(body, dict):
        raise ProviderError("the userinfo answer is not a JSON object")
    return body


async def verified_claims(provider: OpenIdProvider, metadata: Metadata, settings: Settings,
                          tokens: Mapping[str, Any], nonce: str) -> dict[str, Any]:
    """The person's claims: the checked ID token's, completed by userinfo when it lacks the
    email or the organisation."""
    id_token = str(tokens["id_token"])
    access_token = tokens.get("access_token")
    access_token = access_token if isinstance(access_token, str) else None
    claims = id_token_claims(id_token, await provider.key(key_id(id_token)),
                             issuer=metadata.issuer, client_id=settings.oidc_client_id or "",
                             nonce=nonce, access_token=access_token)
    if ("email" not in claims or settings.oidc_org_claim not in claims) and \
            metadata.userinfo_endpoint is not None and access_token is not None:
        claims = merged_claims(claims, await userinfo(provider, metadata, settings,
                                                      access_token))
    return claims


# --- the pages --------------------------------------------------------------------------------

PROVIDER = web.AppKey("oidc_provider", OpenIdProvider)
STARTS = web.AppKey("oidc_starts", SharedLimiter)
STARTS_PER_SECOND, STARTS_BURST = 0.5, 20
"""Sign-ins started per address (each writes a row, kept 10 minutes): a person needs a few."""
EXPIRED = pages.PageError(400, "Connexion expirée", "Cette connexion a expiré, a déjà servi ou "
                          "n'a pas été commencée dans ce navigateur. Recommencez depuis la page "
                          "de connexion.")


def _browser_value(request: web.Request) -> str:
    """The browser's random value, kept across its sign-ins under way (tabs), else a new one."""
    value = request.cookies.get(FLOW_COOKIE, "")
    return value if re.fullmatch(r"[A-Za-z0-9_-]{43}", value) else secrets.token_urlsafe(32)


@pages.page
async def start(request: web.Request) -> web.StreamResponse:
    """Leave for the provider: a new sign-in (its state, nonce and verifier kept here)."""
    settings = request.app[RUNTIME].settings
    if not settings.oidc_issuer:
        raise web.HTTPSeeOther("/connexion")
    suite = pages.local_path(request.query.get("suite"))
    if await pages.signed_in(request) is not None:
        raise web.HTTPSeeOther(suite)
    address = client_address(request, settings.trusted_proxies)
    if await request.app[STARTS].take(address) > 0:
        raise pages.PageError(429, "Trop de connexions commencées", "Trop de connexions ont "
                              "été commencées depuis cette adresse. Réessayez dans une "
                              "minute.")
    try:
        metadata = await request.app[PROVIDER].metadata(settings.oidc_issuer)
    except ProviderError as exc:
        log.warning("oidc_provider_unreachable", error=str(exc))
        raise pages.PageError(502, "Service de connexion injoignable", "Le service de connexion "
                              f"({provider_name(settings)}) ne répond pas. Réessayez dans un "
                              "moment, ou connectez-vous avec votre mot de passe.") from exc
    flow, browser = new_flow(), _browser_value(request)
    await store.insert_oidc_flow(
        request.app[RUNTIME].pool, accounts.token_hash(flow.state),
        accounts.token_hash(browser), flow.nonce, flow.verifier, suite,
        datetime.now(UTC) + timedelta(minutes=FLOW_MINUTES))
    response = web.HTTPSeeOther(authorization_url(metadata, settings, flow))
    response.set_cookie(FLOW_COOKIE, browser, max_age=FLOW_MINUTES * 60, path=START,
                        httponly=True, samesite="Lax",
                        secure=settings.base_url.startswith("https://"))
    raise response


@pages.page
async def callback(request: web.Request) -> web.StreamResponse:
    """Back from the provider: the code exchanged, the ID token checked, the account found;
    then the session, or a page that says why not (nothing written)."""
    runtime = request.app[RUNTIME]
    settings = runtime.settings
    if not settings.oidc_issuer:
        raise web.HTTPSeeOther("/connexion")
    name = provider_name(settings)
    query = request.query
    state, browser = query.get("state", ""), request.cookies.get(FLOW_COOKIE, "")
    flow = await store.take_oidc_flow(runtime.pool, accounts.token_hash(state),
                                      accounts.token_hash(browser)) if state and browser else None
    if flow is None:
        raise EXPIRED
    if "error" in query:
        answer = provider_refusal(query["error"], name)
        log.info("oidc_refused_by_provider", error=query["error"][:64])
        raise pages.PageError(answer.status, answer.title, answer.detail)
    provider = request.app[PROVIDER]
    try:
        metadata = await provider.metadata(settings.oidc_issuer)
        if "iss" in query and query["iss"] != metadata.issuer:  # RFC 9207: no mix-up
            raise ProviderError("the callback names another issuer")
        if not query.get("code"):
            raise ProviderError("the callback has no code")
        tokens = await exchange(metadata, settings, query["code"], flow["verifier"])
        claims = await verified_claims(provider, metadata, settings, tokens, flow["nonce"])
    except ProviderError as exc:
        log.warning("oidc_failed", error=str(exc))
        raise pages.PageError(502, "Connexion impossible", "La réponse du service de connexion "
                              f"({name}) n'a pas pu être vérifiée. Réessayez dans un moment, ou "
                              "connectez-vous avec votre mot de passe.") from exc
    who = identity(claims, settings.oidc_org_claim)
    account: asyncpg.Record | None = None
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            account = await store.user_by_email(conn, who.email, lock=True) \
                if who.email else None
            owner = await store.oidc_subject_owner(conn, metadata.issuer, who.subject)
            refused = refusal(who, account, issuer=metadata.issuer, subject_owner=owner,
                              organisations=settings.oidc_organisations,
                              org_claim=settings.oidc_org_claim, provider=name)
            if refused is None and account is not None and owner is None:
                await store.bind_oidc_subject(conn, account["id"], metadata.issuer,
                                              who.subject)
    except asyncpg.UniqueViolationError:  # the identity was bound to another account meanwhile
        refused = Refusal(403, "Identité rattachée à un autre compte", "Cette identité du "
                          f"service de connexion ({name}) vient d'être rattachée à un autre "
                          "compte Relais. Demandez à la coordination du territoire.")
    if refused is not None or account is None:
        refused = refused or Refusal(403, "Connexion refusée", "")
        log.info("oidc_sign_in_refused", why=refused.title)
        raise pages.PageError(refused.status, refused.title, refused.detail)
    from services.auth.pages import open_session  # (pages imports this module: its button)

    response = await open_session(request, account, flow["suite"])
    response.del_cookie(FLOW_COOKIE, path=START)
    raise response


def routes(app: web.Application) -> None:
    app[PROVIDER] = OpenIdProvider()
    app[STARTS] = SharedLimiter("oidc-starts", STARTS_PER_SECOND, STARTS_BURST, buckets(app))
    app.router.add_get(START, start)
    app.router.add_get(CALLBACK, callback)
