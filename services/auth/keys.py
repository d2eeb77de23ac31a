"""The token signing keys: created on first start, rotated on demand (`relais keys rotate`);
a retired key stays published until every token it signed has expired. The private keys are
sealed under the master key in PostgreSQL; keys an older version left in clear are sealed at
start (and read meanwhile)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from joserfc.jwk import Key, OKPKey

from services.auth import store
from services.runtime import sealing
from services.runtime.auth import ALGORITHM

REFRESH_EVERY = 30.0


CONTEXT = "auth/signing-key/{}"


def _context(kid: str) -> str:
    return CONTEXT.format(kid)


def seal_key(master: sealing.Keyring, kid: str, key: OKPKey) -> bytes:
    return master.seal(json.dumps(key.as_dict(private=True)).encode(), _context(kid))


def open_key(master: sealing.Keyring, row: asyncpg.Record) -> OKPKey:
    """A stored key: sealed, or in clear if an older version left it so."""
    if row["sealed_jwk"] is None:
        return OKPKey.import_key(row["private_jwk"])
    return OKPKey.import_key(json.loads(master.open(row["sealed_jwk"], _context(row["kid"]))))


async def seal_keys_in_clear(pool: asyncpg.Pool, master: sealing.Keyring) -> int:
    """Seal the keys an older version stored in clear; how many there were."""
    rows = await store.keys_in_clear(pool)
    for row in rows:
        key = OKPKey.import_key(row["private_jwk"])
        await store.seal_key(pool, row["kid"], seal_key(master, row["kid"], key))
    return len(rows)


class SigningKeys:
    """Also the in-process `KeySource` of the services running beside the auth service."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], token_ttl: int) -> None:
        self._pool = pool
        self.token_ttl = token_ttl
        self.master: sealing.Keyring | None = None
        """The master key, set at start."""
        self._signing: OKPKey | None = None
        self._public: dict[str, Key] = {}
        self._loaded_at = -REFRESH_EVERY

    def _master(self) -> sealing.Keyring:
        if self.master is None:
            raise RuntimeError("the auth service has not started: no master key")
        return self.master

    async def ensure(self) -> None:
        """Seal the keys left in clear, and create the first key if there is none."""
        await seal_keys_in_clear(self._pool(), self._master())
        if not await store.published_keys(self._pool(), self.token_ttl):
            await rotate(self._pool(), self._master())
        await self._load()

    async def _load(self) -> None:
        rows = await store.published_keys(self._pool(), self.token_ttl)
        keys = [open_key(self._master(), r) for r in rows]
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
        return {"keys": [k.as_dict(private=False) | {"use": "sig", "alg": ALGORITHM}
                         for k in self._public.values()]}


async def rotate(pool: asyncpg.Pool, master: sealing.Keyring) -> str:
    key = OKPKey.generate_key("Ed25519", parameters={"kid": uuid.uuid4().hex[:16]})
    assert key.kid is not None
    async with pool.acquire() as conn:
        await store.add_key(conn, key.kid, seal_key(master, key.kid, key))
    return key.kid
