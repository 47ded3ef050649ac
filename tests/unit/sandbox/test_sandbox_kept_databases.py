"""A locked database serves several jobs over the same sources, a connection no job used each.

What may be shared is what a SELECT cannot change (the views, the locked settings, DuckDB's
caches of the same files); every connection is held to the database's lock-down, a job over
other sources never gets the database, and a job that fails retires it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sandbox_testdata import FILINGS, REGISTRY

from sandbox import (
    CompiledQuery,
    DuckDBEngine,
    ExecutionError,
    SandboxBug,
    TableSource,
    TemplateKind,
)
from sandbox.engines.duckdb import CONNECTIONS_PER_INSTANCE, _identity, _read_settings


def query(sql: str, table: str = REGISTRY) -> CompiledQuery:
    return CompiledQuery(
        kind=TemplateKind.LIST,
        source_sql=sql,
        duckdb_sql=sql,
        spark_sql=sql,
        parameters=(),
        tables=(table,),
        output_columns=("n",),
        count_column=None,
        group_columns=(),
    )


COUNT = query('SELECT COUNT(*) AS n FROM "market"."enterprise_registry"')


class Counting(DuckDBEngine):
    """The engine, counting the fresh databases it opens and on which threads."""

    opened = 0
    fail_next = False

    def _lock_new(self, sources: object, connections: int) -> object:  # type: ignore[override]
        self.opened += 1
        self.threads = [*getattr(self, "threads", []), threading.current_thread().name]
        if self.fail_next:
            self.fail_next = False
            raise duckdb.IOException("the disk went away")
        return super()._lock_new(sources, connections)  # type: ignore[arg-type]


@pytest.fixture
def engine() -> Iterator[Counting]:
    made = Counting()
    yield made
    made.close()


def test_jobs_over_the_same_sources_share_a_database_not_a_connection(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    for _ in range(CONNECTIONS_PER_INSTANCE - 1):
        assert engine.run(COUNT, sources, {}).rows == ((30,),)
    assert engine.opened == 1
    assert engine.run(COUNT, sources, {}).rows == ((30,),)  # its last connection
    engine.run(COUNT, sources, {})  # a new database, made in the background meanwhile
    assert engine.opened == 2
    assert engine.threads == [threading.current_thread().name, "sandbox-duckdb-successor"]


def test_a_successor_database_has_the_whole_lock_down(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    mounted = [sources[REGISTRY]]
    key = _identity(engine.limits, mounted)
    assert key is not None
    for _ in range(CONNECTIONS_PER_INSTANCE):
        engine.run(COUNT, sources, {})
    successor = engine._successors.take(key)
    assert successor is not None and engine.threads[-1] == "sandbox-duckdb-successor"
    assert len(successor.unused) == CONNECTIONS_PER_INSTANCE
    con = successor.unused.pop()
    assert _read_settings(con) == successor.expected == _read_settings(successor.instance)
    with pytest.raises(duckdb.Error, match="locked"):
        con.execute("SET enable_external_access = true")
    assert con.execute('SELECT COUNT(*) FROM "market"."enterprise_registry"').fetchone() == (30,)
    with pytest.raises(duckdb.Error):  # only its own sources' views
        con.execute('SELECT COUNT(*) FROM "tax"."filings"')
    con.close()
    successor.close()


def test_a_successor_that_could_not_be_made_leaves_the_next_job_its_own(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    for _ in range(CONNECTIONS_PER_INSTANCE - 1):
        engine.run(COUNT, sources, {})
    engine.fail_next = True  # the background build fails
    engine.run(COUNT, sources, {})
    assert engine.run(COUNT, sources, {}).rows == ((30,),)
    assert engine.opened == 3
    assert engine.threads[1:] == ["sandbox-duckdb-successor", threading.current_thread().name]


def settle() -> None:
    """Wait for the successors being made in the background."""
    for thread in threading.enumerate():
        if thread.name == "sandbox-duckdb-successor":
            thread.join(timeout=30)


def test_a_successor_is_closed_by_a_job_over_other_sources_and_by_close(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    key = _identity(engine.limits, [sources[REGISTRY]])
    assert key is not None
    made: list[Any] = []
    original = engine._successors._make
    engine._successors._make = lambda mounted: made.append(original(mounted)) or made[-1]
    for _ in range(CONNECTIONS_PER_INSTANCE):
        engine.run(COUNT, sources, {})
    filings = query('SELECT COUNT(*) AS n FROM "tax"."filings"', table=FILINGS)
    engine.run(filings, sources, {})  # drops the registry's successor: it is closed
    assert engine._successors.take(key) is None
    settle()
    (dropped,) = made
    with pytest.raises(duckdb.ConnectionException):
        dropped.instance.execute("SELECT 1")
    for _ in range(CONNECTIONS_PER_INSTANCE):
        engine.run(filings, sources, {})
    engine.close()  # the filings' successor, made or being made, is closed too
    settle()
    _, pending = made
    with pytest.raises(duckdb.ConnectionException):
        pending.instance.execute("SELECT 1")


def test_every_connection_handed_out_has_the_whole_lock_down(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    """Some settings are the connection's own (``python_enable_replacements``,
    ``max_execution_time``): a connection made after the lock would have the defaults, and
    could not be given them. Each connection a job gets reads back as its database does."""
    mounted = [sources[REGISTRY]]
    key = _identity(engine.limits, mounted)
    seen = []
    for _ in range(3):
        locked, con = engine._open(mounted, key)
        settings = _read_settings(con)
        assert settings == locked.expected == _read_settings(locked.instance)
        assert con.execute("SELECT current_setting('python_enable_replacements')").fetchone() == (
            False,
        )
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute("SET python_enable_replacements = true")
        assert all(con is not other for other in seen)
        seen.append(con)
        con.close()
        engine._done_with(key, locked, failed=False)
    assert engine.opened == 1


def test_a_job_over_other_sources_never_gets_the_database(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    engine.run(COUNT, sources, {})
    # reads the registry but mounts only the filings: the registry's view must not exist
    sneaky = query('SELECT COUNT(*) AS n FROM "market"."enterprise_registry"', table=FILINGS)
    with pytest.raises(ExecutionError):
        engine.run(sneaky, sources, {})
    assert engine.opened == 2


def test_a_failed_job_retires_its_database(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    engine.run(COUNT, sources, {})
    failing = query('SELECT 1 // 0 AS n FROM "market"."enterprise_registry"')
    with pytest.raises(ExecutionError):
        engine.run(failing, sources, {})
    assert engine.opened == 1
    engine.run(COUNT, sources, {})  # the failed job's database is gone
    assert engine.opened == 2


def test_a_rewritten_file_is_another_source(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    engine.run(COUNT, sources, {})
    path = Path(sources[REGISTRY].file)
    stat = path.stat()
    pq.write_table(
        pa.table(
            {
                "enterprise_id": ["E1", "E2"],
                "district": ["a", "b"],
                "industry": ["retail", "retail"],
                "registered_capital": [1.0, 2.0],
            }
        ),
        path,
    )
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert engine.run(COUNT, sources, {}).rows == ((2,),)
    assert engine.opened == 2


def test_close_closes_the_kept_databases(engine: Counting, sources: dict[str, TableSource]) -> None:
    engine.run(COUNT, sources, {})
    kept = engine._kept.drain()
    assert len(kept) == 1
    engine._kept.keep(_identity(engine.limits, [sources[REGISTRY]]) or (), kept[0])
    engine.close()
    with pytest.raises(duckdb.ConnectionException):
        kept[0].instance.execute("SELECT 1")


def test_a_job_over_other_sources_closes_the_kept_database_first(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    """At most one database with cached data per engine: the memory bound stays the job's."""
    engine.run(COUNT, sources, {})
    (first,) = engine._kept.drain()
    engine._kept.keep(_identity(engine.limits, [sources[REGISTRY]]) or (), first)
    filings = query('SELECT COUNT(*) AS n FROM "tax"."filings"', table=FILINGS)
    engine.run(filings, sources, {})
    with pytest.raises(duckdb.ConnectionException):
        first.instance.execute("SELECT 1")
    assert len(engine._kept.drain()) == 1


