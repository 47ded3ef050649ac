"""RFC 6962 / RFC 9162 Merkle tree hashing and proof verification (SHA-256).

Pure functions only. Proof *generation* and the incremental tree live in `audit.tree`.

- `leaf_hash(d) = SHA-256(0x00 || d)`, `node_hash(l, r) = SHA-256(0x01 || l || r)`.
- `root_from_leaf_hashes` is MTH from RFC 6962 §2.1 (split at the largest power of two < n).
- `verify_inclusion` / `verify_consistency` follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step.
  They return None or raise `ProofError`; hostile input (wrong types, wrong lengths, impossible
  sizes) raises `ProofError` too, never another exception.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from audit.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) given the n leaf hashes (not the leaf data)."""
    if not hashes:
        return EMPTY_ROOT
    # Merge equal-sized perfect subtrees left to right, then fold the remainder from the right:
    # the same tree as the recursive definition, without slicing.
    stack: list[tuple[int, bytes]] = []
    for h in hashes:
        stack.append((1, h))
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            (n, right), (_, left) = stack.pop(), stack.pop()
            stack.append((2 * n, node_hash(left, right)))
    root = stack[-1][1]
    for _, left in reversed(stack[:-1]):
        root = node_hash(left, root)
    return root


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProofError(f"{name} must be a non-negative integer")
    return value


def _check_hash(name: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes")
    return value


def _check_proof(proof: object) -> list[bytes]:
    if isinstance(proof, (bytes, str)) or not isinstance(proof, Sequence):
        raise ProofError("a proof must be a sequence of hashes")
    return [_check_hash(f"proof[{i}]", p) for i, p in enumerate(proof)]


def _lsb(x: int) -> bool:
    return bool(x & 1)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` sits at `index` in the tree of `size` leaves with head `root`."""
    leaf = _check_hash("leaf hash", leaf_hash)
    fn = _check_int("index", index)
    size = _check_int("size", size)
    root = _check_hash("root", root)
    path = _check_proof(proof)
    if fn >= size:
        raise ProofError(f"index {fn} is not below size {size}")
    sn = size - 1
    r = leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if _lsb(fn) or fn == sn:
            r = node_hash(p, r)
            while not _lsb(fn) and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if not hmac.compare_digest(r, root):
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (size1, root1) is a prefix of the tree (size2, root2).

    Beyond RFC 9162 (which covers 0 < size1 < size2): size1 == size2 needs an empty proof and
    equal roots; size1 == 0 needs an empty proof and root1 == EMPTY_ROOT.
    """
    first = _check_int("size1", size1)
    second = _check_int("size2", size2)
    first_hash = _check_hash("root1", root1)
    second_hash = _check_hash("root2", root2)
    path = _check_proof(proof)
    if first > second:
        raise ProofError(f"size1 {first} is larger than size2 {second}")
    if first in (0, second):
        if path:
            raise ProofError("consistency proof must be empty for these sizes")
        expected = second_hash if first == second else EMPTY_ROOT
        if not hmac.compare_digest(first_hash, expected):
            raise ProofError("roots are not consistent")
        return
    fr, sr = _consistency_roots(first, second, path, first_hash)
    if not hmac.compare_digest(fr, first_hash):
        raise ProofError("consistency proof does not lead to the first root")
    if not hmac.compare_digest(sr, second_hash):
        raise ProofError("consistency proof does not lead to the second root")


def _consistency_roots(
    first: int, second: int, path: list[bytes], first_hash: bytes
) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 1-7 for 0 < first < second: the two roots the proof implies."""
    if not path:
        raise ProofError("consistency proof is empty")
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn = first - 1
    sn = second - 1
    while _lsb(fn):
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if _lsb(fn) or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not _lsb(fn) and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    return fr, sr
