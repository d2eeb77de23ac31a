"""Bearer JWT verification, done by every service itself: pinned algorithms, issuer,
audience, expiry, not-before, scopes, the access-token type (`at+jwt`), a known `kid`, and a
client that was not revoked.

Keys come from a `KeySource`: the auth service's own keys when it runs in the same process,
else a JWKS URL (Relais's `/.well-known/jwks.json`, or an external identity provider's).
Revoked clients come from a `RevocationSource` beside it: the auth service's store when it
runs in the same process, else its `/oauth/revoked`, read again every few seconds."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import asyncpg
from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import Key, KeySet, OKPKey
from joserfc.jwt import ClaimsOption

from services.runtime.logging import get_logger
from services.runtime.problem import Problem
from services.runtime.ratelimit import charge

log = get_logger("relais.auth")
ALGORITHM = "EdDSA"
"""Tokens are signed with Ed25519 under the JOSE name `EdDSA` (with `crv: Ed25519` in the
JWKS), the one mainstream verifiers (PyJWT, API gateways, identity providers) know today;
RFC 9864's fully-specified `Ed25519` is accepted too (ACCEPTED)."""
ACCEPTED = ("EdDSA", "Ed25519")
# joserfc warns that RFC 9864 deprecates the name `EdDSA`: it is the name verifiers know.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
CACHE_SIZE = 10_000
LEEWAY = 30
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")


@dataclass(frozen=True, slots=True)
class Principal:
    org: str
    client_id: str
    scopes: frozenset[str]
    name: str | None = None
    """The person, for a signed-in session (the `name` claim); None for an API client."""
    referral: uuid.UUID | None = None
    """For a magic link's session only (`ref` claim): the one referral it opens. Handlers
    refuse such a session unless they ask for it (`authenticate(..., link=True)`)."""
    person: uuid.UUID | None = None
    """For a magic link's session only (`per` claim): the person of that referral."""

    @property
    def who(self) -> str:
        """How an action is recorded: the person and their organisation, or the client."""
        return f"{self.name} ({self.org})" if self.name else self.client_id


class KeySource(Protocol):
    async def key(self, kid: str) -> Key | None:
        """The public key with this id, or None when it is unknown."""


class StaticKeys:
    def __init__(self, keys: KeySet) -> None:
        self.keys = keys

    async def key(self, kid: str) -> Key | None:
        return next((k for k in self.keys.keys if k.kid == kid), None)


class RemoteJWKS:
    """A JWKS fetched over HTTP, fetched again (at most every `min_refresh` seconds) when a
    token names an unknown key: rotation needs no restart. While the JWKS cannot be read (the
    auth service restarting, its database away), a token with a key not seen yet is not
    called invalid: the answer is 503 with Retry-After (`KeysUnavailable`), the fetch tried
    again after `retry` seconds, and the partner's token keeps working once it is back."""

    def __init__(self, url: str, min_refresh: float = 10.0, retry: float = 1.0) -> None:
        self.url = url
        self.min_refresh, self.retry = min_refresh, retry
        self._keys: dict[str, Key] = {}
        self._fetched_at = -min_refresh
        self._failed = False
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> Key | None:
        if kid not in self._keys:
            async with self._lock:  # a fetch under way is waited for, not taken as done
                if kid not in self._keys and self._due():
                    await self._fetch()
        if kid not in self._keys and self._failed:
            raise KeysUnavailable(self.url)
        return self._keys.get(kid)

    def _due(self) -> bool:
        return time.monotonic() - self._fetched_at >= (
            self.retry if self._failed else self.min_refresh)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
                    s.get(self.url) as response:
                response.raise_for_status()
                keyset = KeySet.import_key_set(await response.json())
        except (aiohttp.ClientError, TimeoutError, ValueError, JoseError) as exc:
            log.warning("jwks_fetch_failed", url=self.url, error=repr(exc))
            self._failed = True
            return
        self._failed = False
        self._keys = {k.kid: k for k in keyset.keys if k.kid}


class KeysUnavailable(Problem):
    """The signing keys could not be read: the token may well be valid, try again."""

    def __init__(self, url: str) -> None:
        super().__init__(503, "Service Unavailable", "The keys that check access tokens "
                         f"cannot be read now ({url}); try again in a moment.",
                         headers={"Retry-After": "2"})


class RevocationSource(Protocol):
    async def revoked(self, client_id: str) -> bool:
        """Whether this client was revoked (its tokens are refused before they expire)."""


RevokedLoader = Callable[[], Awaitable[Collection[str]]]


class RevocationList:
    """The revoked client ids, loaded again at most every `refresh` seconds (a set lookup
    otherwise). When a load fails, the last list stays in force and a warning is logged:
    the services keep working while the auth service is away."""

    def __init__(self, load: RevokedLoader, refresh: float, origin: str) -> None:
        self._load, self.refresh, self.origin = load, refresh, origin
        self._ids: frozenset[str] = frozenset()
        self._loaded_at = -refresh
        self._lock = asyncio.Lock()

    async def revoked(self, client_id: str) -> bool:
        if self._stale():
            async with self._lock:
                if self._stale():
                    await self._reload()
        return client_id in self._ids

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= self.refresh

    async def _reload(self) -> None:
        try:
            self._ids = frozenset(await self._load())
        except (OSError, TimeoutError, ValueError, KeyError, aiohttp.ClientError,
                asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("revocations_load_failed", origin=self.origin, error=repr(exc))
        self._loaded_at = time.monotonic()


def remote_revocations(url: str) -> RevokedLoader:
    """Revoked client ids from the auth service's `/oauth/revoked` (`{"revoked": [...]}`)."""

    async def load() -> frozenset[str]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as s, \
                s.get(url) as response:
            response.raise_for_status()
            body = await response.json()
        ids = body.get("revoked") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("not a list of revoked client ids")
        return frozenset(ids)

    return load


class TokenIssuer:
    def __init__(self, key: OKPKey, issuer: str, audience: str) -> None:
        self.key, self.issuer, self.audience = key, issuer, audience

    def issue(self, org: str, scopes: str, client_id: str = "dev", ttl: int = 600,
              name: str | None = None, referral: uuid.UUID | None = None,
              person: uuid.UUID | None = None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": client_id, "client_id": client_id,
            "org": org, "scope": scopes, "iat": now, "nbf": now, "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        if name:
            claims["name"] = name
        if referral is not None and person is not None:
            claims["ref"], claims["per"] = str(referral), str(person)
        header = {"alg": ALGORITHM, "kid": self.key.kid, "typ": "at+jwt"}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])


