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

A ``Partition`` holds the sorted keyed unit hashes seen in released cells and each one's atom
label. ``small_atoms`` tells which groups of a new release would create an atom of 1 … k−1
units (those are withheld; the caller repeats until nothing more is withheld, since
withholding one group can leave a small remainder elsewhere); ``refined`` is the partition
after the release. Work is linear in the release's members plus the partition's size (a
``bincount`` of labels), independent of how many cells were released before.

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


@dataclass(frozen=True, slots=True)
class Partition:
    """Sorted unit hashes (``units``) and their atom labels (``labels``, same length)."""

    units: Hashes
    labels: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.units.shape != self.labels.shape or self.units.ndim != 1:
            raise SandboxBug("a partition needs one label per unit")

    @classmethod
    def empty(cls) -> Partition:
        return cls(np.empty(0, np.uint64), np.empty(0, np.int64))

    @property
    def atoms(self) -> int:
        return int(_distinct(self.labels).size)

    def sizes(self) -> npt.NDArray[np.int64]:
        return np.bincount(self.labels) if self.labels.size else np.empty(0, np.int64)

    def to_bytes(self) -> bytes:
        return (
            _HEADER.pack(_MAGIC, self.units.size)
            + self.units.astype("<u8").tobytes()
            + self.labels.astype("<i8").tobytes()
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


def hashes_from_hex(text: str) -> Hashes:
    """Unit hashes sent as concatenated 16-digit hex numbers (the ``members`` query)."""
    if len(text) % 16:
        raise SandboxBug("member hashes come in 16 hex digits each")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SandboxBug("member hashes are hex digits") from None
    return _distinct(np.frombuffer(raw, ">u8").astype(np.uint64))


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
class _Placed:
    """A release's members placed in the partition: per member, its unit index and group."""

    unit: npt.NDArray[np.int64]  # index into partition units, or N + index into new_units
    group: npt.NDArray[np.int64]
    new_units: Hashes
    label: npt.NDArray[np.int64]  # per unit in units + new_units: old label, −1 for new
    signature: npt.NDArray[np.uint64]  # per unit: XOR of the tags of its groups (0: none)


def _place(partition: Partition, members: list[Hashes]) -> _Placed:
    n = partition.units.size
    counts = [m.size for m in members]
    hashes = np.concatenate(members) if members else np.empty(0, np.uint64)
    group = np.repeat(np.arange(len(members), dtype=np.int64), counts)
    order = np.argsort(hashes)  # sorted queries make searchsorted cache-friendly
    hashes, group = hashes[order], group[order]
    pos = np.searchsorted(partition.units, hashes)
    found = np.zeros(hashes.size, bool)
    if n:
        clipped = np.minimum(pos, n - 1)
        found = partition.units[clipped] == hashes
    new_units, inverse = _distinct_inverse(hashes[~found])
    unit = np.empty(hashes.size, np.int64)
    unit[found] = pos[found]
    unit[~found] = n + inverse
    label = np.concatenate([partition.labels, np.full(new_units.size, -1, np.int64)])
    tags = np.frombuffer(secrets.token_bytes(8 * max(len(members), 1)), np.uint64)
    signature = np.zeros(label.size, np.uint64)
    if _distinct(unit).size == unit.size:  # the usual case: each unit in one group
        signature[unit] = tags[group]
    else:
        np.bitwise_xor.at(signature, unit, tags[group])
    return _Placed(unit, group, new_units, label, signature)


def _pieces(
    placed: _Placed,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The touched units, and for each its piece (old label, signature) id and piece sizes.

    A piece is keyed by the signature XOR an odd multiple of the old label (a bijection of
    the label): two different (label, signature) pairs collide with probability ~2^-64.
    """
    touched = _distinct(placed.unit)
    with np.errstate(over="ignore"):
        mixed = (placed.label[touched] + 1).astype(np.uint64) * np.uint64(_ODD)
    _keys, piece = _distinct_inverse(mixed ^ placed.signature[touched])
    sizes = np.bincount(piece) if piece.size else np.empty(0, np.int64)
    return touched, piece, sizes


def small_atoms(partition: Partition, members: Mapping[G, Hashes], k: int) -> set[G]:
    """Groups whose release (with all the others in ``members``) makes an atom of 1 … k−1."""
    keys = list(members)
    if not keys:
        return set()
    placed = _place(partition, [members[g] for g in keys])
    touched, piece, piece_sizes = _pieces(placed)
    old_sizes = partition.sizes()
    blamed = np.zeros(len(keys), bool)
    unit_piece = np.full(placed.label.size, -1, np.int64)
    unit_piece[touched] = piece
    member_piece = unit_piece[placed.unit]
    member_label = placed.label[placed.unit]
    piece_label = np.empty(piece_sizes.size, np.int64)
    piece_label[piece] = placed.label[touched]
    # A piece is a new atom unless it is a whole old atom; a new atom below k blames its groups.
    whole = np.zeros(piece_sizes.size, bool)
    old = piece_label >= 0
    whole[old] = piece_sizes[old] == old_sizes[piece_label[old]]
    bad_piece = (piece_sizes < k) & ~whole
    blamed[placed.group[bad_piece[member_piece]]] = True
    # What stays of an old atom outside every group of the release is an atom too.
    if old_sizes.size:
        inside = np.bincount(piece_label[old], weights=piece_sizes[old], minlength=old_sizes.size)
        remainder = old_sizes - inside.astype(np.int64)
        bad_label = (remainder > 0) & (remainder < k)
        hit = member_label >= 0
        hit[hit] = bad_label[member_label[hit]]
        blamed[placed.group[hit]] = True
    return {keys[i] for i in np.flatnonzero(blamed)}


def refined(partition: Partition, members: Mapping[G, Hashes]) -> Partition:
    """The partition once the cells in ``members`` are released."""
    if not members:
        return partition
    placed = _place(partition, list(members.values()))
    touched, piece, _sizes = _pieces(placed)
    label = placed.label.copy()
    top = int(label.max(initial=-1)) + 1
    label[touched] = top + piece
    n = partition.units.size
    at = np.searchsorted(partition.units, placed.new_units)
    units = np.insert(partition.units, at, placed.new_units)
    labels = np.insert(label[:n], at, label[n:])
    if labels.size and int(labels.max()) >= 4 * labels.size:
        labels = _distinct_inverse(labels)[1]
    return Partition(units, labels)
