"""Proof generation over stored perfect subtrees, and the incremental (compact range) tree.

A *perfect subtree* `NodeId(level, index)` covers the 2**level leaves starting at
`index * 2**level`; its hash is what RFC 6962 calls MTH of those leaves. Level 0 holds the leaf
hashes. Every hash in an RFC 6962 proof is the MTH of a range `[begin, end)` whose `begin` is
aligned to the power of two at or above its length; such a range is a right fold of at most
log2(n) perfect subtrees (`perfect_nodes`). So proofs need only perfect-subtree hashes, which
never change once complete and can be stored and fetched by key.

The functions split into planning (which ranges / nodes a proof needs: pure arithmetic, so a store
can fetch them in one query) and assembling (hashing what a `NodeGetter` returns).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from audit.errors import ProofError
from audit.merkle import EMPTY_ROOT, HASH_SIZE, node_hash

__all__ = [
    "CompactRange",
    "NodeGetter",
    "NodeId",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "perfect_nodes",
    "range_hash",
    "root_from_nodes",
]


class NodeId(NamedTuple):
    """The perfect subtree of 2**level leaves starting at leaf idx * 2**level."""

    level: int
    idx: int


NodeGetter = Callable[[int, int], bytes]
"""Returns the hash of perfect subtree (level, index)."""

Range = tuple[int, int]


def _split(n: int) -> int:
    """The largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_nodes(begin: int, end: int) -> list[NodeId]:
    """The perfect subtrees that make up [begin, end), left to right (largest first)."""
    if not 0 <= begin <= end:
        raise ValueError(f"bad range [{begin}, {end})")
    nodes = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        while begin % (1 << level):
            level -= 1
        nodes.append(NodeId(level, begin >> level))
        begin += 1 << level
    return nodes


def range_hash(begin: int, end: int, get: NodeGetter) -> bytes:
    """MTH of the leaves [begin, end), for a range that is a (right-truncated) subtree."""
    if begin == end:
        return EMPTY_ROOT
    hashes = [get(level, index) for level, index in perfect_nodes(begin, end)]
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


def root_from_nodes(size: int, get: NodeGetter) -> bytes:
    """The root of the tree of the first `size` leaves."""
    return range_hash(0, size, get)


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form PATH(index, D[size]) (RFC 6962 §2.1.1), in proof order."""
    if not 0 <= index < size:
        raise ProofError(f"no inclusion proof for index {index} in a tree of size {size}")
    begin, end = 0, size
    siblings: list[Range] = []
    while end - begin > 1:
        k = _split(end - begin)
        if index < begin + k:
            siblings.append((begin + k, end))
            end = begin + k
        else:
            siblings.append((begin, begin + k))
            begin += k
    return siblings[::-1]


def consistency_ranges(size1: int, size2: int) -> list[Range]:
    """The ranges whose hashes form PROOF(size1, D[size2]) (RFC 6962 §2.1.2), in proof order.

    Empty when size1 == size2 or size1 == 0 (nothing to prove).
    """
    if not 0 <= size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 in (0, size2):
        return []
    m, begin, end, complete = size1, 0, size2, True
    siblings: list[Range] = []
    while m != end - begin:
        k = _split(end - begin)
        if m <= k:
            siblings.append((begin + k, end))
            end = begin + k
        else:
            siblings.append((begin, begin + k))
            m -= k
            begin += k
            complete = False
    head = [] if complete else [(begin, end)]
    return head + siblings[::-1]


def _hashes(ranges: Iterable[Range], get: NodeGetter) -> list[bytes]:
    return [range_hash(begin, end, get) for begin, end in ranges]


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """The RFC 6962 inclusion proof of leaf `index` in the tree of `size` leaves."""
    return _hashes(inclusion_ranges(index, size), get)


def consistency_proof(size1: int, size2: int, get: NodeGetter) -> list[bytes]:
    """The RFC 6962 consistency proof between the trees of `size1` and `size2` leaves."""
    return _hashes(consistency_ranges(size1, size2), get)


class CompactRange:
    """The right edge of a growing tree: one perfect-subtree hash per set bit of `size`.

    Appending a leaf touches only these O(log n) hashes and reports the perfect subtrees the leaf
    completes (the leaf itself at level 0 first), which is exactly what a store must persist.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a compact range of size {size} holds {size.bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError(f"hashes must be {HASH_SIZE} bytes")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def load(cls, size: int, get: NodeGetter) -> CompactRange:
        """Rebuild the range for `size` leaves from stored perfect subtrees."""
        return cls(size, [get(level, index) for level, index in perfect_nodes(0, size)])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[NodeId, bytes]]:
        """Add one leaf; return the perfect subtrees completed by it, lowest level first."""
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        index, level = self._size, 0
        completed = [(NodeId(0, index), leaf_hash)]
        self._hashes.append(leaf_hash)
        while index & 1:
            right, left = self._hashes.pop(), self._hashes.pop()
            self._hashes.append(node_hash(left, right))
            index >>= 1
            level += 1
            completed.append((NodeId(level, index), self._hashes[-1]))
        self._size += 1
        return completed

    def append_subtree(self, level: int, subtree_hash: bytes) -> None:
        """Add the perfect subtree of 2**level leaves whose hash is `subtree_hash`; the size
        must be a multiple of 2**level (the subtree starts on its own boundary). Equal-level
        right-edge nodes merge as they would leaf by leaf, so `root()` is the same as if its
        leaves had been appended one at a time. `append_subtree(0, h)` appends one leaf."""
        if level < 0 or self._size & ((1 << level) - 1):
            raise ValueError(f"a subtree of level {level} cannot start at leaf {self._size}")
        if len(subtree_hash) != HASH_SIZE:
            raise ValueError(f"a subtree hash is {HASH_SIZE} bytes")
        hashes, index = self._hashes, self._size >> level
        hashes.append(subtree_hash)
        while index & 1:
            right = hashes.pop()
            hashes[-1] = node_hash(hashes[-1], right)
            index >>= 1
        self._size += 1 << level

    def copy(self) -> CompactRange:
        """An independent range of the same leaves."""
        return CompactRange(self._size, self._hashes)

    def root(self) -> bytes:
        """MTH of all leaves appended so far."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            result = node_hash(left, result)
        return result
