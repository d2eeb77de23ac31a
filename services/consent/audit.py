"""What auditors read, without HTTP: a person's consents with their history, their trail
entries with inclusion proofs, the signed tree heads with consistency proofs, the access log
and the whole trail. The API (`api.py`) and the audit page (`pages.py`) both call these."""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp import web

from schemas.api import (
    AccessLog,
    CheckpointList,
    ConsentChange,
    ConsentHistory,
    ProvenEntry,
    SignedCheckpoint,
    TrailExtract,
)
from services.consent import domain, merkle, store, trail_store


async def histories(pool: asyncpg.Pool, rows: Sequence[asyncpg.Record]) -> list[ConsentHistory]:
    """Each consent with its changes (granted, withdrawn whole or in part, expired), in
    order."""
    changes = await store.changes_of(pool, [r["id"] for r in rows])
    return [ConsentHistory(
        consent=domain.consent_out(r),
        changes=[ConsentChange.model_validate(dict(c)) for c in changes
                 if c["consent_id"] == r["id"]]) for r in rows]


def parsed(entry: bytes) -> dict[str, Any]:
    """An entry as stored; one that is no longer a JSON object (changed behind the
    database's back) comes as `{"unreadable": its text}`, whose proof then fails, rather than
    as an error."""
    try:
        body = json.loads(entry)
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"unreadable": entry.decode("utf-8", errors="replace")}


def signed(row: Any) -> SignedCheckpoint:
    return SignedCheckpoint(size=row["size"], root=row["root"].hex(),
                            signed_at=row["signed_at"].isoformat(), kid=row["kid"],
                            signature=base64.b64encode(row["signature"]).decode())


async def extract(pool: asyncpg.Pool, person_id: uuid.UUID, since: datetime | None = None,
                  until: datetime | None = None) -> TrailExtract:
    """A person's trail entries, each with its inclusion proof to the last signed tree head:
    an auditor checks them without the rest of the trail."""
    last = await trail_store.checkpoints(pool, 1)
    checkpoint = signed(last[0]) if last else None
    size = checkpoint.size if checkpoint else 0
    rows = await trail_store.entries_of(pool, person_id, since, until)
    paths = {r["seq"]: merkle.inclusion_ranges(r["seq"], size) for r in rows if r["seq"] < size}
    roots = await trail_store.subtree_roots(pool, {r for p in paths.values() for r in p})
    entries = [ProvenEntry(
        seq=r["seq"], entry=parsed(r["entry"]), leaf_hash=r["leaf_hash"].hex(),
        inclusion_proof=[roots[p].hex() for p in paths[r["seq"]]] if r["seq"] in paths
        else None) for r in rows]
    return TrailExtract(checkpoint=checkpoint, entries=entries)


async def heads(pool: asyncpg.Pool, limit: int) -> CheckpointList:
    """The last `limit` signed tree heads, oldest first, each with its consistency proof from
    the one before: the trail only ever grew between them."""
    rows = await trail_store.checkpoints(pool, limit)
    paths = [merkle.consistency_ranges(old["size"], new["size"])
             for old, new in itertools.pairwise(rows)]
    roots = await trail_store.subtree_roots(pool, {r for p in paths for r in p})
    items = []
    for index, row in enumerate(rows):
        item = signed(row)
        if index:
            item.consistency_from = rows[index - 1]["size"]
            item.consistency_proof = [roots[r].hex() for r in paths[index - 1]]
        items.append(item)
    return CheckpointList(items=items)


async def reads(pool: asyncpg.Pool, person_id: uuid.UUID) -> AccessLog:
    """Who read the person's data, when, under which consent: the trail's
    `personal_data.read` entries, oldest first."""
    rows = await trail_store.access_log(pool, person_id)
    entries = [parsed(r["entry"]) for r in rows]
    return AccessLog(person_id=person_id, reads=[
        e for e in entries if e.get("kind") == "personal_data.read"])


async def send_export(request: web.Request, pool: asyncpg.Pool,
                      filename: str) -> web.StreamResponse:
    """The whole trail as JSON Lines, streamed (for `relais audit verify`)."""
    response = web.StreamResponse(headers={
        "Content-Type": "application/jsonl",
        "Content-Disposition": f'attachment; filename="{filename}"'})
    await response.prepare(request)
    async for line in trail_store.export_lines(pool):
        await response.write(line.encode() + b"\n")
    await response.write_eof()
    return response
