"""The atom check's stored partition (``releases.partition``) on SQLite and PostgreSQL: several
replicas on one store, rolled-back releases, compaction against replaying the log, scheme
changes, the migration that carries partitions over."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.jobs.releases import history
from gateway.jobs.releases import partition as stored
from gateway.jobs.releases.copies import Atoms, PartitionCopies
from gateway.store import db, schema
from sandbox import Partition, refined_partition

K = 3
DATASET, UNIT = "civil.people", "person_id"
KEY_ID = "0123456789abcdef"  # the population key id every replica here shares


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine(migrated_database_url)
    yield engine
    engine.dispose()


def hashed(units: Iterable[int]) -> np.ndarray:
    return np.array(sorted({u * 0x9E3779B97F4A7C15 % 2**64 for u in units}), dtype=np.uint64)


def atoms_of(partition: Partition) -> list[list[int]]:
    """The partition as its atoms (sets of unit hashes), whatever the labels' numbers."""
    atoms: dict[int, list[int]] = {}
    for unit, label in zip(partition.units.tolist(), partition.labels.tolist(), strict=True):
        atoms.setdefault(label, []).append(unit)
    return sorted(atoms.values())


def release(
    engine: sa.Engine,
    copies: PartitionCopies,
    groups: dict[str, np.ndarray],
    *,
    scheme: str = "s1",
    dataset: str = DATASET,
    compact_at: float = 1.0,
    key_id: str = KEY_ID,
) -> set[str]:
    """What an aggregate release does: under the dataset's lock, load, withhold groups until
    none makes a small atom, save; keep the copy once committed. The names released."""
    with engine.begin() as conn:
        history.lock(conn, dataset)
        atoms = stored.load(
            conn, copies, dataset_id=dataset, unit_column=UNIT, scheme=scheme, key_id=key_id
        )
        kept = dict(groups)
        while blamed := stored.withheld(atoms.partition, kept, K):
            for g in blamed:
                del kept[g]
        after = stored.save(conn, atoms, kept, compact_at=compact_at)
    copies.keep(after)
    return set(kept)


def loaded(engine: sa.Engine, copies: PartitionCopies, *, scheme: str = "s1") -> Partition:
    with engine.begin() as conn:
        atoms = stored.load(
            conn, copies, dataset_id=DATASET, unit_column=UNIT, scheme=scheme, key_id=KEY_ID
        )
    copies.keep(atoms)
    return atoms.partition


class JobFailed(Exception):
    pass


# Years 0–4 hold 4 units each, year 5 one unit, year 6 three: [0, 6] − [0, 5] − [5, 6] = year 5.
YEARS = {y: range(4 * y, 4 * y + 4) for y in range(5)} | {5: range(20, 21), 6: range(21, 24)}


def span(a: int, b: int) -> np.ndarray:
    return hashed(u for y in range(a, b + 1) for u in YEARS[y])


def test_a_release_through_one_replica_is_seen_by_the_others_next_check(
    engine: sa.Engine,
) -> None:
    a, b = PartitionCopies(), PartitionCopies()  # two gateways on one database
    assert release(engine, a, {"all": span(0, 6)}) == {"all"}
    assert release(engine, b, {"left": span(0, 5)}) == {"left"}
    # a's copy predates b's release; with it alone [5, 6] would pass (atoms of 4 and 20 units)
    assert release(engine, a, {"right": span(5, 6)}) == set()
    assert release(engine, a, {"right": span(6, 6)}) == {"right"}  # a union of atoms: fine
    assert atoms_of(loaded(engine, a)) == atoms_of(loaded(engine, b))


def test_a_replica_reads_one_row_when_nothing_changed_and_only_the_new_log_rows_else(
    engine: sa.Engine,
) -> None:
    a, b = PartitionCopies(), PartitionCopies()
    release(engine, a, {"all": span(0, 6)})
    loaded(engine, b)
    release(engine, a, {"left": span(0, 4)})
    statements: list[str] = []

    def seen(*args: Any) -> None:
        if "release_" in args[2]:
            statements.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", seen)
    loaded(engine, a)
    assert len(statements) == 1 and "FROM release_partition_heads" in statements[0]
    statements.clear()
    loaded(engine, b)
    assert len(statements) == 2 and "FROM release_refinements" in statements[1]
    assert not any(re.search(r"release_partitions\.data\b", s) for s in statements)  # snapshot


