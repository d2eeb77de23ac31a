"""How long the auditor's proofs take on a large trail (issue #12, point 5).

    .venv/bin/python -m bench.trail_proofs --entries 10000000

Fills a consent trail with `--entries` entries by COPY (leaf hashes of short synthetic
entries; one person's entries near the start, the middle and the end), its stored tree (the
perfect subtrees the checkpointer keeps, made by the same `merkle.Frontier`) and two
checkpoints 1,000 entries apart (their signatures are not checked here), then times, over
`--rounds`: a person's extract with an inclusion proof for each entry (`audit.extract`, what
`GET /v1/audit/trail/{person_id}` answers) and the two last tree heads with their consistency
proof (`audit.heads`, `GET /v1/audit/checkpoints`). The baseline, in the same invocation, is
what each of those calls did before the tree was stored: reading every leaf hash up to the
checkpoint (one round)."""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from bench import database
from services.consent import audit, merkle, trail_store
from services.runtime import db

PERSON = uuid.UUID(int=7)
CHUNK = 200_000


def say(text: str) -> None:
    print(text, flush=True)


async def fill(conn: asyncpg.Connection, entries: int) -> None:
    mine = {entries // 1000, entries // 2, entries - 1}
    tree = merkle.Frontier(keep_from=trail_store.STORED_FROM)
    started = time.monotonic()
    checkpoints: list[tuple[int, bytes, list[bytes], str]] = []
    for start in range(0, entries, CHUNK):
        rows = []
        for seq in range(start, min(start + CHUNK, entries)):
            entry = b'{"kind":"bench","seq":%d}' % seq
            leaf = hashlib.sha256(b"\x00" + entry).digest()
            tree.append(leaf)
            rows.append((seq, entry, leaf, PERSON if seq in mine else None))
            if tree.size in (entries - 1000, entries):
                checkpoints.append((tree.size, tree.root(), list(tree.nodes), tree.last))
        await conn.copy_records_to_table("trail", schema_name="consent", records=rows,
                                         columns=["seq", "entry", "leaf_hash", "person_id"])
        await conn.copy_records_to_table("trail_nodes", schema_name="consent",
                                         records=tree.closed,
                                         columns=["height", "idx", "hash"])
        tree.closed = []
        say(f"  {start + len(rows):,} entries in {time.monotonic() - started:.0f} s")
    for size, root, nodes, last in checkpoints:
        await conn.execute(
            "INSERT INTO consent.checkpoints (size, root, signed_at, kid, signature, frontier,"
            " last_leaf) VALUES ($1, $2, $3, 'bench', $4, $5, $6)",
            size, root, datetime.now(UTC), b"\0" * 64, nodes, last)
    await conn.execute("ANALYZE consent.trail; ANALYZE consent.trail_nodes")


async def timed(call: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


async def measure(url: str, entries: int, rounds: int) -> None:
    conn = await db.connect(url)
    try:
        await db.migrate_service(conn, "consent", "services.consent")
        if await conn.fetchval("SELECT count(*) FROM consent.trail") != entries:
            say(f"filling a trail of {entries:,} entries ...")
            await fill(conn, entries)
    finally:
        await conn.close()
    pool = await db.create_pool(url, 4)
    try:
        extract = await audit.extract(pool, PERSON)
        assert extract.checkpoint is not None and extract.checkpoint.size == entries
        root = bytes.fromhex(extract.checkpoint.root)
        for e in extract.entries:  # the proofs hold, or the figures mean nothing
            assert e.inclusion_proof is not None
            assert merkle.verify_inclusion(e.seq, entries, bytes.fromhex(e.leaf_hash),
                                           [bytes.fromhex(p) for p in e.inclusion_proof], root)
        [old, new] = (await audit.heads(pool, 2)).items
        assert new.consistency_proof is not None and merkle.verify_consistency(
            old.size, new.size, bytes.fromhex(old.root), bytes.fromhex(new.root),
            [bytes.fromhex(p) for p in new.consistency_proof])
        inclusion = await timed(lambda: audit.extract(pool, PERSON), rounds)
        consistency = await timed(lambda: audit.heads(pool, 2), rounds)
        baseline = await timed(lambda: pool.fetch(
            "SELECT leaf_hash FROM consent.trail WHERE seq < $1 ORDER BY seq", entries), 1)
    finally:
        await pool.close()
    say(f"trail of {entries:,} entries, medians of {rounds} rounds:")
    say(f"  a person's extract, {len(extract.entries)} entries with inclusion proofs: "
        f"{1000 * statistics.median(inclusion):.1f} ms")
    say(f"  two tree heads with a consistency proof: {1000 * statistics.median(consistency):.1f}"
        " ms")
    say(f"  baseline, reading every leaf hash (what each call did before): "
        f"{1000 * baseline[0]:.0f} ms; ratio {statistics.median(inclusion) / baseline[0]:.4f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    database.on_new_database(f"trail_{args.entries}",
                             lambda url: measure(url, args.entries, args.rounds))


if __name__ == "__main__":
    main()
