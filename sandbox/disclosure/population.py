"""Population sketches: invertible Bloom lookup tables of keyed unit hashes, per released cell.

A cell's population is the set of units (people, enterprises) that contributed to it. The
engine computes, per group, an IBLT (``compile_disclosure``): three cells per unit, each
holding a count, the XOR of the units' 64-bit keyed hashes and the XOR of ``check_of`` of them.
Subtracting two sketches cell by cell gives the sketch of the symmetric difference of the two
populations; peeling it (repeatedly removing a cell that holds exactly one unit) lists the
difference when it is small. A sketch of ``3 × cells_per_hash`` cells decodes a difference of
up to roughly ``2 × cells_per_hash`` units; a larger one does not decode and is then sized
from the share of occupied cells (small estimates fail closed). Only hashes keyed with a
per-deployment secret are stored: no re-identifiable id.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.errors import SandboxBug

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

HASHES = 3
SHIFT = 21
MASK = _MASK = 2**64 - 1
_MURMUR = 0xD6E8FEB86659FD93
_CELL = struct.Struct("<IqQQ")  # cell index, count, XOR of hashes, XOR of checks
# What the Spark engine's population query puts before its probe value (see sketch_scheme).
SPARK_SCHEME = "spark-xxhash64/"
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5


def sketch_scheme(probe: str) -> str:
    """The scheme of sketches whose population query reported ``probe``: DuckDB reports its
    ``hash`` of a fixed text, Spark ``spark-xxhash64/`` and its ``xxhash64`` of it."""
    return f"iblt3/{probe}" if probe.startswith(SPARK_SCHEME) else f"iblt3/duckdb-hash/{probe}"


def check_of(value: int) -> int:
    """DuckDB's ``hash`` of a UBIGINT (the MurmurHash3 finaliser): a cell's check value.

    ``compile_disclosure`` computes it in SQL; a unit test pins that the two agree.
    """
    z = value ^ (value >> 32)
    z = (z * _MURMUR) & _MASK
    z ^= z >> 32
    z = (z * _MURMUR) & _MASK
    return z ^ (z >> 32)


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def spark_check(value: int) -> int:
    """Spark's ``xxhash64`` of a BIGINT (XXH64 of 8 bytes, seed 42) as an unsigned word: the
    check value of sketches made by the Spark engine. ``value`` is the unsigned 64-bit form
    of the BIGINT; a test pins that this agrees with a real Spark."""
    h = (42 + _P5 + 8) & _MASK
    h ^= (_rotl((value * _P2) & _MASK, 31) * _P1) & _MASK
    h = (_rotl(h, 27) * _P1 + _P4) & _MASK
    h ^= h >> 33
    h = (h * _P2) & _MASK
    h ^= h >> 29
    h = (h * _P3) & _MASK
    return h ^ (h >> 32)


def _checks(values: npt.NDArray[np.uint64], scheme: str) -> npt.NDArray[np.uint64]:
    """``check_for(scheme)`` of every value, vectorised (uint64 arithmetic wraps as ``& MASK``)."""
    import numpy as np  # noqa: PLC0415 - numpy only where sketches are made

    u = np.uint64
    with np.errstate(over="ignore"):
        if scheme.startswith(f"iblt3/{SPARK_SCHEME}"):

            def rotl(x: npt.NDArray[np.uint64], bits: int) -> npt.NDArray[np.uint64]:
                return (x << u(bits)) | (x >> u(64 - bits))

            h = u((42 + _P5 + 8) & _MASK) ^ (rotl(values * u(_P2), 31) * u(_P1))
            h = rotl(h, 27) * u(_P1) + u(_P4)
            h ^= h >> u(33)
            h *= u(_P2)
            h ^= h >> u(29)
            h *= u(_P3)
            return h ^ (h >> u(32))
        z: npt.NDArray[np.uint64] = values ^ (values >> u(32))
        z *= u(_MURMUR)
        z ^= z >> u(32)
        z *= u(_MURMUR)
        return z ^ (z >> u(32))


# Up to this many cells a sketch's cells are filled in place (a count and two XORs by cell
# index: O(units)); larger sketches sort the units' cell indexes instead. A sketch has
# 3 × max(8, 2k) cells for the threshold k of a dataset: a few dozen.
DENSE_CELLS = 1 << 16
Cell = tuple[int, int, int, int]


def _cells_by_scatter(
    size: int,
    index: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint64],
    checks: npt.NDArray[np.uint64],
) -> tuple[Cell, ...]:
    """The occupied cells, each cell's figures accumulated at its index."""
    return _cells(*_scatter(size, index, keys, checks))