def test_a_rolled_back_release_leaves_no_trace_in_memory_or_store(engine: sa.Engine) -> None:
    copies = PartitionCopies()
    release(engine, copies, {"all": span(0, 6)})
    before = copies.get((DATASET, UNIT))
    tables = (
        schema.release_partitions,
        schema.release_partition_heads,
        schema.release_refinements,
    )
    with engine.connect() as conn:
        rows_before = [conn.execute(sa.select(t)).all() for t in tables]
    with pytest.raises(JobFailed), engine.begin() as conn:
        history.check(
            conn, dataset_id=DATASET, unit_column=UNIT, k=K, sketches={}, department="stats"
        )
        atoms = stored.load(
            conn, copies, dataset_id=DATASET, unit_column=UNIT, scheme="s1", key_id=KEY_ID
        )
        stored.save(conn, atoms, {"left": span(0, 5)})
        raise JobFailed  # after the cells were recorded: the transaction rolls back
    assert copies.get((DATASET, UNIT)) is before
    with engine.connect() as conn:
        assert [conn.execute(sa.select(t)).all() for t in tables] == rows_before
    assert release(engine, copies, {"right": span(5, 6)}) == {"right"}  # [0, 5] never released


def test_a_copy_of_a_version_that_never_committed_is_never_used(engine: sa.Engine) -> None:
    careless, other = PartitionCopies(), PartitionCopies()
    release(engine, careless, {"all": span(0, 6)})
    with pytest.raises(JobFailed), engine.begin() as conn:
        atoms = stored.load(
            conn, careless, dataset_id=DATASET, unit_column=UNIT, scheme="s1", key_id=KEY_ID
        )
        careless.keep(stored.save(conn, atoms, {"left": span(0, 5)}))  # kept before commit
        raise JobFailed
    release(engine, other, {"other": span(0, 4)})  # the same version number, another history
    assert atoms_of(loaded(engine, careless)) == atoms_of(loaded(engine, PartitionCopies()))
    assert release(engine, careless, {"right": span(5, 6)}) == {"right"}


def test_a_save_against_a_version_no_longer_stored_fails(engine: sa.Engine) -> None:
    a, b = PartitionCopies(), PartitionCopies()
    release(engine, a, {"all": span(0, 6)})

    def load_unlocked(scheme: str) -> Atoms:
        with engine.begin() as conn:
            return stored.load(
                conn, a, dataset_id=DATASET, unit_column=UNIT, scheme=scheme, key_id=KEY_ID
            )

    stale, stale_fresh = load_unlocked("s1"), load_unlocked("s2")
    release(engine, b, {"left": span(0, 5)})  # another replica releases in between
    with pytest.raises(stored.Stale), engine.begin() as conn:
        stored.save(conn, stale, {"right": span(5, 6)})
    with pytest.raises(stored.Stale), engine.begin() as conn:
        stored.save(conn, stale_fresh, {"right": span(5, 6)})
    assert release(engine, a, {"right": span(5, 6)}) == set()


def test_a_first_save_after_another_first_save_is_stale(engine: sa.Engine) -> None:
    """Two releases decided before the dataset had a partition: the second to be stored
    finds the head another one inserted, and writes nothing."""
    a, b = PartitionCopies(), PartitionCopies()
    with engine.begin() as conn:
        before = stored.load(
            conn, a, dataset_id=DATASET, unit_column=UNIT, scheme="s1", key_id=KEY_ID
        )
    release(engine, b, {"all": span(0, 6)})
    with pytest.raises(stored.Stale), engine.begin() as conn:
        stored.save(conn, before, {"left": span(0, 5)})
    assert atoms_of(loaded(engine, PartitionCopies())) == [sorted(span(0, 6).tolist())]


