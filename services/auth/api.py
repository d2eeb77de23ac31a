"""The OAuth2 authorization server (client-credentials grant, RFC 6749 / 8414 / 7517), built
with authlib: authlib authenticates the client (client_secret_basic or client_secret_post),
checks the grant and the scopes and shapes errors; the tokens are RFC 9068 JWTs signed with
the current Ed25519 key."""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from aiohttp import BasicAuth, web
from authlib.oauth2.rfc6749 import AuthorizationServer, InvalidScopeError, OAuth2Request
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6750 import BearerTokenGenerator

from schemas.api import RevokedClients, TokenRequest, TokenResponse
from services.auth import domain, store
from services.auth.keys import SigningKeys
from services.runtime.app import RUNTIME
from services.runtime.auth import ALGORITHM, TokenIssuer
from services.runtime.http import client_address, json_response
from services.runtime.openapi import FORM, Operation, register
from services.runtime.problem import Problem
from services.runtime.ratelimit import RateLimiter

KEYS = web.AppKey("signing_keys", SigningKeys)
THROTTLE = web.AppKey("token_failures", domain.FailureThrottle)
# TLS is terminated in front of Relais (the reverse proxy); authlib's own transport check
# would only see the proxy's plain HTTP.
_TOKEN_URI = "https://relais.invalid/oauth/token"


class _FormRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(self, form: dict[str, str], headers: dict[str, str]) -> None:
        super().__init__("POST", _TOKEN_URI, headers=headers)
        self._form = form
        self.payload = BasicOAuth2Payload(form)

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


class _ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(domain.AUTH_METHODS)

    def validate_token_request(self) -> None:
        """As authlib does, and `invalid_scope` when the client holds none of the scopes
        asked (RFC 6749 §5.2), rather than a token that opens nothing; the token answer always
        says the scope granted (§3.3: it may be fewer than asked)."""
        super().validate_token_request()
        asked = self.request.payload.scope
        if asked and not self.request.client.get_allowed_scope(asked):
            raise InvalidScopeError("The client holds none of the scopes asked.")


class _TokenServer(AuthorizationServer):  # type: ignore[misc]
    """One per request: the client has been fetched beforehand (authlib is synchronous)."""

    def __init__(self, client: domain.Client | None, issuer: TokenIssuer, ttl: int) -> None:
        super().__init__(scopes_supported=list(domain.SCOPES))
        self._client = client
        self.register_grant(_ClientCredentials)
        self.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda client, grant_type, user, scope: issuer.issue(
                client.org, scope or "", client.client_id, ttl),
            expires_generator=lambda client, grant_type: ttl,
        ))

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No listeners."""

    def query_client(self, client_id: str) -> domain.Client:
        if self._client is not None and self._client.client_id == client_id:
            return self._client
        return domain.unknown_client(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """JWTs are self-contained: nothing to store."""

    def handle_response(self, status: int, body: Any, headers: Any) -> web.Response:
        return web.Response(text=json.dumps(body), status=status, headers=dict(headers))


async def token(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    if request.content_type != FORM:
        return web.json_response({"error": "invalid_request", "error_description":
                                  f"The token request must be {FORM} (RFC 6749)."}, status=400)
    form = {k: str(v) for k, v in (await request.post()).items()}
    client_id = form.get("client_id")
    if "Authorization" in request.headers:
        try:
            client_id = BasicAuth.decode(request.headers["Authorization"]).login
        except ValueError:
            client_id = None
    settings = runtime.settings
    throttle, address = request.app[THROTTLE], client_address(request, settings.trusted_proxies)
    wait = await throttle.wait(client_id or "", address)
    if wait:
        raise Problem(429, "Too many failed attempts", "Too many failed client authentications "
                      "for this client or from this address: try again later.",
                      headers={"Retry-After": RateLimiter.retry_after(wait)})
    client = await store.active_client(runtime.pool, client_id) if client_id else None
    issuer = TokenIssuer(await request.app[KEYS].signing(), settings.issuer,
                         settings.jwt_audience)
    server = _TokenServer(client, issuer, settings.token_ttl)
    oauth_request = _FormRequest(form, dict(request.headers))
    # The secret check (scrypt) is CPU work: keep it off the event loop.
    response: web.Response = await asyncio.to_thread(server.create_token_response, oauth_request)
    if response.status == 401:
        await throttle.failed(client_id or "", address)
    return response


async def revoked(request: web.Request) -> web.Response:
    """The revoked clients and ended sessions, for the services that verify tokens in other
    processes (like a certificate revocation list): their tokens are refused before they
    expire."""
    ids = await store.refused_client_ids(request.app[RUNTIME].pool)
    return json_response(RevokedClients(revoked=sorted(ids)))


async def metadata(request: web.Request) -> web.Response:
    settings = request.app[RUNTIME].settings
    base = settings.base_url
    return web.json_response({
        "issuer": settings.issuer,
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": list(domain.AUTH_METHODS),
        "scopes_supported": list(domain.SCOPES),
        "response_types_supported": ["none"],
        "service_documentation": f"{base}/openapi.json",
    })


async def resource_metadata(request: web.Request) -> web.Response:
    """OAuth 2.0 Protected Resource Metadata (RFC 9728): the audience (`resource`) a
    verifier of Relais's access tokens must expect, and who issues them."""
    settings = request.app[RUNTIME].settings
    return web.json_response({
        "resource": settings.jwt_audience,
        "authorization_servers": [settings.issuer],
        "jwks_uri": f"{settings.base_url}/.well-known/jwks.json",
        "scopes_supported": list(domain.SCOPES),
        "bearer_methods_supported": ["header"],
        "resource_signing_alg_values_supported": [ALGORITHM],
        "resource_documentation": f"{settings.base_url}/openapi.json",
    })


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(await request.app[KEYS].jwks(),
                             headers={"Cache-Control": "public, max-age=60"})


TAG = "OAuth2"
OPERATIONS = [
    Operation("POST", "/oauth/token", token, "An access token (client credentials)", TAG,
              request=TokenRequest, response=TokenResponse,
              example={"grant_type": "client_credentials", "scope": "intake:write intake:read"},
              request_media=FORM, errors=(400, 401, 429), authenticated=False,
              oauth_errors=True),
    Operation("GET", "/oauth/revoked", revoked, "The revoked clients (their tokens are "
              "refused before they expire)", TAG, response=RevokedClients, authenticated=False),
    Operation("GET", "/.well-known/oauth-authorization-server", metadata,
              "Authorization server metadata (RFC 8414)", TAG, authenticated=False),
    Operation("GET", "/.well-known/jwks.json", jwks, "The token signing keys (JWKS)", TAG,
              authenticated=False),
    Operation("GET", "/.well-known/oauth-protected-resource", resource_metadata,
              "Protected resource metadata (RFC 9728): the audience tokens carry", TAG,
              authenticated=False),
]


def routes(app: web.Application) -> None:
    app[KEYS] = SigningKeys(lambda: app[RUNTIME].pool, token_ttl=600)
    register(app, OPERATIONS)
