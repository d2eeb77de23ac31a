"""Issue #18, points 1 and 2: Relais's tokens and OAuth2 metadata as tools nobody on the
project wrote read them, over real HTTP. Two independent JOSE libraries (PyJWT and joserfc)
verify an access token from the published JWKS alone, with the audience the protected
resource metadata (RFC 9728) gives; authlib validates the authorization server metadata
(RFC 8414); a scope the client does not hold is `invalid_scope`, not an empty grant."""

from __future__ import annotations

import jwt as pyjwt
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet

from services.auth.api import KEYS
from services.runtime.settings import Settings
from tests.integration.conftest import Client
from tests.integration.test_oauth import get_token, new_client, read_intake


async def token(client: Client, scopes: str = "intake:read consent:read") -> str:
    client_id, secret = await new_client(client, "ccas", scopes)
    body = await (await get_token(client, client_id, secret)).json()
    return str(body["access_token"])


async def test_two_jose_libraries_verify_a_token_from_the_jwks(client: Client,
                                                               settings: Settings) -> None:
    access = await token(client)
    jwks = await (await client.get("/.well-known/jwks.json")).json()
    resource = await (await client.get("/.well-known/oauth-protected-resource")).json()
    assert resource["resource"] == settings.jwt_audience
    assert resource["authorization_servers"] == [settings.issuer]
    [key] = jwks["keys"]
    assert (key["alg"], key["crv"], key["use"]) == ("EdDSA", "Ed25519", "sig")

    header = pyjwt.get_unverified_header(access)
    signing = pyjwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = pyjwt.decode(access, signing, algorithms=["EdDSA"],
                          audience=resource["resource"], issuer=settings.issuer)
    assert claims["org"] == "ccas" and set(claims["scope"].split()) == {"intake:read",
                                                                         "consent:read"}
    assert header["typ"] == "at+jwt"

    decoded = joserfc_jwt.decode(access, KeySet.import_key_set(jwks), algorithms=["EdDSA"])
    assert decoded.claims["sub"] == claims["sub"] and decoded.header["alg"] == "EdDSA"


async def test_a_token_signed_under_the_rfc_9864_name_is_accepted_too(client: Client,
                                                                      settings: Settings) -> None:
    key = await client.app[KEYS].signing()
    claims = pyjwt.decode(await token(client), options={"verify_signature": False})
    renamed = joserfc_jwt.encode({"alg": "Ed25519", "kid": key.kid, "typ": "at+jwt"}, claims,
                                 key, algorithms=["Ed25519"])
    assert await read_intake(client, renamed) == 404  # authenticated: the intake is unknown
    assert await read_intake(client, renamed[:-4] + "AAAA") == 401


async def test_authlib_validates_the_metadata(client: Client) -> None:
    metadata = await (await client.get("/.well-known/oauth-authorization-server")).json()
    AuthorizationServerMetadata(metadata).validate()  # raises on any violation
    assert "token_endpoint_auth_signing_alg_values_supported" not in metadata  # no JWT auth
    assert metadata["response_types_supported"] == ["none"]  # no authorization endpoint


async def test_a_scope_the_client_does_not_hold_is_refused_and_a_partial_one_said(
        client: Client) -> None:
    client_id, secret = await new_client(client, "ccas", "intake:read")
    none_held = await get_token(client, client_id, secret, scope="stats:read")
    assert none_held.status == 400
    assert (await none_held.json())["error"] == "invalid_scope"
    partial = await (await get_token(client, client_id, secret,
                                     scope="intake:read stats:read")).json()
    assert partial["scope"] == "intake:read"  # fewer than asked: RFC 6749 §3.3 says which