def test_two_jobs_at_once_over_the_same_sources_leave_one_database_open(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    mounted = [sources[REGISTRY]]
    key = _identity(engine.limits, mounted)
    first, con1 = engine._open(mounted, key)
    second, con2 = engine._open(mounted, key)  # the first is in use: a database of its own
    assert first is not second
    engine._close(con1, key, first, failed=False)
    engine._close(con2, key, second, failed=False)  # kept instead of the first: which closes
    with pytest.raises(duckdb.ConnectionException):
        first.instance.execute("SELECT 1")
    assert engine._kept.drain() == [second]
    second.close()


def test_a_connection_without_its_own_settings_is_refused(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    """Held to the intended values, not only to the database's: a connection whose
    replacement scans are on (the default of a new connection) never runs a job."""
    mounted = [sources[REGISTRY]]
    key = _identity(engine.limits, mounted)
    locked, con = engine._open(mounted, key)
    con.close()
    bare = locked.instance.cursor()  # made after the lock: DuckDB's defaults, unchangeable
    assert bare.execute("SELECT current_setting('python_enable_replacements')").fetchone() == (
        True,
    )
    locked.unused.append(bare)
    locked.expected = _read_settings(bare)  # even if the database's own copy agreed with it
    engine._kept.keep(key or (), locked)
    with pytest.raises(SandboxBug, match="python_enable_replacements"):
        engine._open(mounted, key)
    with pytest.raises(duckdb.ConnectionException):
        locked.instance.execute("SELECT 1")  # and its database is retired


def test_a_prepared_database_is_the_next_jobs_and_keeps_the_lock_down(
    engine: Counting, sources: dict[str, TableSource]
) -> None:
    """`prepare` (a worker about to retire hands its sources to its successor) makes the
    database a job over those sources takes: the job then makes none on its path."""
    mounted = [sources[REGISTRY]]
    assert engine.prepare(mounted) is True
    assert engine.prepare(mounted) is False  # kept already: nothing made
    assert engine.opened == 1
    assert engine.run(COUNT, sources, {}).rows == ((30,),)
    assert engine.opened == 1
    key = _identity(engine.limits, mounted)
    assert key is not None
    locked = engine._kept.take(key)
    assert locked is not None and len(locked.unused) == CONNECTIONS_PER_INSTANCE - 1
    con = locked.unused.pop()
    assert _read_settings(con) == locked.expected
    with pytest.raises(duckdb.Error):  # only its own sources' views
        con.execute('SELECT COUNT(*) FROM "tax"."filings"')
    con.close()
    locked.close()


def test_nothing_is_prepared_over_a_source_that_is_not_a_file(
    engine: Counting, sources: dict[str, TableSource], tmp_path: Path
) -> None:
    gone = TableSource(REGISTRY, "parquet", tmp_path / "gone.parquet")
    assert engine.prepare([gone]) is False
    assert engine.opened == 0
    assert engine.run(COUNT, sources, {}).rows == ((30,),)
