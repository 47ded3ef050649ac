"""The atom check: whatever cells are released, every atom of their populations has ≥ k units."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import (
    Partition,
    SandboxBug,
    cells_from_bytes,
    cells_to_bytes,
    refined_partition,
    refines_partition,
    small_atoms,
)

K = 3
UNIVERSE = 24

releases = st.lists(  # releases of groups, each group a set of units (units overlap freely)
    st.lists(st.frozensets(st.integers(0, UNIVERSE - 1), min_size=1), min_size=1, max_size=4),
    min_size=1,
    max_size=8,
)


def hashed(units: frozenset[int]) -> np.ndarray:
    return np.array(sorted(u * 0x9E3779B97F4A7C15 % 2**64 for u in units), dtype=np.uint64)


def release(partition: Partition, groups: list[frozenset[int]]) -> tuple[Partition, list[int]]:
    """What the gateway does: withhold blamed groups until none is, then record the rest."""
    kept = dict(enumerate(groups))
    while blamed := small_atoms(partition, {g: hashed(s) for g, s in kept.items()}, K):
        for g in blamed:
            del kept[g]
    return refined_partition(partition, {g: hashed(s) for g, s in kept.items()}), list(kept)


def true_atoms(cells: list[frozenset[int]]) -> list[int]:
    signatures: dict[int, frozenset[int]] = {}
    for u in range(UNIVERSE):
        sig = frozenset(i for i, c in enumerate(cells) if u in c)
        if sig:
            signatures[u] = sig
    sizes: dict[frozenset[int], int] = {}
    for sig in signatures.values():
        sizes[sig] = sizes.get(sig, 0) + 1
    return sorted(sizes.values())


@settings(max_examples=60, deadline=None)
@given(releases)
def test_every_atom_of_released_cells_has_at_least_k_units(
    history: list[list[frozenset[int]]],
) -> None:
    partition = Partition.empty()
    released: list[frozenset[int]] = []
    for groups in history:
        partition, kept = release(partition, groups)
        released += [groups[g] for g in kept]
        assert all(size >= K for size in true_atoms(released))
        assert sorted(int(n) for n in partition.sizes() if n) == true_atoms(released)


def test_three_year_ranges_isolating_one_year_are_caught() -> None:
    years = {y: frozenset(range(y * 4, y * 4 + 4)) for y in range(5)} | {5: frozenset({20})}
    years[6] = frozenset(range(21, 24))

    def span(a: int, b: int) -> frozenset[int]:
        return frozenset().union(*(years[y] for y in range(a, b + 1)))

    partition = Partition.empty()
    partition, kept = release(partition, [span(0, 6)])
    partition, kept = release(partition, [span(0, 5)])  # minus [0,6]: 3 units, fine
    assert kept == [0]
    partition, kept = release(partition, [span(5, 6)])  # would isolate year 5 (one unit)
    assert kept == []


def test_disjoint_groups_and_repeats_pass() -> None:
    a, b = frozenset(range(0, 6)), frozenset(range(6, 12))
    partition, kept = release(Partition.empty(), [a, b])
    assert kept == [0, 1]
    partition, kept = release(partition, [a | b])  # the total of both: a union of atoms
    assert kept == [0]
    again, kept = release(partition, [a])
    assert kept == [0]
    assert again.atoms == partition.atoms == 2


def test_a_partition_survives_its_bytes() -> None:
    partition, _ = release(Partition.empty(), [frozenset(range(8)), frozenset(range(4, 20))])
    back = Partition.from_bytes(partition.to_bytes())
    assert np.array_equal(back.units, partition.units)
    assert np.array_equal(back.labels, partition.labels)


def atoms_of(partition: Partition) -> list[list[int]]:
    atoms: dict[int, list[int]] = {}
    for unit, label in zip(partition.units.tolist(), partition.labels.tolist(), strict=True):
        atoms.setdefault(label, []).append(unit)
    return sorted(atoms.values())


@settings(max_examples=60, deadline=None)
@given(releases)
def test_refining_by_every_stored_release_at_once_gives_the_atoms_of_one_after_another(
    history: list[list[frozenset[int]]],
) -> None:
    """The law the stored log relies on: atoms depend on the set of cells, not their order."""
    sequential = Partition.empty()
    for groups in history:
        sequential = refined_partition(sequential, {g: hashed(s) for g, s in enumerate(groups)})
    stored = cells_from_bytes(cells_to_bytes([hashed(s) for r in history for s in r]))
    at_once = refined_partition(Partition.empty(), dict(enumerate(stored)))
    assert atoms_of(at_once) == atoms_of(sequential)


def test_damaged_stored_cells_are_refused() -> None:
    data = cells_to_bytes([hashed(frozenset({1, 2})), hashed(frozenset({3}))])
    assert [c.tolist() for c in cells_from_bytes(data)] == [
        hashed(frozenset({1, 2})).tolist(),
        hashed(frozenset({3})).tolist(),
    ]
    for bad in (data[:-1], data + bytes(8), b"xxxx" + data[4:], data[:5]):
        with pytest.raises(SandboxBug):
            cells_from_bytes(bad)


@settings(max_examples=60, deadline=None)
@given(releases)
def test_a_layered_partition_answers_as_its_merged_form(
    history: list[list[frozenset[int]]],
) -> None:
    """Releases work on layers above the base, merged only past a size: before and after a
    merge, the check blames the same groups and the atoms are the same."""
    layered = Partition.empty()
    merged = Partition.empty()
    for groups in history:
        members = {g: hashed(s) for g, s in enumerate(groups)}
        for k in (2, 3, 5):
            expected = small_atoms(merged, members, k)
            assert small_atoms(layered, members, k) == expected
            assert small_atoms(layered.flat(), members, k) == expected
        layered = refined_partition(layered, members)
        merged = refined_partition(merged, members, merge_past=0)
        assert merged.layered() == 0
        assert layered.size == merged.size
        assert atoms_of(layered) == atoms_of(merged)
        assert layered.atoms == merged.atoms


def test_refining_leaves_the_partition_it_was_given_unchanged() -> None:
    """A replica keeps its copy while a release is being recorded; if that release rolls
    back, the copy must still be the partition as stored."""
    before, _ = release(Partition.empty(), [frozenset(range(12))])
    units, labels = before.units.copy(), before.labels.copy()
    after = refined_partition(before, {0: hashed(frozenset(range(6))), 1: hashed(frozenset({20}))})
    assert np.array_equal(before.units, units) and np.array_equal(before.labels, labels)
    assert sorted(int(n) for n in before.sizes() if n) == [12]
    assert sorted(int(n) for n in after.sizes() if n) == [1, 6, 6]


@settings(max_examples=80, deadline=None)
@given(releases, st.data())
def test_a_release_refines_the_partition_exactly_when_its_atoms_change(
    history: list[list[frozenset[int]]], data: st.DataObject
) -> None:
    """`refines_partition` (a release that changes nothing is not recorded) agrees with the
    refinement itself, on layered partitions, for new groups and for repeats: released cells
    again, unions of atoms, and a union of atoms with one unit more or less."""
    partition = Partition.empty()
    released: list[frozenset[int]] = []
    for groups in history:
        partition = refined_partition(partition, {g: hashed(s) for g, s in enumerate(groups)})
        released.extend(groups)
    unit_of = {int(hashed(frozenset({u}))[0]): u for u in range(UNIVERSE)}
    atoms = [frozenset(unit_of[h] for h in atom) for atom in atoms_of(partition)]
    unions = st.lists(st.sampled_from(atoms), min_size=1).map(lambda a: frozenset().union(*a))
    nudged = unions.flatmap(
        lambda u: st.integers(0, UNIVERSE - 1).map(lambda x: u ^ frozenset({x}))
    ).filter(bool)
    fresh = st.frozensets(st.integers(0, UNIVERSE - 1), min_size=1)
    candidates = st.one_of(st.sampled_from(released), unions, nudged, fresh)
    groups = data.draw(st.lists(candidates, min_size=1, max_size=4))
    members = {g: hashed(s) for g, s in enumerate(groups)}
    changed = atoms_of(refined_partition(partition, members)) != atoms_of(partition)
    assert refines_partition(partition, members) == changed
    if all(s in released for s in groups):
        assert not refines_partition(partition, members)
    if not changed:  # so the gateway skips the atom check of a release that changes nothing
        assert small_atoms(partition, members, K) == set()
