"""The consent trail's SQL: appends (serialised by an advisory lock, so sequence numbers and
the hash chain have no gaps), checkpoints and the export."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from services.consent import merkle, trail
from services.runtime.sealing import Keyring

APPEND_LOCK = "relais.consent.trail"
STORED_FROM = 10
"""The height from which the tree's perfect subtrees are stored (blocks of 1,024 leaves)."""


async def append(conn: asyncpg.Connection, items: Sequence[tuple[str, uuid.UUID | None,
                                                                 Mapping[str, Any]]]) -> None:
    """Append (kind, person_id, fields) entries with the caller's transaction, in one round
    trip that takes no lock: their parts are written to consent.trail_pending, and appended
    when the transaction commits (a deferred trigger: the append lock, held only for the
    commit, so entries are appended one at a time; the head; the entries, written around
    their `prev` and `seq` by consent.trail_append). They are in the trail once committed."""
    now = datetime.now(UTC)
    parts = [part for kind, _, fields in items for part in trail.entry_parts(now, kind, fields)]
    await conn.execute("INSERT INTO consent.trail_pending (lock_key, parts, person_ids)"
                       " VALUES ($1, $2, $3)", APPEND_LOCK, parts,
                       [person_id for _, person_id, _ in items])


async def signing_key(db: asyncpg.Pool | asyncpg.Connection,
                      master: Keyring) -> tuple[str, Ed25519PrivateKey]:
    row = await db.fetchrow("SELECT kid, sealed_key, private_key FROM consent.audit_keys"
                            " WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1")
    if row is None:
        key, kid = trail.new_key(), uuid.uuid4().hex[:16]
        await db.execute("INSERT INTO consent.audit_keys (kid, sealed_key, public_key)"
                         " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", kid,
                         trail.seal_key(master, kid, key), key.public_key().public_bytes_raw())
        return await signing_key(db, master)
    if row["sealed_key"] is None:  # left in clear by an older version, not yet sealed
        return row["kid"], Ed25519PrivateKey.from_private_bytes(row["private_key"])
    return row["kid"], trail.open_key(master, row["kid"], row["sealed_key"])


async def rotate_key(pool: asyncpg.Pool, master: Keyring) -> tuple[str, list[str]]:
    """A new checkpoint key signs from now on; the others are retired: their private keys
    destroyed, their public keys still published (what they signed still verifies). Under the
    append lock, so no checkpoint is signed meanwhile. The new kid and the retired ones."""
    key, kid = trail.new_key(), uuid.uuid4().hex[:16]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", APPEND_LOCK)
        await signing_key(conn, master)  # SealError, and nothing retired, under another key
        for row in await conn.fetch("SELECT kid, private_key FROM consent.audit_keys WHERE"
                                    " public_key IS NULL AND private_key IS NOT NULL"):
            public = Ed25519PrivateKey.from_private_bytes(row["private_key"]).public_key()
            await conn.execute("UPDATE consent.audit_keys SET public_key = $2 WHERE kid = $1",
                               row["kid"], public.public_bytes_raw())
        retired = await conn.fetch(
            "UPDATE consent.audit_keys SET retired_at = now(), sealed_key = NULL,"
            " private_key = NULL WHERE retired_at IS NULL RETURNING kid")
        await conn.execute("INSERT INTO consent.audit_keys (kid, sealed_key, public_key)"
                           " VALUES ($1, $2, $3)", kid, trail.seal_key(master, kid, key),
                           key.public_key().public_bytes_raw())
    return kid, sorted(r["kid"] for r in retired)


async def seal_keys_in_clear(pool: asyncpg.Pool, master: Keyring) -> int:
    """Seal the keys an older version stored in clear; how many there were."""
    rows = await pool.fetch("SELECT kid, private_key FROM consent.audit_keys"
                            " WHERE private_key IS NOT NULL")
    for row in rows:
        key = Ed25519PrivateKey.from_private_bytes(row["private_key"])
        await pool.execute("UPDATE consent.audit_keys SET sealed_key = $2, public_key = $3,"
                           " private_key = NULL WHERE kid = $1", row["kid"],
                           trail.seal_key(master, row["kid"], key),
                           key.public_key().public_bytes_raw())
    return len(rows)


async def public_keys(db: asyncpg.Pool) -> list[dict[str, str]]:
    rows = await db.fetch("SELECT kid, public_key, private_key FROM consent.audit_keys"
                          " ORDER BY created_at")
    return [trail.public_jwk(r["kid"], Ed25519PublicKey.from_public_bytes(r["public_key"])
                             if r["public_key"] is not None else
                             Ed25519PrivateKey.from_private_bytes(r["private_key"]).public_key())
            for r in rows]


