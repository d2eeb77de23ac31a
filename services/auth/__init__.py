"""The auth service: the OAuth2 authorization server (client credentials) and its keys."""

from __future__ import annotations

from aiohttp import web

from services.auth import api
from services.runtime.app import Runtime, ServiceSpec
from services.runtime.auth import KeySource


async def create_first_key(runtime: Runtime) -> None:
    keys = runtime.app[api.KEYS]
    keys.token_ttl = runtime.settings.token_ttl
    await keys.ensure()


def key_source(app: web.Application) -> KeySource:
    return app[api.KEYS]


SPEC = ServiceSpec(name="auth", package="services.auth", routes=api.routes,
                   on_start=create_first_key, key_source=key_source)
