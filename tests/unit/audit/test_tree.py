"""Perfect-subtree planning and the compact range used by the store."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit import ProofError
from audit.merkle import EMPTY_ROOT, leaf_hash, root_from_leaf_hashes
from audit.tree import (
    CompactRange,
    NodeId,
    consistency_ranges,
    inclusion_ranges,
    perfect_nodes,
    root_from_nodes,
)
from tests.unit.audit._support import getter, tree_of


def test_perfect_nodes_decompose_a_prefix_by_its_bits() -> None:
    assert perfect_nodes(0, 0) == []
    assert perfect_nodes(0, 13) == [NodeId(3, 0), NodeId(2, 2), NodeId(0, 12)]
    assert perfect_nodes(8, 14) == [NodeId(2, 2), NodeId(1, 6)]


def test_compact_range_reports_completed_subtrees() -> None:
    tree = CompactRange()
    completed = [tree.append(leaf_hash(bytes([i]))) for i in range(4)]
    assert [[node for node, _ in step] for step in completed] == [
        [NodeId(0, 0)],
        [NodeId(0, 1), NodeId(1, 0)],
        [NodeId(0, 2)],
        [NodeId(0, 3), NodeId(1, 1), NodeId(2, 0)],
    ]
    assert len(tree.hashes) == 1


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 300), m=st.integers(0, 300))
def test_compact_range_root_equals_mth_and_reloads_from_stored_nodes(n: int, m: int) -> None:
    hashes = tree_of(n + m)
    stored: dict[NodeId, bytes] = {}
    tree = CompactRange()
    for h in hashes[:n]:
        stored.update(tree.append(h))
    assert tree.size == n
    assert tree.root() == root_from_leaf_hashes(hashes[:n])
    assert root_from_nodes(n, lambda lv, ix: stored[NodeId(lv, ix)]) == tree.root()
    resumed = CompactRange.load(n, lambda lv, ix: stored[NodeId(lv, ix)])
    for h in hashes[n:]:
        stored.update(resumed.append(h))
    assert resumed.root() == root_from_leaf_hashes(hashes)
    assert len(stored) == sum((n + m) >> lv for lv in range((n + m).bit_length()))
    for (level, index), value in stored.items():
        assert value == getter(hashes)(level, index)


def test_proof_reads_are_logarithmic() -> None:
    size = 1_000_003
    for index in (0, 1, 524_287, 999_999, size - 1):
        ranges = inclusion_ranges(index, size)
        reads = sum(len(perfect_nodes(*r)) for r in ranges)
        assert reads <= 2 * size.bit_length()
    reads = sum(len(perfect_nodes(*r)) for r in consistency_ranges(333_333, size))
    assert reads <= 2 * size.bit_length()


@pytest.mark.parametrize(("index", "size"), [(0, 0), (3, 3), (-1, 4)])
def test_no_inclusion_proof_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ProofError):
        inclusion_ranges(index, size)


def test_no_consistency_proof_backwards() -> None:
    with pytest.raises(ProofError):
        consistency_ranges(5, 4)
    assert consistency_ranges(0, 4) == consistency_ranges(4, 4) == []


def test_compact_range_rejects_inconsistent_state() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, [EMPTY_ROOT])
    with pytest.raises(ValueError):
        CompactRange().append(b"short")


@settings(max_examples=80, deadline=None)
@given(
    prefix=st.integers(0, 40),
    level=st.integers(0, 5),
    count=st.integers(0, 3),
    tail=st.integers(0, 9),
)
def test_appending_perfect_subtrees_equals_appending_their_leaves(
    prefix: int, level: int, count: int, tail: int
) -> None:
    start = prefix << level  # aligned to the subtree size
    hashes = tree_of(start + (count << level) + tail)
    by_leaf, by_subtree = CompactRange(), CompactRange()
    for h in hashes[:start]:
        by_leaf.append(h)
    for lv, ix in perfect_nodes(0, start):  # the prefix itself, largest subtrees first
        by_subtree.append_subtree(lv, getter(hashes)(lv, ix))
    for n in range(count):
        by_subtree.append_subtree(level, getter(hashes)(level, (start >> level) + n))
    for h in hashes[start + (count << level) :]:
        by_subtree.append_subtree(0, h)
    for h in hashes[start:]:
        by_leaf.append(h)
    copy = by_subtree.copy()
    assert (by_subtree.size, by_subtree.hashes) == (by_leaf.size, by_leaf.hashes)
    assert by_subtree.root() == root_from_leaf_hashes(hashes)
    copy.append_subtree(0, leaf_hash(b"more"))
    assert copy.size == by_subtree.size + 1  # the copy is independent


def test_a_misaligned_or_malformed_subtree_is_refused() -> None:
    tree = CompactRange()
    tree.append(leaf_hash(b"x"))
    with pytest.raises(ValueError, match="cannot start"):
        tree.append_subtree(1, leaf_hash(b"y"))
    with pytest.raises(ValueError, match="cannot start"):
        tree.append_subtree(-1, leaf_hash(b"y"))
    with pytest.raises(ValueError, match="32 bytes"):
        tree.append_subtree(0, b"short")
    assert tree.size == 1