async def checkpoint(pool: asyncpg.Pool, master: Keyring) -> int | None:
    """Sign the tree head if the trail grew since the last checkpoint; its new size."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", APPEND_LOCK)
        last = await conn.fetchrow("SELECT size, frontier, last_leaf FROM consent.checkpoints"
                                   " ORDER BY size DESC LIMIT 1")
        tree = (merkle.Frontier(last["size"], last["frontier"], last["last_leaf"],
                                STORED_FROM) if last else merkle.Frontier(keep_from=STORED_FROM))
        if tree.size >= 1 << STORED_FROM and not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM consent.trail_nodes)"):
            tree = merkle.Frontier(keep_from=STORED_FROM)  # a trail older than the stored tree
        leaves = await conn.fetch("SELECT leaf_hash FROM consent.trail WHERE seq >= $1"
                                  " ORDER BY seq", tree.size)
        if not leaves:
            return None
        for row in leaves:
            tree.append(row["leaf_hash"])
        await conn.executemany(
            "INSERT INTO consent.trail_nodes (height, idx, hash) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING", tree.closed)
        kid, key = await signing_key(conn, master)
        root, signed_at = tree.root(), datetime.now(UTC).isoformat()
        await conn.execute(
            "INSERT INTO consent.checkpoints (size, root, signed_at, kid, signature, frontier,"
            " last_leaf) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            tree.size, root, datetime.fromisoformat(signed_at), kid,
            trail.sign_checkpoint(key, tree.size, root, signed_at, kid), tree.nodes, tree.last)
        return tree.size


async def export_lines(pool: asyncpg.Pool, batch: int = 5000) -> AsyncIterator[str]:
    """The whole trail as JSON Lines: the keys, then entries with each checkpoint right after
    the entry that completes it."""
    yield trail.keys_line(await public_keys(pool))
    checkpoints = await pool.fetch("SELECT size, root, signed_at, kid, signature"
                                   " FROM consent.checkpoints ORDER BY size")
    pending = list(checkpoints)
    seq = 0
    while True:
        rows = await pool.fetch("SELECT seq, entry FROM consent.trail WHERE seq >= $1"
                                " ORDER BY seq LIMIT $2", seq, batch)
        for row in rows:
            yield trail.entry_line(row["entry"])
            seq = row["seq"] + 1
            while pending and pending[0]["size"] == seq:
                c = pending.pop(0)
                yield trail.checkpoint_line(c["size"], c["root"], c["signed_at"].isoformat(),
                                            c["kid"], c["signature"])
        if len(rows) < batch:
            break
    for c in pending:  # a checkpoint beyond the entries: the verifier reports it
        yield trail.checkpoint_line(c["size"], c["root"], c["signed_at"].isoformat(), c["kid"],
                                    c["signature"])


async def access_log(pool: asyncpg.Pool, person_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT seq, entry FROM consent.trail WHERE person_id = $1 ORDER BY seq", person_id)
    return rows


async def subtree_roots(pool: asyncpg.Pool,
                        ranges: Iterable[merkle.Range]) -> dict[merkle.Range, bytes]:
    """The roots of the subtrees `ranges` (each the leaves [lo, hi) of a tree), from the
    stored perfect subtrees and, below STORED_FROM or where none is stored yet, the leaves."""
    wanted = {p for lo, hi in ranges for p in merkle.perfect(lo, hi)}
    big = [(lo, hi) for lo, hi in wanted if hi - lo >= 1 << STORED_FROM]
    found: dict[merkle.Range, bytes] = {}
    if big:
        heights = [(hi - lo).bit_length() - 1 for lo, hi in big]
        for row in await pool.fetch(
                "SELECT n.height, n.idx, n.hash FROM unnest($1::smallint[], $2::bigint[])"
                " AS w(height, idx) JOIN consent.trail_nodes n USING (height, idx)",
                heights, [lo >> h for (lo, _), h in zip(big, heights, strict=True)]):
            found[(row["idx"] << row["height"], (row["idx"] + 1) << row["height"])] = row["hash"]
    block = 1 << STORED_FROM
    # the rest from leaves: one read per block of 1,024 (a subtree smaller than a block is
    # within one), or per subtree not stored yet (a trail older than the stored tree)
    reads = {(lo // block * block, lo // block * block + block) if hi - lo < block else (lo, hi)
             for lo, hi in wanted - found.keys()}
    for start, end in sorted(reads):
        leaves = [r["leaf_hash"] for r in await pool.fetch(
            "SELECT leaf_hash FROM consent.trail WHERE seq >= $1 AND seq < $2 ORDER BY seq",
            start, end)]
        for lo, hi in wanted - found.keys():
            if start <= lo and hi <= end:
                found[(lo, hi)] = merkle.root(leaves[lo - start:hi - start])
    return {(lo, hi): merkle.range_root(lo, hi, found) for lo, hi in ranges}


async def checkpoints(pool: asyncpg.Pool, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT size, root, signed_at, kid, signature FROM consent.checkpoints"
        " ORDER BY size DESC LIMIT $1", limit)
    return rows[::-1]


async def entries_of(pool: asyncpg.Pool, person_id: uuid.UUID, since: datetime | None,
                     until: datetime | None) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT seq, entry, leaf_hash FROM consent.trail WHERE person_id = $1"
        " AND ($2::timestamptz IS NULL OR recorded_at >= $2)"
        " AND ($3::timestamptz IS NULL OR recorded_at < $3) ORDER BY seq",
        person_id, since, until)
    return rows
