"""The pure parts of signing in with OpenID Connect (services/auth/oidc.py): settings, the
discovery document, the authorization request, the ID token's checks, the claims, and who
may come in."""

from __future__ import annotations

import base64
import functools
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey

from services.auth import oidc
from services.runtime.settings import Settings

ISSUER = "https://idp.example.org/realms/relais"
CLIENT = "relais-console"
DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/auth",
    "token_endpoint": f"{ISSUER}/token",
    "jwks_uri": f"{ISSUER}/certs",
    "userinfo_endpoint": f"{ISSUER}/userinfo",
    "code_challenge_methods_supported": ["plain", "S256"],
}


def settings(**values: Any) -> Settings:
    return Settings.model_validate({"oidc_issuer": ISSUER, "oidc_client_id": CLIENT,
                                    "oidc_client_secret": "s3cret:&", "public_url":
                                    "https://relais.example.org"} | values)


@pytest.mark.parametrize(("values", "problem"), [
    ({"oidc_issuer": None}, None),
    ({}, None),
    ({"oidc_issuer": "http://127.0.0.1:9000"}, None),
    ({"oidc_issuer": "http://idp.example.org"}, "https"),
    ({"oidc_client_secret": None}, "CLIENT_SECRET"),
    ({"oidc_scopes": "email siret"}, "openid"),
])
def test_settings(values: dict[str, Any], problem: str | None) -> None:
    found = oidc.settings_problem(settings(**values))
    assert (found is None) if problem is None else (problem in str(found))


def test_the_button_names_the_provider() -> None:
    assert oidc.button(settings(oidc_issuer=None)) is None
    generic = oidc.button(settings())
    assert generic is not None and generic["name"] == "le compte de votre structure"
    assert not generic["proconnect"]
    pro = oidc.button(settings(oidc_name="ProConnect"))
    assert pro is not None and pro["proconnect"]


def test_the_discovery_document_is_checked() -> None:
    metadata = oidc.Metadata.from_document(DOCUMENT, ISSUER)
    assert metadata.token_endpoint == f"{ISSUER}/token"
    assert metadata.token_auth_methods == ("client_secret_basic",)
    for broken in ({"issuer": "https://other.example.org"},
                   {"token_endpoint": "http://idp.example.org/token"},
                   {"jwks_uri": None},
                   {"code_challenge_methods_supported": ["plain"]}):
        with pytest.raises(oidc.ProviderError):
            oidc.Metadata.from_document(DOCUMENT | broken, ISSUER)
    with pytest.raises(oidc.ProviderError):
        oidc.Metadata.from_document(["not", "an", "object"], ISSUER)
    no_userinfo = {k: v for k, v in DOCUMENT.items() if k != "userinfo_endpoint"}
    assert oidc.Metadata.from_document(no_userinfo, ISSUER).userinfo_endpoint is None


def test_the_authorization_request_carries_pkce_state_and_nonce() -> None:
    flow = oidc.new_flow()
    assert len({flow.state, flow.nonce, flow.verifier}) == 3 and len(flow.verifier) >= 43
    url = oidc.authorization_url(oidc.Metadata.from_document(DOCUMENT, ISSUER), settings(),
                                 flow)
    assert url.startswith(f"{ISSUER}/auth?")
    query = dict(parse_qsl(urlsplit(url).query))
    assert query == {
        "response_type": "code", "client_id": CLIENT,
        "redirect_uri": "https://relais.example.org/connexion/oidc/retour",
        "scope": "openid email profile organisation", "state": flow.state,
        "nonce": flow.nonce, "code_challenge": create_s256_code_challenge(flow.verifier),
        "code_challenge_method": "S256"}


def test_client_authentication_basic_or_post() -> None:
    metadata = oidc.Metadata.from_document(DOCUMENT, ISSUER)
    form: dict[str, str] = {}
    headers = oidc.client_authentication(metadata, "a b", "s3cret:&", form)
    assert form == {}
    assert base64.b64decode(headers["Authorization"].removeprefix("Basic ")) == \
        b"a%20b:s3cret%3A%26"  # form-encoded first (RFC 6749 2.3.1)
    post_only = oidc.Metadata.from_document(
        DOCUMENT | {"token_endpoint_auth_methods_supported": ["client_secret_post"]}, ISSUER)
    assert oidc.client_authentication(post_only, "a", "b", form) == {}
    assert form == {"client_id": "a", "client_secret": "b"}


@functools.cache
def rsa() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"})


def id_token(key: Any = None, alg: str = "RS256", **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": "abc", "aud": CLIENT, "exp": now + 300, "iat": now,
              "nonce": "n0nce"} | changes
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key or rsa(), algorithms=[alg])


def check(token: str, key: Any = None) -> dict[str, Any]:
    return oidc.id_token_claims(token, key or rsa(), issuer=ISSUER, client_id=CLIENT,
                                nonce="n0nce")


def test_a_good_id_token() -> None:
    token = id_token(email="c@example.org")
    assert oidc.key_id(token) == "k1"
    claims = check(token)
    assert claims["sub"] == "abc" and claims["email"] == "c@example.org"
    assert check(id_token(aud=[CLIENT, "other"], azp=CLIENT))["sub"] == "abc"