def _kid(token: str) -> str:
    try:
        segment = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        kid = header.get("kid") if isinstance(header, dict) else None
    except (ValueError, UnicodeDecodeError):
        kid = None
    if not isinstance(kid, str) or not kid:
        raise unauthorized("invalid_token", "The access token has no key id (kid).")
    return kid


class TokenVerifier:
    """Verifies tokens, and remembers the ones it verified until they expire: a signature
    check costs more than the rest of a small request (partners reuse a token for minutes)."""

    def __init__(self, keys: KeySource, issuer: str, audience: str,
                 algorithms: Sequence[str] = ACCEPTED, org_claim: str = "org",
                 revocations: RevocationSource | None = None,
                 types: Sequence[str] = ACCESS_TOKEN_TYPES) -> None:
        self.keys = keys
        self.algorithms = list(algorithms)
        self.org_claim = org_claim
        self.revocations = revocations
        self.types = frozenset(t.lower() for t in types)
        self._verified: dict[str, tuple[Principal, int, int]] = {}
        options: dict[str, ClaimsOption] = {
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": audience},
            "exp": {"essential": True},
            "sub": {"essential": True},
            org_claim: {"essential": True},
        }
        self.claims = jwt.JWTClaimsRegistry(None, LEEWAY, **options)

    async def verify(self, token: str) -> Principal:
        principal = await self._verified_principal(token)
        if self.revocations is not None and await self.revocations.revoked(principal.client_id):
            raise unauthorized("invalid_token", "The client of this access token was revoked.")
        return principal

    async def _verified_principal(self, token: str) -> Principal:
        now = int(time.time())
        known = self._verified.get(token)
        if known is not None:
            principal, not_before, expires = known
            if not_before - LEEWAY <= now < expires + LEEWAY:
                return principal
            del self._verified[token]
        key = await self.keys.key(_kid(token))
        if key is None:
            raise unauthorized("invalid_token", "The access token is signed by an unknown key.")
        try:
            decoded = jwt.decode(token, key, algorithms=self.algorithms)
            claims: dict[str, Any] = decoded.claims
            self.claims.validate(claims)
        except (JoseError, ValueError) as exc:
            raise unauthorized("invalid_token", f"The access token is not valid: {exc}") from exc
        if str(decoded.header.get("typ", "")).lower() not in self.types:
            raise unauthorized("invalid_token", "The token is not an access token: its type "
                               "(typ) must be at+jwt (RFC 9068).")
        principal = Principal(
            org=str(claims[self.org_claim]),
            client_id=str(claims.get("client_id", claims["sub"])),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            name=str(claims["name"]) if claims.get("name") else None,
            referral=_uuid_claim(claims, "ref"), person=_uuid_claim(claims, "per"),
        )
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, int(claims.get("nbf", 0)), int(claims["exp"]))
        return principal


def _uuid_claim(claims: dict[str, Any], name: str) -> uuid.UUID | None:
    if name not in claims:
        return None
    try:
        return uuid.UUID(str(claims[name]))
    except ValueError as exc:
        raise unauthorized("invalid_token", f"The claim '{name}' is not a UUID.") from exc


def unauthorized(error: str, detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail,
        headers={"WWW-Authenticate": f'Bearer realm="relais", error="{error}"'},
    )


VERIFIER = web.AppKey("verifier", TokenVerifier)


async def authenticate(request: web.Request, scope: str | None, *,
                       link: bool = False) -> Principal:
    """The caller, who must hold `scope` (if given): 401 without a valid token, 403 without
    the scope, 403 for a magic link's session unless the handler takes one (`link`: it then
    keeps to `principal.referral` / `principal.person`)."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    return await authenticate_token(request, token.strip() if kind.lower() == "bearer" else "",
                                    scope, link=link)


async def authenticate_token(request: web.Request, token: str, scope: str | None, *,
                             link: bool = False) -> Principal:
    """`authenticate` for a token given (a session's, carried to another service's unit of
    work in this process: services/runtime/peers.py)."""
    if not token:
        raise Problem(401, "Unauthorized", "A bearer access token is required.",
                      headers={"WWW-Authenticate": 'Bearer realm="relais"'})
    principal = await request.app[VERIFIER].verify(token)
    await charge(request, principal.client_id)
    if principal.referral is not None and not link:
        raise Problem(403, "Forbidden", "A magic link opens its one referral's pages only.")
    if scope is not None and scope not in principal.scopes:
        challenge = f'Bearer realm="relais", error="insufficient_scope", scope="{scope}"'
        raise Problem(403, "Forbidden", f"The access token lacks the scope '{scope}'.",
                      headers={"WWW-Authenticate": challenge})
    return principal
