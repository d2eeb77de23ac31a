"""RFC 6962 / RFC 9162 Merkle tree hashes and proofs (pure, no I/O): the tree head of a list
of entries, audit paths for inclusion, and consistency between two tree sizes. Small enough
to read, and tested against RFC 6962's test vectors."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

# The hash state after each prefix, copied for every hash: cheaper than a new hash object fed
# the prefix and a concatenated copy of the input (`relais audit verify` hashes every entry).
_LEAF = hashlib.sha256(b"\x00")
_NODE = hashlib.sha256(b"\x01")


def leaf_hash(entry: bytes) -> bytes:
    h = _LEAF.copy()
    h.update(entry)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    h = _NODE.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, bottom-up, level by level: no recursion, O(n) hashes."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])  # RFC 6962's split keeps an odd last node as is
        level = paired
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1."""
    n = len(leaves)
    if n <= 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes],
                     expected_root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(old: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2."""
    if old == 0 or old == len(leaves):
        return []
    return _subproof(old, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes,
                       proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if old > new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    path = list(proof)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


Range = tuple[int, int]
"""Leaves [lo, hi) of the tree."""


def perfect(lo: int, hi: int) -> list[Range]:
    """The perfect subtrees whose hashes make MTH(D[lo:hi]) (lo a multiple of the first's
    size, as every subtree RFC 6962's splits make), largest first."""
    found = []
    while hi > lo:
        size = 1 << ((hi - lo).bit_length() - 1)
        found.append((lo, lo + size))
        lo += size
    return found


def range_root(lo: int, hi: int, of_perfect: Mapping[Range, bytes]) -> bytes:
    """MTH(D[lo:hi]) from the hashes of its perfect subtrees (`perfect(lo, hi)`)."""
    parts = [of_perfect[r] for r in perfect(lo, hi)]
    head = parts[-1]
    for part in reversed(parts[:-1]):
        head = node_hash(part, head)
    return head


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The subtrees whose roots are PATH(index, D[size]), in the proof's order: the
    `inclusion_proof` of a tree whose leaves are not all at hand."""
    path: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    return path[::-1]


def consistency_ranges(old: int, size: int) -> list[Range]:
    """The subtrees whose roots are PROOF(old, D[size]), in the proof's order."""
    if old == 0 or old == size:
        return []
    path: list[Range] = []
    lo, hi, m, complete = 0, size, old, True
    while hi - lo != m:
        k = _split(hi - lo)
        if m <= k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        path.append((lo, hi))
    return path[::-1]


class Frontier:
    """The roots of the perfect subtrees of a growing tree, largest first: enough to append
    in O(1) amortized and to give the RFC 6962 tree head in O(log n), without the leaves.
    With `keep_from`, the perfect subtrees of that height or more closed by the appends are
    kept in `closed` ((height, index, hash): the leaves [index << height, index + 1 <<
    height)), to be stored."""

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = (), last: str = "",
                 keep_from: int | None = None) -> None:
        self.size = size
        self.nodes = list(nodes)
        self.last = last  # hex of the last leaf hash: what the next entry's `prev` must be
        self.keep_from = keep_from
        self.closed: list[tuple[int, int, bytes]] = []

    def append(self, leaf: bytes) -> None:
        self.last = leaf.hex()
        node, merged, height = leaf, self.size, 0
        while merged & 1:  # each trailing 1 bit closes a perfect subtree
            node = node_hash(self.nodes.pop(), node)
            merged >>= 1
            height += 1
            if self.keep_from is not None and height >= self.keep_from:
                self.closed.append((height, ((self.size + 1) >> height) - 1, node))
        self.nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return hashlib.sha256(b"").digest()
        head = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            head = node_hash(node, head)
        return head
