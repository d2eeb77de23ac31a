"""RFC 6962's test vectors (certificate-transparency's merkle_tree_test) and proof round
trips for every pair of sizes up to 40."""

from __future__ import annotations

import random

import pytest

from services.consent import merkle

INPUTS = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                     "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_the_empty_tree() -> None:
    assert merkle.root([]).hex() == \
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("size", range(1, 9))
def test_tree_heads_match_rfc6962_vectors(size: int) -> None:
    leaves = [merkle.leaf_hash(i) for i in INPUTS[:size]]
    assert merkle.root(leaves).hex() == ROOTS[size - 1]


def test_proofs_round_trip_and_catch_tampering() -> None:
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(40)]
    for n in range(1, 41):
        head = merkle.root(leaves[:n])
        for m in range(n):
            proof = merkle.inclusion_proof(m, leaves[:n])
            assert merkle.verify_inclusion(m, n, leaves[m], proof, head)
            assert not merkle.verify_inclusion(m, n, merkle.leaf_hash(b"x"), proof, head)
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, leaves[:n])
            old = merkle.root(leaves[:m])
            assert merkle.verify_consistency(m, n, old, head, proof), (m, n)
            if m < n:
                assert not merkle.verify_consistency(m, n, merkle.leaf_hash(b"x"), head, proof)


def test_the_frontier_gives_the_same_heads_as_the_whole_tree() -> None:
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(100)]
    frontier = merkle.Frontier()
    assert frontier.root() == merkle.root([])
    for n, leaf in enumerate(leaves, start=1):
        frontier.append(leaf)
        assert frontier.root() == merkle.root(leaves[:n])
    resumed = merkle.Frontier(frontier.size, frontier.nodes)
    resumed.append(merkle.leaf_hash(b"next"))
    assert resumed.root() == merkle.root([*leaves, merkle.leaf_hash(b"next")])


def test_proofs_from_subtree_hashes_are_the_proofs_from_all_leaves() -> None:
    """What the trail's store does (the ranges a proof needs, their roots from the stored
    perfect subtrees) gives the same proofs as reading every leaf."""
    rng = random.Random(7)
    for n in [*range(1, 70), 1023, 1024, 1025, 3000]:
        leaves = [rng.randbytes(32) for _ in range(n)]

        def root_of(lo: int, hi: int, leaves: list[bytes] = leaves) -> bytes:
            return merkle.range_root(lo, hi, {p: merkle.root(leaves[p[0]:p[1]])
                                              for p in merkle.perfect(lo, hi)})

        for i in ([0, n - 1, n // 2] if n > 100 else range(n)):
            assert [root_of(*r) for r in merkle.inclusion_ranges(i, n)] == \
                merkle.inclusion_proof(i, leaves), (n, i)
        for old in ([1, n // 2, n - 1, n] if n > 100 else range(n + 1)):
            assert [root_of(*r) for r in merkle.consistency_ranges(old, n)] == \
                merkle.consistency_proof(old, leaves), (n, old)


def test_a_growing_tree_keeps_each_perfect_subtree_it_closes() -> None:
    rng = random.Random(8)
    leaves = [rng.randbytes(32) for _ in range(1000)]
    tree = merkle.Frontier(keep_from=3)
    for leaf in leaves:
        tree.append(leaf)
    assert len(tree.closed) == sum(1000 >> h for h in range(3, 10))
    for height, index, node in tree.closed:
        assert node == merkle.root(leaves[index << height:(index + 1) << height])
