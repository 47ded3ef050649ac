"""Atoms of released populations: the differencing defence across any number of releases.

Every released cell of a dataset describes a set of units (its population). Partition the
units that appear in at least one released cell by *which* released cells contain them: each
class is an **atom**. Any sum or difference of released cells (counts or sums, with any
integer coefficients) is constant on every atom, so a population that can be derived by
adding and subtracting released cells is a union of atoms. Hence the invariant this module
keeps — **every atom has at least k units** — means no population of 1 … k−1 units is
derivable from the released cells, whichever templates, parameter values, departments and
times they came from (R[a,b] + R[b,c] − R[a,c] is the atom "year b"; it is small, so the
release that would create it withholds the cells concerned).

The check is sufficient, not necessary: an atom below k that no combination isolates (two
overlapping cells whose intersection is small but whose union is never released) still
withholds. That is the price of a check whose cost does not grow with the history.

A ``Partition`` holds the keyed unit hashes seen in released cells, each one's atom label and
each atom's size. ``small_atoms`` tells which groups of a new release would create an atom of
1 … k−1 units (those are withheld; the caller repeats until nothing more is withheld, since
withholding one group can leave a small remainder elsewhere); ``refined`` is the partition
after the release. Both work on the units the release touches — sorts of its members and
binary searches in the partition — not on the partition's size, and not on how many cells
were released before: the partition is layered (see ``Partition``), its layers merged once
they outgrow a share of it.

Groups of one release are told apart by random 64-bit tags XORed per unit (a unit may lie in
several groups when a unit has several rows); two different sets of groups collide with
probability ~2^-64 per pair.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from sandbox.errors import SandboxBug

Hashes = npt.NDArray[np.uint64]
G = TypeVar("G", bound=Hashable)
_HEADER = struct.Struct("<4sQ")
_MAGIC = b"atm1"
_CELLS = b"cel1"
_ODD = 0x9E3779B97F4A7C15


class Partition:
    """Units (sorted keyed hashes) that appear in released cells, each with its atom label.

    Layered, so that a release costs what it touches rather than what the partition holds:
    a *base* (sorted ``units`` with their labels, never modified once made), the units added
    since (a small sorted layer of their own) and the base units relabelled since (sorted
    positions with their new labels), plus each label's atom size. Partitions are values:
    ``refined`` returns a new one and shares the base with its input, so a copy kept by a
    replica is never changed under a release that rolls back. Once the layers outgrow
    ``max(MIN_LAYER, LAYER_SHARE × base)`` entries they are merged into a new base (a pass
    over the partition, once per that many touched units).
    """

    __slots__ = (
        "_added",
        "_added_labels",
        "_base",
        "_base_labels",
        "_flat",
        "_moved",
        "_moved_labels",
        "_sizes",
    )

    def __init__(self, units: Hashes, labels: npt.NDArray[np.int64]) -> None:
        """A partition of ``units`` (sorted, distinct) labelled by ``labels`` (≥ 0)."""
        if units.shape != labels.shape or units.ndim != 1:
            raise SandboxBug("a partition needs one label per unit")
        self._base = units
        self._base_labels = labels
        self._added = _NO_UNITS
        self._added_labels = _NO_LABELS
        self._moved = _NO_LABELS  # positions in the base, sorted
        self._moved_labels = _NO_LABELS
        self._sizes: npt.NDArray[np.int64] | None = None
        self._flat: Partition | None = self

    @classmethod
    def empty(cls) -> Partition:
        return cls(_NO_UNITS, _NO_LABELS)

    @classmethod
    def _layered(
        cls,
        base: Partition,
        added: tuple[Hashes, npt.NDArray[np.int64]],
        moved: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
        sizes: npt.NDArray[np.int64],
    ) -> Partition:
        layered = cls(base._base, base._base_labels)
        layered._added, layered._added_labels = added
        layered._moved, layered._moved_labels = moved
        layered._sizes = sizes
        layered._flat = None if added[0].size or moved[0].size else layered
        return layered

    @property
    def size(self) -> int:
        """How many units the partition holds."""
        return int(self._base.size + self._added.size)

    @property
    def units(self) -> Hashes:
        """Every unit, sorted (merges the layers once, then kept)."""
        return self.flat()._base

    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """Each unit's atom label, in the order of ``units``."""
        return self.flat()._base_labels

    @property
    def atoms(self) -> int:
        return int(np.count_nonzero(self.sizes()))

    def sizes(self) -> npt.NDArray[np.int64]:
        """The size of each label's atom (0 for a label no longer used)."""
        if self._sizes is None:
            labels = self._base_labels
            self._sizes = np.bincount(labels) if labels.size else np.empty(0, np.int64)
        return self._sizes

    def layered(self) -> int:
        """Entries in the layers above the base (0 once merged)."""
        return int(self._added.size + self._moved.size)

    def flat(self) -> Partition:
        """The same partition with its layers merged into the base and labels renumbered."""
        if self._flat is not None:
            return self._flat
        labels = self._base_labels.copy()
        labels[self._moved] = self._moved_labels
        at = np.searchsorted(self._base, self._added)
        units = np.insert(self._base, at, self._added)
        labels = np.insert(labels, at, self._added_labels)
        sizes = self.sizes()
        live = np.flatnonzero(sizes)
        number = np.full(sizes.size, -1, np.int64)
        number[live] = np.arange(live.size, dtype=np.int64)
        flat = Partition(units, number[labels])
        flat._sizes = sizes[live]
        self._flat = flat
        return flat

    def labels_of(self, hashes: Hashes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """For sorted distinct ``hashes``: each one's label (−1: not in the partition) and
        its position in the base (meaningful where ``in_base``), as (labels, positions);
        base membership is ``positions >= 0``."""
        label = np.full(hashes.size, -1, np.int64)
        position = np.full(hashes.size, -1, np.int64)
        n = self._base.size
        if n and hashes.size:
            pos = np.searchsorted(self._base, hashes)
            found = self._base[np.minimum(pos, n - 1)] == hashes
            position[found] = pos[found]
            label[found] = self._base_labels[pos[found]]
            if self._moved.size:
                at, hit = _find(self._moved, pos[found])
                sub = label[found]
                sub[hit] = self._moved_labels[at[hit]]
                label[found] = sub
        if self._added.size and hashes.size:
            rest = position < 0
            at, hit = _find(self._added, hashes[rest])
            sub = label[rest]
            sub[hit] = self._added_labels[at[hit]]
            label[rest] = sub
        return label, position

    def to_bytes(self) -> bytes:
        flat = self.flat()
        return (
            _HEADER.pack(_MAGIC, flat._base.size)
            + flat._base.astype("<u8").tobytes()
            + flat._base_labels.astype("<i8").tobytes()
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Partition:
        magic, n = _HEADER.unpack_from(data)
        if magic != _MAGIC or len(data) != _HEADER.size + 16 * n:
            raise SandboxBug("a stored partition is damaged")
        at = _HEADER.size
        units = np.frombuffer(data, "<u8", n, at).astype(np.uint64)
        labels = np.frombuffer(data, "<i8", n, at + 8 * n).astype(np.int64)
        if n and (np.any(units[1:] <= units[:-1]) or labels.min() < 0):
            raise SandboxBug("a stored partition is damaged")
        return cls(units, labels)


_NO_UNITS: Hashes = np.empty(0, np.uint64)
_NO_LABELS: npt.NDArray[np.int64] = np.empty(0, np.int64)
MIN_LAYER = 65_536
LAYER_SHARE = 0.125


def _find(
    sorted_values: npt.NDArray[Any], wanted: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """For each of ``wanted``: its index in ``sorted_values`` and whether it is there."""
    at = np.searchsorted(sorted_values, wanted)
    if not sorted_values.size:
        return at, np.zeros(wanted.size, bool)
    return at, sorted_values[np.minimum(at, sorted_values.size - 1)] == wanted


def cells_to_bytes(cells: Sequence[Hashes]) -> bytes:
    """The member hashes of released cells, as stored: the cell count, each cell's size, the
    hashes (8 bytes each). ``refined(p, cells)`` is the same partition whether the cells come
    from one release or several: atoms depend on the set of cells, not on their order."""
    sizes = np.array([c.size for c in cells], "<u8")
    hashes = np.concatenate(cells) if cells else np.empty(0, np.uint64)
    return _HEADER.pack(_CELLS, len(cells)) + sizes.tobytes() + hashes.astype("<u8").tobytes()


def cells_from_bytes(data: bytes) -> list[Hashes]:
    if len(data) < _HEADER.size:
        raise SandboxBug("stored released cells are damaged")
    magic, n = _HEADER.unpack_from(data)
    if magic != _CELLS or len(data) < _HEADER.size + 8 * n:
        raise SandboxBug("stored released cells are damaged")
    sizes = np.frombuffer(data, "<u8", n, _HEADER.size).astype(np.int64)
    at = _HEADER.size + 8 * n
    if len(data) != at + 8 * int(sizes.sum()):
        raise SandboxBug("stored released cells are damaged")
    hashes = np.frombuffer(data, "<u8", offset=at).astype(np.uint64)
    return np.split(hashes, np.cumsum(sizes)[:-1]) if n else []


def hashes_from_bytes(packed: bytes) -> Hashes:
    """Sorted distinct unit hashes from 8 bytes a hash, big-endian, in any order (the
    ``census`` query's hashes as engines pack them: ``pack_member_hashes``)."""
    if len(packed) % 8:
        raise SandboxBug("member hashes come in 8 bytes each")
    return _distinct(np.frombuffer(packed, ">u8").astype(np.uint64))


def _distinct(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Sorted distinct values (a sort: numpy 2.4's hash-based ``unique`` is ~30x slower here)."""
    ordered = np.sort(values)
    keep = np.ones(ordered.size, bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def _distinct_inverse(
    values: npt.NDArray[Any],
) -> tuple[npt.NDArray[Any], npt.NDArray[np.int64]]:
    """Sorted distinct values and, per value, the index of its distinct value."""
    order = np.argsort(values)
    ordered = values[order]
    starts = np.ones(ordered.size, bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty(ordered.size, np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return ordered[starts], inverse


@dataclass(slots=True)
class _Touched:
    """The units a release's members touch (sorted distinct hashes) and what splits them.

    ``member`` maps each member to its unit; ``group`` is each member's group; ``label`` the
    unit's old label (−1: new) and ``position`` its index in the base (−1: not there);
    ``piece`` each unit's piece — units of one old atom in the same groups — with
    ``piece_sizes`` and ``piece_label``. A piece is keyed by the XOR of random 64-bit tags of
    its groups and an odd multiple of its old label (a bijection of the label): two different
    (label, groups) pairs collide with probability ~2^-64.
    """

    units: Hashes
    member: npt.NDArray[np.int64]
    group: npt.NDArray[np.int64]
    label: npt.NDArray[np.int64]
    position: npt.NDArray[np.int64]
    piece: npt.NDArray[np.int64]
    piece_sizes: npt.NDArray[np.int64]
    piece_label: npt.NDArray[np.int64]


def _touch(partition: Partition, members: list[Hashes]) -> _Touched:
    counts = [m.size for m in members]
    hashes = np.concatenate(members) if members else _NO_UNITS
    group = np.repeat(np.arange(len(members), dtype=np.int64), counts)
    units, member = _distinct_inverse(hashes)
    label, position = partition.labels_of(units)
    tags = np.frombuffer(secrets.token_bytes(8 * max(len(members), 1)), np.uint64)
    signature = np.zeros(units.size, np.uint64)
    if units.size == member.size:  # the usual case: each unit in one group
        signature[member] = tags[group]
    else:
        np.bitwise_xor.at(signature, member, tags[group])
    with np.errstate(over="ignore"):
        mixed = (label + 1).astype(np.uint64) * np.uint64(_ODD)
    _keys, piece = _distinct_inverse(mixed ^ signature)
    piece_sizes = np.bincount(piece) if piece.size else _NO_LABELS
    piece_label = np.empty(piece_sizes.size, np.int64)
    piece_label[piece] = label
    return _Touched(units, member, group, label, position, piece, piece_sizes, piece_label)


def small_atoms(partition: Partition, members: Mapping[G, Hashes], k: int) -> set[G]:
    """Groups whose release (with all the others in ``members``) makes an atom of 1 … k−1.

    Work in the members' size (sorts and binary searches in the partition), not the
    partition's."""
    keys = list(members)
    if not keys:
        return set()
    t = _touch(partition, [members[g] for g in keys])
    old_sizes = partition.sizes()
    blamed = np.zeros(len(keys), bool)
    # A piece is a new atom unless it is a whole old atom; a new atom below k blames its groups.
    old = t.piece_label >= 0
    whole = np.zeros(t.piece_sizes.size, bool)
    whole[old] = t.piece_sizes[old] == old_sizes[t.piece_label[old]]
    bad_piece = (t.piece_sizes < k) & ~whole
    blamed[t.group[bad_piece[t.piece[t.member]]]] = True
    # What stays of an old atom outside every group of the release is an atom too.
    if old.any():
        touched_labels, which = _distinct_inverse(t.piece_label[old])
        inside = np.bincount(which, weights=t.piece_sizes[old]).astype(np.int64)
        remainder = old_sizes[touched_labels] - inside
        bad_label = (remainder > 0) & (remainder < k)
        member_label = t.label[t.member]
        hit = member_label >= 0
        hit[hit] = bad_label[np.searchsorted(touched_labels, member_label[hit])]
        blamed[t.group[hit]] = True
    return {keys[i] for i in np.flatnonzero(blamed)}


def refined(
    partition: Partition,
    members: Mapping[G, Hashes],
    *,
    merge_past: int | None = None,
) -> Partition:
    """The partition once the cells in ``members`` are released (a new value; ``partition``
    is unchanged). Its layers are merged into its base past ``merge_past`` entries (default:
    ``MIN_LAYER`` or ``LAYER_SHARE`` of the base, whichever is more)."""
    if not members:
        return partition
    t = _touch(partition, list(members.values()))
    old_sizes = partition.sizes()
    top = old_sizes.size
    new_label = top + t.piece
    sizes = np.concatenate([old_sizes, t.piece_sizes])
    old = t.label >= 0
    if old.any():
        labels, counts = _distinct_counts(t.label[old])
        sizes[labels] -= counts
    # Base units relabelled: merged into the moved layer (the new labels win).
    in_base = t.position >= 0
    moved, moved_labels = _merged(
        partition._moved, partition._moved_labels, t.position[in_base], new_label[in_base]
    )
    # Units outside the base: those already added get their new label, new ones are added.
    outside = t.units[~in_base]
    outside_labels = new_label[~in_base]
    at, there = _find(partition._added, outside)
    added_labels = partition._added_labels.copy()
    added_labels[at[there]] = outside_labels[there]
    fresh = ~there
    slot = np.searchsorted(partition._added, outside[fresh])
    added = np.insert(partition._added, slot, outside[fresh])
    added_labels = np.insert(added_labels, slot, outside_labels[fresh])
    result = Partition._layered(partition, (added, added_labels), (moved, moved_labels), sizes)
    limit = max(MIN_LAYER, LAYER_SHARE * partition._base.size) if merge_past is None else merge_past
    return result.flat() if result.layered() > limit else result


def refines(partition: Partition, members: Mapping[G, Hashes]) -> bool:
    """Whether releasing the cells in ``members`` (each sorted distinct hashes) would change
    ``partition``: False exactly when every cell is a union of its atoms (every unit in it
    is in the partition, and every atom it touches lies wholly inside it). Refining by such
    cells changes no unit's atom: a repeat of released populations adds nothing to record.
    Costs a lookup of the cells' units, not the refinement."""
    sizes = partition.sizes()
    for hashes in members.values():
        if not hashes.size:
            continue
        labels, _positions = partition.labels_of(hashes)
        if (labels < 0).any():
            return True
        touched, counts = _distinct_counts(labels)
        if (counts != sizes[touched]).any():
            return True
    return False


def _distinct_counts(
    values: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Sorted distinct values and how often each occurs (a sort: no inverse is needed)."""
    ordered = np.sort(values)
    if not ordered.size:
        return ordered, _NO_LABELS
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[starts], np.diff(np.append(starts, ordered.size))


def _merged(
    positions: npt.NDArray[np.int64],
    labels: npt.NDArray[np.int64],
    new_positions: npt.NDArray[np.int64],
    new_labels: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Two sorted (position → label) layers as one, ``new_*`` replacing equal positions."""
    if not new_positions.size:
        return positions, labels
    _at, there = _find(new_positions, positions)
    kept, kept_labels = positions[~there], labels[~there]
    slot = np.searchsorted(kept, new_positions)
    return np.insert(kept, slot, new_positions), np.insert(kept_labels, slot, new_labels)
