"""The trail's Merkle tree kept in the database (issue #12, point 5): the checkpointer stores
every perfect subtree of 1,024 leaves or more as it closes it, and the proofs an auditor gets
are built from those and at most a few blocks of leaves, the same proofs as from every leaf;
a trail older than the stored tree gets it at its next checkpoint."""

from __future__ import annotations

import itertools
import uuid

import asyncpg

from services.consent import audit, merkle, trail_store
from services.runtime.app import RUNTIME
from services.runtime.settings import Settings
from tests.conftest import wait_until
from tests.integration.conftest import running

PERSON = uuid.uuid4()


async def grow(pool: asyncpg.Pool, count: int, mine: set[int]) -> None:
    """`count` entries, the person's at the positions `mine` (from the current size)."""
    async with pool.acquire() as conn, conn.transaction():
        await trail_store.append(conn, [
            ("personal_data.read", PERSON if i in mine else uuid.uuid4(), {"n": i})
            for i in range(count)])


async def signed(pool: asyncpg.Pool, size: int) -> None:
    async def done() -> bool:
        return bool(await pool.fetchval("SELECT max(size) FROM consent.checkpoints") == size)

    await wait_until(done, 30, f"a checkpoint of {size} entries")


async def test_proofs_come_from_the_stored_tree_and_match_those_from_every_leaf(
        settings: Settings) -> None:
    async with running(settings) as client:
        pool = client.app[RUNTIME].pool
        await grow(pool, 2500, {5, 1500, 2499})
        await signed(pool, 2500)
        stored = {(r["height"], r["idx"]) for r in await pool.fetch(
            "SELECT height, idx FROM consent.trail_nodes")}
        assert stored == {(10, 0), (10, 1), (11, 0)}, "every perfect subtree from 1,024 up"
        await grow(pool, 1000, {10})
        await signed(pool, 3500)
        assert await pool.fetchval("SELECT count(*) FROM consent.trail_nodes") == 4

        leaves = [r["leaf_hash"] for r in await pool.fetch(
            "SELECT leaf_hash FROM consent.trail ORDER BY seq")]
        extract = await audit.extract(pool, PERSON)
        assert extract.checkpoint is not None and extract.checkpoint.size == 3500
        root = bytes.fromhex(extract.checkpoint.root)
        assert [e.seq for e in extract.entries] == [5, 1500, 2499, 2510]
        for entry in extract.entries:
            assert entry.inclusion_proof is not None
            proof = [bytes.fromhex(p) for p in entry.inclusion_proof]
            assert proof == merkle.inclusion_proof(entry.seq, leaves)
            assert merkle.verify_inclusion(entry.seq, 3500, leaves[entry.seq], proof, root)
        heads = (await audit.heads(pool, 10)).items
        for old, new in itertools.pairwise(heads):
            assert new.consistency_proof is not None
            proof = [bytes.fromhex(p) for p in new.consistency_proof]
            assert proof == merkle.consistency_proof(old.size, leaves[:new.size])
            assert merkle.verify_consistency(old.size, new.size, bytes.fromhex(old.root),
                                             bytes.fromhex(new.root), proof)
        assert heads[-1].size == 3500 and any(h.size == 2500 for h in heads)

        # a trail from before the stored tree: its next checkpoint stores the tree whole
        await pool.execute("DELETE FROM consent.trail_nodes")
        await grow(pool, 10, set())
        await signed(pool, 3510)
        assert await pool.fetchval("SELECT count(*) FROM consent.trail_nodes") == 4
