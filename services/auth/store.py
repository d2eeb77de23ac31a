"""The auth service's SQL."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg

from services.auth.domain import Client

SCHEMA = "auth"
Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


async def insert_client(db: Db, client_id: str, secret_hash: str, org: str, name: str,
                        scopes: list[str]) -> None:
    await db.execute(
        "INSERT INTO auth.clients (client_id, secret_hash, org, name, scopes)"
        " VALUES ($1, $2, $3, $4, $5)",
        client_id, secret_hash, org, name, scopes,
    )


async def active_client(db: Db, client_id: str) -> Client | None:
    row = await db.fetchrow(
        "SELECT * FROM auth.clients WHERE client_id = $1 AND revoked_at IS NULL", client_id
    )
    if row is None:
        return None
    return Client(row["client_id"], row["secret_hash"], row["org"], frozenset(row["scopes"]))


async def list_clients(db: Db) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT client_id, org, name, scopes, created_at, revoked_at FROM auth.clients"
        " ORDER BY created_at"
    )
    return rows


async def revoke_client(db: Db, client_id: str) -> bool:
    done = await db.fetchval(
        "UPDATE auth.clients SET revoked_at = now() WHERE client_id = $1"
        " AND revoked_at IS NULL RETURNING true",
        client_id,
    )
    return bool(done)


async def revoked_client_ids(db: Db) -> frozenset[str]:
    rows = await db.fetch("SELECT client_id FROM auth.clients WHERE revoked_at IS NOT NULL")
    return frozenset(r["client_id"] for r in rows)


async def published_keys(db: Db, token_ttl: int) -> list[asyncpg.Record]:
    """The signing key first, then retired keys whose tokens may still be valid."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT kid, sealed_jwk, private_jwk, retired_at FROM auth.signing_keys"
        " WHERE retired_at IS NULL OR retired_at > now() - make_interval(secs => $1)"
        " ORDER BY retired_at NULLS FIRST, created_at DESC",
        float(token_ttl),
    )
    return rows


async def add_key(db: asyncpg.Connection, kid: str, sealed_jwk: bytes) -> None:
    """Make `kid` the signing key; the previous ones are retired."""
    async with db.transaction():
        await db.execute("UPDATE auth.signing_keys SET retired_at = now()"
                         " WHERE retired_at IS NULL")
        await db.execute("INSERT INTO auth.signing_keys (kid, sealed_jwk) VALUES ($1, $2)",
                         kid, sealed_jwk)


async def keys_in_clear(db: Db) -> list[asyncpg.Record]:
    """Keys an older version stored unsealed."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT kid, private_jwk FROM auth.signing_keys WHERE private_jwk IS NOT NULL")
    return rows


async def seal_key(db: Db, kid: str, sealed_jwk: bytes) -> None:
    await db.execute("UPDATE auth.signing_keys SET sealed_jwk = $2, private_jwk = NULL"
                     " WHERE kid = $1", kid, sealed_jwk)