def test_a_copy_ahead_of_a_read_snapshot_is_kept(engine: sa.Engine) -> None:
    """A release decided on a read snapshot may find this replica's copy already ahead of it
    (kept by a release committed since): the copy is not used, and not dropped either. Under
    the lock a copy the head does not lead to is of another history, and is dropped."""
    a = PartitionCopies()
    release(engine, a, {"all": span(0, 6)})
    with db.snapshot(engine) as snap:
        snap.execute(sa.select(schema.release_partition_heads)).all()  # the snapshot starts
        release(engine, a, {"left": span(0, 5)})
        ahead = a.get((DATASET, UNIT))
        assert ahead is not None
        seen = stored.load(
            snap, a, dataset_id=DATASET, unit_column=UNIT, scheme="s1", key_id=KEY_ID,
            locked=False,
        )  # fmt: skip
    assert seen.seq == ahead.seq - 1
    assert atoms_of(seen.partition) == [sorted(span(0, 6).tolist())]
    assert a.get((DATASET, UNIT)) is ahead
    with engine.begin() as conn:  # the store rolled back (a restored backup), under the lock
        conn.execute(
            schema.release_partition_heads.update().values(head=seen.seq, head_tag=seen.tag)
        )
        stored.load(conn, a, dataset_id=DATASET, unit_column=UNIT, scheme="s1", key_id=KEY_ID)
    assert a.get((DATASET, UNIT)) is None


def test_a_scheme_change_starts_the_partition_afresh(engine: sa.Engine) -> None:
    a, b = PartitionCopies(), PartitionCopies()
    release(engine, a, {"all": span(0, 6)})
    release(engine, a, {"left": span(0, 5)})
    assert loaded(engine, b, scheme="s2").units.size == 0  # another hash: nothing comparable
    assert release(engine, b, {"right": span(5, 6)}, scheme="s2") == {"right"}
    assert atoms_of(loaded(engine, b, scheme="s2")) == atoms_of(
        refined_partition(Partition.empty(), {0: span(5, 6)})
    )
    assert release(engine, b, {"few": span(0, 0)}, scheme="s1") == {"few"}  # s1 afresh too
    # a's copy holds s1's first history at an older version: never used again
    assert atoms_of(loaded(engine, a)) == atoms_of(
        refined_partition(Partition.empty(), {0: span(0, 0)})
    )


releases = st.lists(  # (replica, groups): a release's groups through one of three replicas
    st.tuples(
        st.integers(0, 2),
        st.lists(st.frozensets(st.integers(0, 23), min_size=1), min_size=1, max_size=3),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(history_=releases, compact_at=st.sampled_from([0.0, 0.3, 1.0, math.inf]))
@pytest.mark.slow
def test_compaction_and_catching_up_give_the_partition_of_replaying_every_release(
    engine: sa.Engine, history_: list[tuple[int, list[frozenset[int]]]], compact_at: float
) -> None:
    dataset = f"d.{uuid.uuid4().hex[:8]}"  # one example, one dataset
    replicas = [PartitionCopies() for _ in range(3)]
    expected = Partition.empty()
    for replica, groups in history_:
        members = {str(i): hashed(g) for i, g in enumerate(groups)}
        with engine.begin() as conn:  # everything recorded: the store must replay any history
            atoms = stored.load(
                conn,
                replicas[replica],
                dataset_id=dataset,
                unit_column=UNIT,
                scheme="s1",
                key_id=KEY_ID,
            )
            assert atoms_of(atoms.partition) == atoms_of(expected)
            after = stored.save(conn, atoms, members, compact_at=compact_at)
        replicas[replica].keep(after)
        expected = refined_partition(expected, members)
    for copies in [*replicas, PartitionCopies()]:
        with engine.begin() as conn:
            atoms = stored.load(
                conn, copies, dataset_id=dataset, unit_column=UNIT, scheme="s1", key_id=KEY_ID
            )
        assert atoms_of(atoms.partition) == atoms_of(expected)


OLD_PARTITIONS = sa.table(  # release_partitions as migration 0010 made it
    "release_partitions",
    *(sa.column(c) for c in ("dataset_id", "unit_column", "scheme", "units", "cells", "data")),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def test_the_migration_keeps_stored_partitions_and_downgrading_folds_the_log_in(
    database_url: str,
) -> None:
    engine = db.create_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))

    def to(revision: str, step: Any = command.upgrade) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, revision)

    to("0011")
    before = refined_partition(Partition.empty(), {0: span(0, 6), 1: span(0, 5)})
    with engine.begin() as conn:
        conn.execute(
            OLD_PARTITIONS.insert().values(
                dataset_id=DATASET,
                unit_column=UNIT,
                scheme="s1",
                units=int(before.units.size),
                cells=2,
                data=before.to_bytes(),
                updated_at=datetime.now(UTC),
            )
        )
    to("head")
    copies = PartitionCopies()
    assert release(engine, copies, {"right": span(5, 6)}) == set()  # the earlier cells count
    assert release(engine, copies, {"last": span(6, 6)}, compact_at=math.inf) == {"last"}
    after = refined_partition(before, {0: span(6, 6)})
    assert atoms_of(loaded(engine, PartitionCopies())) == atoms_of(after)
    to("0011", command.downgrade)
    with engine.connect() as conn:
        data = conn.execute(sa.select(OLD_PARTITIONS.c.data)).scalar_one()
    assert atoms_of(Partition.from_bytes(bytes(data))) == atoms_of(after)
    engine.dispose()


