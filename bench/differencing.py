"""The atom check of the differencing defence and its stored partition, per release.

`python -m bench.differencing [--quick] [--province]` (`python -m bench differencing` passes
no flags). A dataset of 200,000 units (the demo's enterprise registry) split into 10,000
blocks of 20; the history is releases of 1,000 groups each, every group a union of 1–5
random blocks, so every cell passes and is recorded (10 releases for 10^4 cells, 1,000 for
10^6; `--quick` stops at 10^5). `--province` adds a
partition of 10,000,000 units in atoms of 20 (made directly, not from a history). The history
is stored as the snapshot (`release_partitions`), then one more release of 16,000 units is
committed through the log (`release_refinements`), as another replica would.

Then a new release is checked — a district table (16 groups over 16,000 units, and over all
200,000) — through the real code path in SQLite: `releases.partition.load`,
`sandbox.small_atoms`, `releases.partition.save`, in each replica state:

- *current*: this replica's copy is the stored head (it made the last release);
- *behind*: another replica released since (one log row to read and apply);
- *cold*: no copy (a replica's first release after it started: snapshot + log);
- *compacting*: current, and this release writes the snapshot (forced);
- *old*: what the code did before the log: read the whole partition, rewrite it.

Medians of 20 runs (5 at province scale) after 2 warm-ups; each run rolls its transaction
back and keeps no copy, so the history stays the same. Wall time and, in brackets, the
process's CPU time (SQLite runs in the process; on a loaded machine the wall time mostly
measures waiting).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from bench.common import summary, write_result
from gateway.jobs.releases import partition as stored
from gateway.jobs.releases.copies import PartitionCopies
from gateway.store import db, schema
from sandbox import GroupKey, Partition, cells_to_bytes, refined_partition, small_atoms

UNITS = 200_000
PROVINCE = 10_000_000
BLOCK = 20
GROUPS_PER_RELEASE = 1_000
K = 10
DATASET, UNIT, SCHEME = "market.enterprise_registry", "enterprise_id", "bench"
KEY_ID = "0123456789abcdef"
STATES = ("current", "behind", "cold", "compacting", "old")


def timed(fn: Callable[[], object], *, repeat: int, warmup: int = 2) -> dict[str, Any]:
    """Wall and CPU time (``process_time``) per run: on a shared, loaded machine the CPU
    time is what the check itself costs; the wall time adds waiting for a core."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {"wall": summary(wall), "cpu": summary(cpu)}