def _scatter(
    size: int,
    index: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint64],
    checks: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[Any], ...]:
    """The occupied cells' indexes, counts and XORs, accumulated in place over ``size``."""
    import numpy as np  # noqa: PLC0415 - numpy only where sketches are made

    counts = np.bincount(index, minlength=size)
    xor_keys, xor_checks = np.zeros(size, np.uint64), np.zeros(size, np.uint64)
    np.bitwise_xor.at(xor_keys, index, keys)
    np.bitwise_xor.at(xor_checks, index, checks)
    occupied = np.flatnonzero(counts)
    return occupied, counts[occupied], xor_keys[occupied], xor_checks[occupied]


def _placed(
    h: npt.NDArray[np.uint64], cells_per_hash: int, scheme: str, base: Any = 0
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Each unit's cell in each of the ``HASHES`` sub-tables (offset by ``base``), with the
    unit's hash and check repeated to match."""
    import numpy as np  # noqa: PLC0415 - numpy only where sketches are made

    width = np.uint64(cells_per_hash)
    index = np.concatenate(
        [
            base + j * cells_per_hash + ((h >> np.uint64(j * SHIFT)) % width).astype(np.int64)
            for j in range(HASHES)
        ]
    )
    return index, np.tile(h, HASHES), np.tile(_checks(h, scheme), HASHES)


def _cells_by_sort(
    size: int,
    index: npt.NDArray[np.int64],
    keys: npt.NDArray[np.uint64],
    checks: npt.NDArray[np.uint64],
) -> tuple[Cell, ...]:
    """The occupied cells, the units ordered by cell index (any order within a cell: XOR and
    count do not depend on it)."""
    import numpy as np  # noqa: PLC0415 - numpy only where sketches are made

    if not index.size:
        return ()
    order = np.argsort(index)
    index, keys, checks = index[order], keys[order], checks[order]
    starts = np.flatnonzero(np.concatenate([[True], index[1:] != index[:-1]]))
    return _cells(
        index[starts],
        np.diff(np.append(starts, index.size)),
        np.bitwise_xor.reduceat(keys, starts),
        np.bitwise_xor.reduceat(checks, starts),
    )


def _cells(*columns: npt.NDArray[Any]) -> tuple[Cell, ...]:
    """(index, count, XOR of hashes, XOR of checks) per cell, as Python ints."""
    return tuple(zip(*(c.tolist() for c in columns), strict=True))


def check_for(scheme: str) -> Callable[[int], int]:
    """The check function of a sketch scheme (``check_of`` unless Spark made it)."""
    return spark_check if scheme.startswith(f"iblt3/{SPARK_SCHEME}") else check_of


def cells_of(value: int, cells_per_hash: int) -> tuple[int, ...]:
    return tuple(
        j * cells_per_hash + ((value >> (j * SHIFT)) % cells_per_hash) for j in range(HASHES)
    )


@dataclass(frozen=True, slots=True)
class PopulationSketch:
    """The IBLT of one cell's population; ``cells`` holds (index, count, keys, checks)."""

    cells_per_hash: int
    units: int
    cells: tuple[tuple[int, int, int, int], ...]
    scheme: str = ""  # how unit hashes were made; sketches of different schemes never compare

    def __post_init__(self) -> None:
        if type(self.cells_per_hash) is not int or not 1 <= self.cells_per_hash <= 2**SHIFT:
            raise SandboxBug("cells_per_hash must be an integer in 1..2**21")
        size = HASHES * self.cells_per_hash
        if any(not 0 <= cell[0] < size for cell in self.cells):
            raise SandboxBug("a sketch cell index is out of range")

    @classmethod
    def from_rows(
        cls,
        cells_per_hash: int,
        rows: Iterable[tuple[object, object, object, object]],
        scheme: str = "",
    ) -> PopulationSketch:
        cells: list[tuple[int, int, int, int]] = []
        for index, count, keys, checks in rows:
            if not (
                isinstance(index, int)
                and isinstance(count, int)
                and isinstance(keys, int)
                and isinstance(checks, int)
            ):
                raise SandboxBug("population sketch rows hold integers")
            cells.append((index, count, keys, checks))
        cells.sort()
        units = sum(c[1] for c in cells) // HASHES
        return cls(cells_per_hash, units, tuple(cells), scheme)

    @classmethod
    def from_hashes(cls, cells_per_hash: int, hashes: Iterable[int]) -> PopulationSketch:
        """The sketch of a set of 64-bit unit hashes (what the engine computes in SQL)."""
        cells: dict[int, list[int]] = {}
        units = 0
        for value in set(hashes):
            units += 1
            for index in cells_of(value, cells_per_hash):
                cell = cells.setdefault(index, [0, 0, 0])
                cell[0] += 1
                cell[1] ^= value
                cell[2] ^= check_of(value)
        ordered = tuple((i, c[0], c[1], c[2]) for i, c in sorted(cells.items()))
        return cls(cells_per_hash, units, ordered)

    @classmethod
    def from_hash_array(
        cls, cells_per_hash: int, hashes: npt.NDArray[np.uint64], scheme: str
    ) -> PopulationSketch:
        """The sketch of distinct unit hashes (``atoms.hashes_from_bytes``), vectorised: the
        cells the engine's ``populations`` query computes in SQL, with ``scheme``'s check
        function (DuckDB's ``hash`` or Spark's ``xxhash64``; tests pin both against a real
        engine). A job computes its sketches so from the member hashes it reads anyway."""
        import numpy as np  # noqa: PLC0415 - numpy only where sketches are made

        h = np.asarray(hashes, dtype=np.uint64)
        if h.size and np.any(h[1:] <= h[:-1]):
            raise SandboxBug("a sketch is made of sorted distinct hashes")
        size = HASHES * cells_per_hash
        made = _cells_by_scatter if size <= DENSE_CELLS else _cells_by_sort
        cells = made(size, *_placed(h, cells_per_hash, scheme))
        return cls(cells_per_hash, int(h.size), cells, scheme)

    @classmethod
    def from_hash_arrays(
        cls,
        cells_per_hash: int,
        arrays: Sequence[npt.NDArray[np.uint64]],
        scheme: str,
    ) -> list[PopulationSketch]:
        """``from_hash_array`` of each array (each group of a release), in one pass: the
        groups' cells are laid side by side, so a release of many small groups costs a few
        array operations instead of a few per group (~0.2 ms each, most of it numpy's own
        overhead). Beyond ``DENSE_CELLS`` cells in all, one group at a time."""
        import numpy as np  # noqa: PLC0415 - numpy only where sketches are made

        size = HASHES * cells_per_hash
        if not arrays or len(arrays) * size > DENSE_CELLS:
            return [cls.from_hash_array(cells_per_hash, a, scheme) for a in arrays]
        hs = [np.asarray(a, dtype=np.uint64) for a in arrays]
        units = np.fromiter((a.size for a in hs), dtype=np.int64, count=len(hs))
        h = np.concatenate(hs)
        if h.size > 1:
            descending = h[1:] <= h[:-1]
            starts = np.cumsum(units)[:-1]  # where each group after the first begins
            descending[starts[(starts > 0) & (starts < h.size)] - 1] = False  # across groups
            if np.any(descending):
                raise SandboxBug("a sketch is made of sorted distinct hashes")
        base = np.repeat(np.arange(len(hs), dtype=np.int64) * size, units)  # each group's
        placed = _placed(h, cells_per_hash, scheme, base)  # cells side by side
        occupied, counts, xor_keys, xor_checks = _scatter(len(hs) * size, *placed)
        cells = _cells(occupied % size, counts, xor_keys, xor_checks)
        bounds = [0, *np.searchsorted(occupied, np.arange(1, len(hs)) * size).tolist(), len(cells)]
        return [
            cls(cells_per_hash, n, cells[bounds[g] : bounds[g + 1]], scheme)
            for g, n in enumerate(units.tolist())
        ]

    def to_bytes(self) -> bytes:
        return b"".join(_CELL.pack(*cell) for cell in self.cells)

    @classmethod
    def from_bytes(
        cls, cells_per_hash: int, units: int, data: bytes, scheme: str = ""
    ) -> PopulationSketch:
        if len(data) % _CELL.size:
            raise SandboxBug("a stored population sketch is truncated")
        cells = tuple(_CELL.unpack_from(data, i) for i in range(0, len(data), _CELL.size))
        return cls(cells_per_hash, units, cells, scheme)


def difference_size(a: PopulationSketch, b: PopulationSketch, *, limit: int) -> int | None:
    """How many units are in exactly one of the two populations, if fewer than ``limit``.

    Returns the size when the difference decodes completely and is below ``limit``; None when
    it is at least ``limit``. A difference that does not decode is estimated from the cells it
    occupies: an estimate below ``2 × limit`` is returned (fail closed), a larger one is None.
    """
    if a.cells_per_hash != b.cells_per_hash or a.scheme != b.scheme:
        raise SandboxBug("sketches of different sizes or schemes cannot be compared")
    check = check_for(a.scheme)
    diff: dict[int, list[int]] = {}
    for sign, sketch in ((1, a), (-1, b)):
        for index, count, keys, checks in sketch.cells:
            cell = diff.setdefault(index, [0, 0, 0])
            cell[0] += sign * count
            cell[1] ^= keys
            cell[2] ^= checks
    found = 0
    pure = [i for i, c in diff.items() if _pure(c, check)]
    while pure:
        index = pure.pop()
        cell = diff[index]
        if not _pure(cell, check):
            continue
        sign, value = cell[0], cell[1]
        found += 1
        if found >= limit:
            return None
        for other in cells_of(value, a.cells_per_hash):
            target = diff.setdefault(other, [0, 0, 0])
            target[0] -= sign
            target[1] ^= value
            target[2] ^= check(value)
            if _pure(target, check):
                pure.append(other)
    if all(c == [0, 0, 0] for c in diff.values()):
        return found
    # Not decodable: a large difference, or (rarely) a few units that share all their cells.
    # Estimate the rest from how many cells are still occupied; fail closed when it is small.
    estimate = found + _occupancy_estimate(diff, a.cells_per_hash)
    return max(estimate, 1) if estimate < 2 * limit else None


def _occupancy_estimate(diff: dict[int, list[int]], cells_per_hash: int) -> int:
    """Units still in the sketch, from the share of empty cells per sub-table (balls in bins)."""
    estimates = []
    for j in range(HASHES):
        indices = range(j * cells_per_hash, (j + 1) * cells_per_hash)
        empty = sum(1 for i in indices if diff.get(i, [0, 0, 0]) == [0, 0, 0])
        if empty == 0:
            return 2**62
        if cells_per_hash == 1:
            estimates.append(0.0 if empty else float(2**62))
            continue
        estimates.append(math.log(empty / cells_per_hash) / math.log(1 - 1 / cells_per_hash))
    return max(1, round(sum(estimates) / len(estimates)))


def _pure(cell: list[int], check: Callable[[int], int]) -> bool:
    return cell[0] in (1, -1) and check(cell[1]) == cell[2]
