"""Bearer JWT verification: pinned algorithm, issuer, audience, expiry, not-before, scopes.

Until the OAuth2 authorization server lands (issue "Intake service"), tokens are signed by a
local Ed25519 key (`relais token` mints one for a given organisation and scopes)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, OKPKey

from services.runtime.problem import Problem

ALGORITHM = "Ed25519"


@dataclass(frozen=True, slots=True)
class Principal:
    org: str
    client_id: str
    scopes: frozenset[str]


def load_or_create_key(path: Path) -> OKPKey:
    if path.exists():
        key = OKPKey.import_key(json.loads(path.read_text()))
        assert isinstance(key, OKPKey)
        return key
    key = OKPKey.generate_key("Ed25519", parameters={"kid": uuid.uuid4().hex[:16]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(key.as_dict(private=True)))
    return key


class TokenIssuer:
    def __init__(self, key: OKPKey, issuer: str, audience: str) -> None:
        self.key, self.issuer, self.audience = key, issuer, audience

    def issue(self, org: str, scopes: str, client_id: str = "dev", ttl: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "aud": self.audience, "sub": client_id, "org": org,
            "scope": scopes, "iat": now, "nbf": now, "exp": now + ttl, "jti": uuid.uuid4().hex,
        }
        header = {"alg": ALGORITHM, "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key, algorithms=[ALGORITHM])


CACHE_SIZE = 10_000
LEEWAY = 30


class TokenVerifier:
    """Verifies tokens, and remembers the ones it verified until they expire: a signature
    check costs more than the rest of a small request (partners reuse a token for minutes)."""

    def __init__(self, keys: KeySet, issuer: str, audience: str) -> None:
        self.keys = keys
        self._verified: dict[str, tuple[Principal, int, int]] = {}
        self.claims = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
            sub={"essential": True},
            org={"essential": True},
        )

    def verify(self, token: str) -> Principal:
        now = int(time.time())
        known = self._verified.get(token)
        if known is not None:
            principal, not_before, expires = known
            if not_before - LEEWAY <= now < expires + LEEWAY:
                return principal
            del self._verified[token]
        try:
            claims = jwt.decode(token, self.keys, algorithms=[ALGORITHM]).claims
            self.claims.validate(claims)
        except (JoseError, ValueError) as exc:
            raise unauthorized("invalid_token", f"The access token is not valid: {exc}") from exc
        principal = Principal(
            org=str(claims["org"]),
            client_id=str(claims["sub"]),
            scopes=frozenset(str(claims.get("scope", "")).split()),
        )
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, int(claims.get("nbf", 0)), int(claims["exp"]))
        return principal


def unauthorized(error: str, detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail,
        headers={"WWW-Authenticate": f'Bearer realm="relais", error="{error}"'},
    )


VERIFIER = web.AppKey("verifier", TokenVerifier)


def authenticate(request: web.Request, scope: str) -> Principal:
    """The caller, who must hold `scope`: 401 without a valid token, 403 without the scope."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token:
        raise Problem(401, "Unauthorized", "A bearer access token is required.",
                      headers={"WWW-Authenticate": 'Bearer realm="relais"'})
    principal = request.app[VERIFIER].verify(token.strip())
    if scope not in principal.scopes:
        challenge = f'Bearer realm="relais", error="insufficient_scope", scope="{scope}"'
        raise Problem(403, "Forbidden", f"The access token lacks the scope '{scope}'.",
                      headers={"WWW-Authenticate": challenge})
    return principal