def _hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.unique(rng.integers(1, 2**63, n + n // 8, dtype=np.uint64))[:n]


def _history(blocks: np.ndarray, cells: int, rng: np.random.Generator) -> tuple[Partition, float]:
    partition = Partition.empty()
    start = time.perf_counter()
    for _ in range(cells // GROUPS_PER_RELEASE):
        members = {}
        for g in range(GROUPS_PER_RELEASE):
            chosen = rng.choice(blocks.shape[0], size=int(rng.integers(1, 6)), replace=False)
            members[g] = np.sort(blocks[chosen].ravel())
        if small_atoms(partition, members, K):
            raise SystemExit("a history cell was withheld; the benchmark's history is wrong")
        partition = refined_partition(partition, members)
    return partition, time.perf_counter() - start


def _province(rng: np.random.Generator) -> tuple[Partition, np.ndarray]:
    """10M units in atoms of 20: the blocks are the atoms."""
    units = _hashes(rng, PROVINCE)
    order = rng.permutation(PROVINCE)
    labels = np.empty(PROVINCE, np.int64)
    labels[order] = np.arange(PROVINCE) // BLOCK
    return Partition(units, labels), units[order].reshape(-1, BLOCK)


def _districts(blocks: np.ndarray, covered: int, start: int = 0) -> dict[GroupKey, np.ndarray]:
    """16 districts, each a union of whole blocks (a district cutting blocks would make small
    atoms and be withheld, as it should)."""
    chosen = blocks[start : start + covered // BLOCK]
    return {(("district", d),): np.sort(chosen[d::16].ravel()) for d in range(16)}


def _store(
    path: Path, partition: Partition, cells: int, other: dict[GroupKey, np.ndarray]
) -> tuple[sa.Engine, PartitionCopies, PartitionCopies]:
    """The history as the snapshot, and one release through another replica after it; the
    replica copies: current (at the head) and behind (at the snapshot)."""
    engine = db.create_engine(f"sqlite:///{path}")
    schema.release_partitions.create(engine)
    schema.release_refinements.create(engine)
    schema.release_partition_heads.create(engine)
    key = {"dataset_id": DATASET, "unit_column": UNIT, "scheme": SCHEME, "cells": cells}
    version = {"base": 1, "base_tag": "history", "updated_at": sa.func.current_timestamp()}
    with engine.begin() as conn:
        conn.execute(
            schema.release_partitions.insert().values(
                **key, **version, units=int(partition.units.size), data=partition.to_bytes()
            )
        )
        conn.execute(
            schema.release_partition_heads.insert().values(
                **key,
                **version,
                units=int(partition.units.size),
                head=1,
                head_tag="history",
                log_bytes=0,
            )
        )
    behind, current = PartitionCopies(), PartitionCopies()
    with engine.begin() as conn:
        atoms = stored.load(
            conn, behind, dataset_id=DATASET, unit_column=UNIT, scheme=SCHEME, key_id=KEY_ID
        )
        behind.keep(atoms)
        current.keep(stored.save(conn, atoms, other))
    return engine, current, behind


def _old_path(conn: sa.Connection, members: dict[GroupKey, np.ndarray]) -> None:
    """Before the log: the whole partition read, checked, refined and written back."""
    t = schema.release_partitions
    partition = Partition.from_bytes(conn.execute(sa.select(t.c.data)).scalar_one())
    if small_atoms(partition, members, K):
        raise SystemExit("the district release was withheld")
    new = refined_partition(partition, members)
    before = conn.execute(sa.select(t.c.cells, t.c.scheme)).one()
    conn.execute(t.update().values(data=new.to_bytes(), cells=before.cells + len(members)))


def _job_path(
    engine: sa.Engine,
    replica: Callable[[], PartitionCopies],
    members: dict[GroupKey, np.ndarray],
    *,
    compact_at: float = 1.0,
) -> Callable[[], None]:
    """One release's load, check and store in a replica's state, rolled back (no copy kept)."""

    def run() -> None:
        with engine.connect() as conn, conn.begin() as tx:
            atoms = stored.load(
                conn,
                replica(),
                dataset_id=DATASET,
                unit_column=UNIT,
                scheme=SCHEME,
                key_id=KEY_ID,
            )
            if stored.withheld(atoms.partition, members, K):
                raise SystemExit("the district release was withheld")
            stored.save(conn, atoms, members, compact_at=compact_at)
            tx.rollback()

    return run


def _old(engine: sa.Engine, members: dict[GroupKey, np.ndarray]) -> Callable[[], None]:
    def run() -> None:
        with engine.connect() as conn, conn.begin() as tx:
            _old_path(conn, members)
            tx.rollback()

    return run


def measure(
    name: str, partition: Partition, blocks: np.ndarray, cells: int, db_path: Path, repeat: int
) -> dict[str, Any]:
    other = _districts(blocks, 16_000, start=blocks.shape[0] // 2)
    engine, current, behind = _store(db_path, partition, cells, other)
    out: dict[str, Any] = {
        "history": name,
        "cells_released": cells,
        "units_in_partition": int(partition.units.size),
        "atoms": partition.atoms,
        "snapshot_bytes": len(partition.to_bytes()),
    }
    for covered in (16_000, UNITS):
        members = _districts(blocks, covered)

        def check_only(members: dict[GroupKey, np.ndarray] = members) -> None:
            if small_atoms(partition, members, K):
                raise SystemExit("the district release was withheld")

        runs = {
            "check": check_only,
            "current": _job_path(engine, lambda: current, members),
            "behind": _job_path(engine, lambda: behind, members),
            "cold": _job_path(engine, PartitionCopies, members),
            "compacting": _job_path(engine, lambda: current, members, compact_at=0.0),
            "old": _old(engine, members),
        }
        out[f"release_{covered}"] = {
            "log_row_bytes": len(cells_to_bytes(list(members.values()))),
            **{state: timed(fn, repeat=repeat) for state, fn in runs.items()},
        }
    engine.dispose()
    return out


def _cell(timing: dict[str, Any]) -> str:
    return f"{timing['wall']['median_ms']:.1f} ({timing['cpu']['median_ms']:.1f})"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = argv or []
    quick = "--quick" in args
    rng = np.random.default_rng(15)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        units = _hashes(rng, UNITS)
        blocks = units[rng.permutation(units.size)].reshape(-1, BLOCK)
        for cells in (10_000, 100_000 if quick else 1_000_000):
            partition, build_s = _history(blocks, cells, rng)
            row = measure(
                f"{cells:,} cells", partition, blocks, cells, Path(tmp) / f"{cells}.db", 20
            )
            rows.append(row | {"history_build_s": round(build_s, 2)})
        if "--province" in args:
            partition, blocks = _province(rng)
            rows.append(measure("province", partition, blocks, 0, Path(tmp) / "province.db", 5))
    table = Table(title="differencing: a new release (16 districts), load + check + store")
    for column in ("history", "units", "members", "log row KB", "check only"):
        table.add_column(column, justify="right")
    for state in STATES:
        table.add_column(f"{state} ms (cpu)", justify="right")
    for row in rows:
        for covered in (16_000, UNITS):
            timing = row[f"release_{covered}"]
            table.add_row(
                row["history"],
                f"{row['units_in_partition']:,}",
                f"{covered:,}",
                f"{timing['log_row_bytes'] / 1e3:.0f}",
                _cell(timing["check"]),
                *(_cell(timing[state]) for state in STATES),
            )
    console = Console(width=180)
    console.print(table)
    payload = {
        "target": "load + check + store of a release proportional to the release, not the dataset",
        "units": UNITS,
        "k": K,
        "histories": rows,
    }
    console.print(f"wrote {write_result('differencing', payload)}")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
