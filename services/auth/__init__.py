"""The auth service: the OAuth2 authorization server (client credentials) and its keys."""

from __future__ import annotations

from aiohttp import web

from services.auth import api, domain, keys, links, oidc, pages, second_factor, store, totp
from services.runtime import links as magic
from services.runtime.app import RUNTIME, Runtime, ServiceSpec
from services.runtime.auth import KeySource, RevokedLoader
from services.runtime.ratelimit import buckets
from services.runtime.sealing import SealedColumn


async def start(runtime: Runtime) -> None:
    settings = runtime.settings
    if problem := oidc.settings_problem(settings):
        raise ValueError(problem)
    runtime.app[api.THROTTLE] = domain.FailureThrottle.per_minute(
        settings.token_failures_per_client, settings.token_failures_per_address,
        buckets(runtime.app))
    keys = runtime.app[api.KEYS]
    keys.token_ttl = settings.token_ttl
    keys.master = runtime.keyring()
    runtime.app[links.LINK_KEY] = magic.key(keys.master)
    await keys.ensure()


def key_source(app: web.Application) -> KeySource:
    return app[api.KEYS]


def revoked_clients(app: web.Application) -> RevokedLoader:
    async def load() -> frozenset[str]:
        return await store.refused_client_ids(app[RUNTIME].pool)

    return load


def routes(app: web.Application) -> None:
    api.routes(app)
    pages.routes(app)
    second_factor.routes(app)
    oidc.routes(app)
    links.routes(app)


SPEC = ServiceSpec(name="auth", package="services.auth", routes=routes,
                   sealed=(SealedColumn("signing_keys", "kid", "sealed_jwk", keys.CONTEXT, "text"),
                           SealedColumn("users", "id", "totp_secret", totp.CONTEXT)),
                   on_start=start, key_source=key_source, revoked_clients=revoked_clients)