@pytest.mark.parametrize("changes", [
    {"iss": "https://other.example.org"},
    {"aud": "another-client"},
    {"aud": [CLIENT, "other"], "azp": "other"},
    {"aud": [CLIENT, "other"]},  # several audiences: azp required
    {"exp": int(time.time()) - 3600},
    {"nonce": "another"},
    {"nonce": None},
    {"iat": None},
    {"sub": None},
])
def test_a_bad_id_token_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(oidc.ProviderError):
        check(id_token(**changes))


def test_only_the_provider_s_key_and_asymmetric_algorithms() -> None:
    with pytest.raises(oidc.ProviderError):  # signed by another key
        check(id_token(RSAKey.generate_key(2048, parameters={"kid": "k1"})))
    secret = OctKey.import_key(b"the client secret, which the client knows too")
    with pytest.raises(oidc.ProviderError):  # HS256: a MAC, not the provider's signature
        check(id_token(secret, "HS256"), secret)
    with pytest.raises(oidc.ProviderError):
        oidc.key_id("not.a.token")
    unsigned = jwt.encode({"alg": "RS256"}, {"sub": "x"}, rsa(), algorithms=["RS256"])
    with pytest.raises(oidc.ProviderError):  # no kid
        oidc.key_id(unsigned)


def test_userinfo_completes_the_id_token_for_the_same_person_only() -> None:
    merged = oidc.merged_claims({"sub": "abc", "email": "id@example.org"},
                                {"sub": "abc", "email": "ui@example.org", "siret": "1"})
    assert merged == {"sub": "abc", "email": "id@example.org", "siret": "1"}
    with pytest.raises(oidc.ProviderError):
        oidc.merged_claims({"sub": "abc"}, {"sub": "xyz", "email": "ui@example.org"})


@pytest.mark.parametrize(("claim", "expected"), [
    ("mission-locale", ("mission-locale",)),
    (13002526500013, ("13002526500013",)),
    (["a", "b", {"no": 1}], ("a", "b")),
    ({"mission-locale": {"id": "x"}}, ("mission-locale",)),
    (None, ()),
    (True, ()),
])
def test_the_organisation_claim(claim: Any, expected: tuple[str, ...]) -> None:
    who = oidc.identity({"sub": "s", "org": claim}, "org")
    assert who.organisations == expected


def test_email_and_its_verification() -> None:
    assert oidc.identity({"sub": 1, "email": " a@b.org "}, "o").email == "a@b.org"
    assert oidc.identity({"sub": 1, "email": ""}, "o").email is None
    assert oidc.identity({"sub": 1}, "o").email_verified is None
    assert oidc.identity({"sub": 1, "email_verified": "false"}, "o").email_verified is False
    assert oidc.identity({"sub": 1, "email_verified": True}, "o").email_verified is True


ACCOUNT_ID = uuid.uuid4()


def account(**changes: Any) -> dict[str, Any]:
    return {"id": ACCOUNT_ID, "org": "mission-locale", "disabled_at": None,
            "oidc_issuer": None, "oidc_subject": None} | changes


def judge(who: oidc.Identity, found: dict[str, Any] | None,
          owner: uuid.UUID | None = None, mapping: dict[str, str] | None = None) -> str | None:
    refused = oidc.refusal(who, found, issuer=ISSUER, subject_owner=owner,
                           organisations=mapping or {}, org_claim="siret", provider="ProConnect")
    assert refused is None or refused.status == 403
    return refused.title if refused else None


def test_who_may_come_in() -> None:
    who = oidc.Identity("abc", "c@ml.org", True, ("mission-locale",))
    assert judge(who, account()) is None
    assert judge(oidc.Identity("abc", "c@ml.org", None, ("mission-locale",)), account()) is None
    assert judge(who, account(oidc_issuer=ISSUER, oidc_subject="abc"), ACCOUNT_ID) is None
    assert judge(who, account(oidc_issuer="https://old.example.org", oidc_subject="x")) is None
    siret = oidc.Identity("abc", "c@ml.org", True, ("13002526500013",))
    assert judge(siret, account(), mapping={"13002526500013": "mission-locale"}) is None
    assert judge(siret, account()) == "Autre structure"
    refusals = {
        "Adresse électronique non transmise": (oidc.Identity("abc", None, None, ()),
                                               account()),
        "Adresse électronique non vérifiée": (oidc.Identity("abc", "c@ml.org", False, ()),
                                              account()),
        "Pas de compte Relais": (who, None),
        "Compte désactivé": (who, account(disabled_at="2026-01-01")),
        "Compte rattaché à une autre identité": (
            who, account(oidc_issuer=ISSUER, oidc_subject="another")),
        "Structure non transmise": (oidc.Identity("abc", "c@ml.org", True, ()), account()),
        "Autre structure": (oidc.Identity("abc", "c@ml.org", True, ("france-travail",)),
                            account()),
    }
    for title, (person, found) in refusals.items():
        assert judge(person, found) == title
    assert judge(who, account(), uuid.uuid4()) == "Identité rattachée à un autre compte"


def test_the_provider_s_errors() -> None:
    assert oidc.provider_refusal("access_denied", "X").status == 403
    failed = oidc.provider_refusal("server_error", "X")
    assert failed.status == 502 and "server_error" in failed.detail
    assert "<script>" not in oidc.provider_refusal("<script>", "X").detail