def test_a_replica_with_another_population_key_releases_nothing(engine: sa.Engine) -> None:
    """Two replicas whose population keys differ hash the same units differently: the one
    whose key is not the stored releases' must refuse (its check would miss them all)."""
    release(engine, PartitionCopies(), {"left": hashed(range(0, 10))})
    with pytest.raises(stored.KeyMismatch, match=r"population\.key"):
        release(
            engine, PartitionCopies(), {"right": hashed(range(10, 20))}, key_id="fedcba9876543210"
        )
    assert release(engine, PartitionCopies(), {"right": hashed(range(10, 20))}) == {"right"}


def test_a_head_from_before_key_ids_takes_the_first_key_that_releases(engine: sa.Engine) -> None:
    release(engine, PartitionCopies(), {"left": hashed(range(0, 10))})
    h = schema.release_partition_heads
    with engine.begin() as conn:  # as migrated from a store made before heads named the key
        conn.execute(h.update().values(key_id=None))
    assert release(engine, PartitionCopies(), {"right": hashed(range(10, 20))}) == {"right"}
    with engine.connect() as conn:
        assert conn.execute(sa.select(h.c.key_id)).scalar_one() == KEY_ID
    with pytest.raises(stored.KeyMismatch):
        release(
            engine, PartitionCopies(), {"far": hashed(range(20, 30))}, key_id="fedcba9876543210"
        )


def cell(conn: sa.Connection, units: int) -> int:
    """A released cell's sketch row (its bytes do not matter here); its id."""
    values = {
        "dataset_id": DATASET,
        "unit_column": UNIT,
        "cells_per_hash": 20,
        "scheme": "s1",
        "units": units,
        "sketch": b"",
        "job_id": str(uuid.uuid4()),
        "department": "stats",
        "created_at": datetime.now(UTC),
    }
    return int(conn.execute(schema.release_cells.insert().values(**values)).inserted_primary_key[0])


OLD_HEAD = {  # a head row as migration 0012 made it: an empty partition, version 0
    "dataset_id": DATASET,
    "unit_column": UNIT,
    "scheme": "s1",
    "units": 0,
    "cells": 0,
    "head": 0,
    "head_tag": "0123456789abcdef",
    "base": 0,
    "base_tag": "0123456789abcdef",
    "log_bytes": 0,
    "key_id": KEY_ID,
}
OLD_HEADS = sa.table(
    "release_partition_heads",
    *(sa.column(c) for c in OLD_HEAD),
    sa.column("updated_at", sa.DateTime(timezone=True)),
)


def test_a_partition_covers_the_cells_released_after_it_started(database_url: str) -> None:
    """Migration 0013 marks the cells an existing partition does not cover (those there
    now); a partition started later covers only the cells released after it."""
    engine = db.create_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))

    def to(revision: str) -> None:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    to("0012_atoms")
    with engine.begin() as conn:
        before = [cell(conn, 10), cell(conn, 11)]
        conn.execute(OLD_HEADS.insert().values(**OLD_HEAD, updated_at=datetime.now(UTC)))
    to("head")
    with engine.begin() as conn:
        head = conn.execute(sa.select(schema.release_partition_heads.c.covers_after)).scalar()
    assert head == max(before)
    atoms = Atoms(DATASET, UNIT, "s1", Partition.empty(), covers_after=head)
    assert stored.covered_after(atoms, "s1") == max(before)
    assert stored.covered_after(atoms, "another scheme") is None  # compared pairwise
    with engine.begin() as conn:  # another dataset: a fresh partition covers what comes next
        later = cell(conn, 12)
        fresh = stored.load(
            conn,
            PartitionCopies(),
            dataset_id="civil.other",
            unit_column=UNIT,
            scheme="s1",
            key_id=KEY_ID,
        )
    assert fresh.fresh and fresh.covers_after == 0  # no cell of civil.other yet
    assert later > max(before)
    engine.dispose()
