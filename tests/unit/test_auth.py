"""Token verification rejects every forged, stale or misdirected token."""

from __future__ import annotations

import base64
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from services.runtime.auth import ALGORITHM, StaticKeys, TokenIssuer, TokenVerifier
from services.runtime.problem import Problem

KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"})
VERIFIER = TokenVerifier(StaticKeys(KeySet([KEY])), "relais", "relais-api")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "relais", "aud": "relais-api", "sub": "client-1", "org": "ccas",
            "scope": "intake:write", "iat": now, "nbf": now, "exp": now + 300} | overrides


def sign(payload: dict[str, Any], key: OKPKey = KEY, kid: str = "k1") -> str:
    return jwt.encode({"alg": ALGORITHM, "kid": kid, "typ": "at+jwt"}, payload, key,
                      algorithms=[ALGORITHM])


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_a_good_token_gives_the_caller_and_its_scopes() -> None:
    principal = await VERIFIER.verify(TokenIssuer(KEY, "relais", "relais-api").issue("ccas", "a b"))
    assert principal.org == "ccas"
    assert principal.scopes == {"a", "b"}


def forged_tokens() -> dict[str, str]:
    good = sign(claims())
    head, body, sig = good.split(".")
    # The classic confusion attack, forged by hand (joserfc itself refuses to build it).
    signing_input = f"{b64({'alg': 'HS256', 'kid': 'k1'})}.{body}"
    hmac_sig = hmac.new(KEY.as_bytes(private=False), signing_input.encode(), "sha256").digest()
    return {
        "alg none": f"{b64({'alg': 'none', 'kid': 'k1'})}.{body}.",
        "HMAC signed with the public key": f"{signing_input}.{b64(hmac_sig)}",
        "wrong audience": sign(claims(aud="someone-else")),
        "wrong issuer": sign(claims(iss="https://evil.example")),
        "expired": sign(claims(exp=int(time.time()) - 3600)),
        "not yet valid": sign(claims(nbf=int(time.time()) + 3600)),
        "unknown kid": sign(claims(), OKPKey.generate_key("Ed25519"), kid="k2"),
        "tampered payload": f"{head}.{b64(claims(org='mission-locale'))}.{sig}",
        "tampered signature": f"{head}.{body}.{sig[:-4]}AAAA",
        "no org": sign({k: v for k, v in claims().items() if k != "org"}),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize("name", list(forged_tokens()))
async def test_a_bad_token_is_refused_with_401(name: str) -> None:
    with pytest.raises(Problem) as caught:
        await VERIFIER.verify(forged_tokens()[name])
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_remembered_token_is_refused_once_expired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = TokenVerifier(StaticKeys(KeySet([KEY])), "relais", "relais-api")
    token = sign(claims(exp=int(time.time()) + 60))
    assert (await verifier.verify(token)).org == "ccas"
    assert (await verifier.verify(token)).org == "ccas"  # from the cache
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Problem):
        await verifier.verify(token)
