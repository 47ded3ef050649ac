"""A replica's in-memory copies of the atom check's partitions (``releases.partition``).

An ``Atoms`` is a dataset's partition as of one stored version: its number (``seq``) and
random tag. ``PartitionCopies`` keeps one per (dataset, unit column), handed over by the
release once its transaction has committed; ``partition.load`` uses a copy only while the
store still holds its exact (version, tag).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from sandbox import Partition


@dataclass(frozen=True, slots=True)
class Atoms:
    """A dataset's partition as of stored version ``seq`` with its tag (``""``: nothing is
    stored yet), the snapshot's version (``base``, ``base_tag``), the cells released and the
    log's bytes after the snapshot. ``fresh``: nothing is stored under ``scheme``; the next
    save starts the partition anew."""

    dataset_id: str
    unit_column: str
    scheme: str
    partition: Partition
    seq: int = 0
    tag: str = ""
    base: int = 0
    base_tag: str = ""
    cells: int = 0
    log_bytes: int = 0
    fresh: bool = False
    key_id: str = ""  # the population key the units were hashed with (``history.key_id``)
    # Cells of ``release_cells`` with a larger id were released with a refinement of this
    # partition (the atom check covers them); None: no cell is known to be.
    covers_after: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset_id, self.unit_column)


class PartitionCopies:
    """One replica's partitions, least recently used dropped past ``max_units`` units in all
    (16 bytes each: the default holds ~1 GB)."""

    def __init__(self, max_units: int = 64_000_000) -> None:
        self._lock = threading.Lock()
        self._copies: OrderedDict[tuple[str, str], Atoms] = OrderedDict()
        self._units = 0
        self._max = max_units

    def get(self, key: tuple[str, str]) -> Atoms | None:
        with self._lock:
            copy = self._copies.get(key)
            if copy is not None:
                self._copies.move_to_end(key)
            return copy

    def keep(self, atoms: Atoms) -> None:
        """Keep ``atoms`` (from ``load`` or ``save``) once its transaction has committed."""
        if atoms.fresh:
            return
        with self._lock:
            old = self._copies.get(atoms.key)
            if old is not None and old.scheme == atoms.scheme and old.seq > atoms.seq:
                return  # a later release on this replica committed first
            self._put(atoms.key, atoms)
            while self._units > self._max and len(self._copies) > 1:
                _key, dropped = self._copies.popitem(last=False)
                self._units -= dropped.partition.size

    def drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._put(key, None)

    def _put(self, key: tuple[str, str], atoms: Atoms | None) -> None:
        old = self._copies.pop(key, None)
        self._units -= 0 if old is None else old.partition.size
        if atoms is not None:
            self._copies[key] = atoms
            self._units += atoms.partition.size
