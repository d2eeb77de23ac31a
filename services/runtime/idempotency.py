"""`Idempotency-Key` handling: the same key and body give back the first response and create
nothing new; the same key with another body is refused (422).

The work is done first and the key is recorded with its answer in the same transaction. A
concurrent request with the same key blocks on that row until the first one commits, then
finds it taken: its own work is rolled back and it answers what the first one answered."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from services.runtime import outbox
from services.runtime.app import RUNTIME
from services.runtime.auth import Principal, authenticate
from services.runtime.events import Event
from services.runtime.http import json_response, parse, read_json
from services.runtime.problem import Problem

MAX_KEY = 200
Last = Callable[[asyncpg.Connection], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    last: Last | None = field(default=None, compare=False)
    """Work left for the end of the transaction, after the key's row (a lock taken there is
    held for the commit only: the consent trail's append)."""
    events: Sequence[Event] = field(default=(), compare=False)
    """The events of the work, added to the outbox in the statement of the key's row."""


class _Replay(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer


Work = Callable[[asyncpg.Connection], Awaitable[Answer]]


def idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise Problem(400, "Idempotency-Key required",
                      "Send an Idempotency-Key header (for example a UUID) with every write.")
    if len(key) > MAX_KEY:
        raise Problem(400, "Idempotency-Key too long", f"At most {MAX_KEY} characters.")
    if not (key.isascii() and key.isprintable()):
        raise Problem(400, "Idempotency-Key invalid", "Use visible ASCII characters only.")
    return key


def request_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def once(pool: asyncpg.Pool, schema: str, org: str, operation: str, key: str,
               payload: Any, work: Work) -> tuple[Answer, bool]:
    """Do `work` in a transaction unless this (org, operation, key) was already done.
    Returns the answer and whether it is a replay of the first one."""
    digest = request_hash(payload)
    try:
        async with pool.acquire() as conn, conn.transaction():
            answer = await work(conn)
            first = await _record(conn, schema, org, operation, key, digest, answer)
            if first is not None:
                raise _Replay(first)
            if answer.last is not None:
                await answer.last(conn)
    except _Replay as replay:
        return replay.answer, True
    return answer, False


Writes = Callable[[int, str], tuple[str, list[object]]]
"""A unit of work's writes as items of a `WITH` (their parameters numbered from the given
index, each row written only under the given condition) and their arguments."""


async def once_in_one_statement(pool: asyncpg.Pool, schema: str, org: str, operation: str,
                                key: str, payload: Any, answer: Answer,
                                writes: Writes) -> tuple[Answer, bool]:
    """`once` for a unit of work decided before any write (its answer known) whose writes
    fit one statement: the key's row, the writes and the events in one statement, in
    autocommit (no BEGIN, no COMMIT: one round trip instead of four), the writes and events
    made only if the key is new. A key already taken (a concurrent request with it waits for
    the first one's commit) reads the first answer apart: a replay, or 422 for another
    body."""
    assert answer.last is None, "a unit of work with a last step needs `once`"
    digest = request_hash(payload)
    ctes, args = writes(7, "EXISTS (SELECT 1 FROM key)")
    events, event_args = outbox.adding(schema, answer.events, 7 + len(args),
                                       when="EXISTS (SELECT 1 FROM key)")
    async with pool.acquire() as conn:
        fresh = await conn.fetchval(
            f'WITH key AS (INSERT INTO "{schema}".idempotency_keys (org, operation, key,'
            " request_hash, status, response) VALUES ($1, $2, $3, $4, $5, $6)"
            f" ON CONFLICT DO NOTHING RETURNING true), {ctes}, {events}"
            " SELECT EXISTS (SELECT 1 FROM key) FROM woke",
            org, operation, key, digest, answer.status, answer.body, *args, *event_args)
        if fresh:  # (no row at all when the key was taken: `woke` is then empty)
            return answer, False
        return await _first_answer(conn, schema, org, operation, key, digest), True


async def run_once(pool: asyncpg.Pool, schema: str, org: str, operation: str, key: str,
                   payload: Any, work: Work) -> web.Response:
    return _response(*await once(pool, schema, org, operation, key, payload, work))


def _response(answer: Answer, replayed: bool) -> web.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else answer.headers
    return json_response(answer.body, status=answer.status, headers=headers)


async def _record(conn: asyncpg.Connection, schema: str, org: str, operation: str, key: str,
                  digest: str, answer: Answer) -> Answer | None:
    """Record the key with its answer; None if it is new, else the first answer."""
    columns = (f'INSERT INTO "{schema}".idempotency_keys (org, operation, key, request_hash,'
               " status, response)")
    if answer.events:  # (on a replay, rolled back with the rest)
        ctes, args = outbox.adding(schema, answer.events, 7)
        fresh = await conn.fetchval(
            f"WITH {ctes} {columns} SELECT $1, $2, $3, $4, $5, $6 FROM woke"
            " ON CONFLICT DO NOTHING RETURNING true",
            org, operation, key, digest, answer.status, answer.body, *args)
    else:
        fresh = await conn.fetchval(
            f"{columns} VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
            org, operation, key, digest, answer.status, answer.body)
    if fresh:
        return None
    return await _first_answer(conn, schema, org, operation, key, digest)


async def _first_answer(conn: asyncpg.Connection, schema: str, org: str, operation: str,
                        key: str, digest: str) -> Answer:
    """The answer recorded with a key already taken; 422 if it was for another body."""
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
    return Answer(row["status"], row["response"])


M = TypeVar("M", bound=BaseModel)
Create = Callable[[asyncpg.Connection, Principal, M], Awaitable[Answer]]
Check = Callable[[Principal, M], Awaitable[None]]
Plan = Callable[[Principal, M], Awaitable[tuple[Answer, Writes] | None]]


async def create(request: web.Request, scope: str, model: type[M], schema: str,
                 operation: str, work: Create[M], check: Check[M] | None = None,
                 plan: Plan[M] | None = None) -> web.Response:
    """An idempotent write: authenticate, require the key, validate the body, then do `work`
    once per (organisation, operation, key). `check` runs before a database connection is
    taken (a call to another service, which must not hold one while it waits). `plan`, when
    it gives an answer and its writes (a work that needs no read), does it in one statement
    (`once_in_one_statement`) instead."""
    principal = await authenticate(request, scope)
    key = idempotency_key(request)
    payload = await read_json(request)
    body = parse(model, payload)
    if check is not None:
        await check(principal, body)
    planned = await plan(principal, body) if plan is not None else None
    if planned is not None:
        return _response(*await once_in_one_statement(
            request.app[RUNTIME].pool, schema, principal.org, operation, key, payload,
            *planned))

    async def bound(conn: asyncpg.Connection) -> Answer:
        return await work(conn, principal, body)

    return await run_once(request.app[RUNTIME].pool, schema, principal.org, operation, key,
                          payload, bound)
