"""The token signing keys: created on first start, rotated on demand (`relais keys rotate`);
a retired key stays published until every token it signed has expired."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from joserfc.jwk import Key, OKPKey

from services.auth import store

REFRESH_EVERY = 30.0


class SigningKeys:
    """Also the in-process `KeySource` of the services running beside the auth service."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], token_ttl: int) -> None:
        self._pool = pool
        self.token_ttl = token_ttl
        self._signing: OKPKey | None = None
        self._public: dict[str, Key] = {}
        self._loaded_at = -REFRESH_EVERY

    async def ensure(self) -> None:
        """Create the first key if there is none."""
        if not await store.published_keys(self._pool(), self.token_ttl):
            await rotate(self._pool())
        await self._load()

    async def _load(self) -> None:
        rows = await store.published_keys(self._pool(), self.token_ttl)
        keys = [OKPKey.import_key(r["private_jwk"]) for r in rows]
        self._signing = next((k for k, r in zip(keys, rows, strict=True)
                              if r["retired_at"] is None), None)
        self._public = {k.kid: OKPKey.import_key(k.as_dict(private=False)) for k in keys
                        if k.kid}
        self._loaded_at = time.monotonic()

    async def _fresh(self, force: bool = False) -> None:
        if force or time.monotonic() - self._loaded_at > REFRESH_EVERY:
            await self._load()

    async def signing(self) -> OKPKey:
        await self._fresh()
        if self._signing is None:
            await self.ensure()
        assert self._signing is not None
        return self._signing

    async def key(self, kid: str) -> Key | None:
        await self._fresh(force=kid not in self._public)
        return self._public.get(kid)

    async def jwks(self) -> dict[str, Any]:
        await self._fresh()
        return {"keys": [k.as_dict(private=False) | {"use": "sig", "alg": "Ed25519"}
                         for k in self._public.values()]}


async def rotate(pool: asyncpg.Pool) -> str:
    key = OKPKey.generate_key("Ed25519", parameters={"kid": uuid.uuid4().hex[:16]})
    assert key.kid is not None
    async with pool.acquire() as conn:
        await store.add_key(conn, key.kid, key.as_dict(private=True))
    return key.kid
