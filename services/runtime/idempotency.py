"""`Idempotency-Key` handling: the same key and body give back the first response and create
nothing new; the same key with another body is refused.

The key row is inserted first, inside the request's transaction: a concurrent request with
the same key waits on it and then reads the stored answer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from services.runtime.problem import Problem

MAX_KEY = 200


@dataclass(frozen=True, slots=True)
class Stored:
    status: int
    body: dict[str, Any]


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise Problem(400, "Idempotency-Key required",
                      "Send an Idempotency-Key header (for example a UUID) with every write.")
    if len(key) > MAX_KEY:
        raise Problem(400, "Idempotency-Key too long", f"At most {MAX_KEY} characters.")
    return key


def request_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def claim(
    conn: asyncpg.Connection, schema: str, org: str, operation: str, key: str, digest: str
) -> Stored | None:
    """Reserve the key in the current transaction. None: go on and `remember` the answer.
    Otherwise the stored answer of the first request with this key."""
    fresh = await conn.fetchval(
        f'INSERT INTO "{schema}".idempotency_keys (org, operation, key, request_hash, status,'
        " response) VALUES ($1, $2, $3, $4, 0, 'null') ON CONFLICT DO NOTHING RETURNING true",
        org, operation, key, digest,
    )
    if fresh:
        return None
    row = await conn.fetchrow(
        f'SELECT request_hash, status, response FROM "{schema}".idempotency_keys'
        " WHERE org = $1 AND operation = $2 AND key = $3",
        org, operation, key,
    )
    assert row is not None
    if row["request_hash"] != digest:
        raise Problem(422, "Idempotency-Key reused",
                      "This Idempotency-Key was already used with a different body.",
                      type_="https://relais.example/problems/idempotency-key-reused")
    return Stored(row["status"], row["response"])


async def remember(
    conn: asyncpg.Connection, schema: str, org: str, operation: str, key: str,
    status: int, body: dict[str, Any],
) -> None:
    await conn.execute(
        f'UPDATE "{schema}".idempotency_keys SET status = $4, response = $5'
        " WHERE org = $1 AND operation = $2 AND key = $3",
        org, operation, key, status, body,
    )
