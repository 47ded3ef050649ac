"""Write paths, extension loading and file reads against the locked-down engine.

Three layers, each tested on its own so that removing one fails a test:
1. the engine's statement check (DuckDB's parser: exactly one SELECT) — through a worker;
2. DuckDB's lock-down (no external access, no allowed directory, extensions off, locked
   configuration) — statements executed straight on a locked connection;
3. the worker process's OS limits (Landlock: no file writes) — in a real process set up like
   a worker, where DuckDB's one remaining write path (an allowed file) is closed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import DuckDBEngine, ExecutionCategory, ExecutionError, TableSource
from sandbox.engines.duckdb import _identity
from sandbox.engines.process import ProcessEngine
from tests.adversarial.sandbox_fixtures import COUNT, DATASET, hand_built, write_registry


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, TableSource]:
    return write_registry(tmp_path)


@pytest.fixture(scope="module")
def engine() -> Iterator[ProcessEngine]:
    engine = ProcessEngine(spares=0)
    yield engine
    engine.close()


def source_path(sources: dict[str, TableSource]) -> Path:
    return sources[DATASET].path


def writes(directory: Path, target: Path) -> list[str]:
    return [
        f"COPY (SELECT 1 AS n) TO '{directory}/out.csv'",
        f"COPY (SELECT 42 AS n) TO '{target}' (FORMAT parquet, USE_TMP_FILE false)",
        f"ATTACH '{directory}/new.duckdb' AS x",
        f"EXPORT DATABASE '{directory}/export'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA enable_profiling = 'json'",
    ]


def test_statements_other_than_one_select_are_refused_before_running(
    engine: ProcessEngine, sources: dict[str, TableSource], tmp_path: Path
) -> None:
    before = source_path(sources).read_bytes()
    for sql in [
        *writes(tmp_path, source_path(sources)),
        f"SELECT 1 AS n; COPY (SELECT 1) TO '{tmp_path}/two.csv'",
        f"WITH x AS (SELECT 1 AS n) SELECT n FROM x; DROP VIEW {DATASET}",
    ]:
        with pytest.raises(ExecutionError) as caught:
            engine.run(hand_built(sql), sources, {})
        assert caught.value.category is ExecutionCategory.REFUSED, sql
    assert source_path(sources).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.parquet"]
    assert engine.run(COUNT, sources, {}).rows == ((40,),)


@pytest.mark.parametrize(
    "reader",
    [
        "read_csv('/etc/passwd')",
        "read_text('/etc/hostname')",
        "read_blob('/etc/hostname')",
        "read_parquet('{other}')",
        "glob('{directory}/*')",
        "read_json_auto('/proc/self/environ')",
    ],
)
def test_file_reading_table_functions_are_refused_at_run_time(
    engine: ProcessEngine, sources: dict[str, TableSource], tmp_path: Path, reader: str
) -> None:
    other = tmp_path / "other.parquet"  # next to the mounted file, but not mounted
    pq.write_table(pa.table({"secret": [1, 2, 3]}), other)
    sql = f"SELECT COUNT(*) AS n FROM {reader.format(other=other, directory=tmp_path)}"
    with pytest.raises(ExecutionError) as caught:
        engine.run(hand_built(sql), sources, {})
    assert caught.value.category is ExecutionCategory.REFUSED
    assert str(tmp_path) not in str(caught.value)


def test_the_lockdown_itself_refuses_writes_extensions_and_other_files(
    sources: dict[str, TableSource], tmp_path: Path
) -> None:
    engine = DuckDBEngine()
    mounted = list(sources.values())
    # a connection of a database kept for several jobs (made before its lock, as jobs get them)
    _, con = engine._open(mounted, _identity(engine.limits, mounted))
    try:
        for sql in writes(tmp_path, tmp_path / "elsewhere.parquet"):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        for sql in ("SELECT * FROM read_csv('/etc/passwd')", f"SELECT * FROM glob('{tmp_path}/*')"):
            with pytest.raises(duckdb.PermissionException):
                con.execute(sql).fetchall()
        assert con.execute("SELECT current_setting('allowed_directories')").fetchone() == ([],)
    finally:
        con.close()
        engine.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.parquet"]


_WORKER_LIKE = """
import json, sys
from pathlib import Path
from sandbox.engines import oslimits
from sandbox.sources import TableSource
abi = oslimits.apply(oslimits.OsLimits(no_writes=sys.argv[2] == "landlock"))
from sandbox.engines.duckdb import DuckDBEngine, _identity
source = TableSource("market.registry", "parquet", Path(sys.argv[1]))
engine = DuckDBEngine()
_, con = engine._open([source], _identity(engine.limits, [source]))
outcome = {"landlock": abi}
for name, sql in [
    ("overwrite", f"COPY (SELECT 42 AS n) TO '{source.path}' (FORMAT parquet, USE_TMP_FILE false)"),
    ("sibling", f"COPY (SELECT 42 AS n) TO '{source.path.parent}/sibling.csv'"),
]:
    try:
        con.execute(sql)
        outcome[name] = "written"
    except Exception as exc:
        outcome[name] = type(exc).__name__
print(json.dumps(outcome))
"""


def run_like_a_worker(path: Path, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _WORKER_LIKE, str(path), mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_landlock_closes_the_write_path_duckdb_leaves_to_an_allowed_file(
    sources: dict[str, TableSource], tmp_path: Path
) -> None:
    path = source_path(sources)
    before = path.read_bytes()
    outcome = run_like_a_worker(path, "landlock")
    assert outcome["landlock"] >= 1
    assert outcome["overwrite"] != "written"
    assert outcome["sibling"] != "written"
    assert path.read_bytes() == before
    # Without Landlock the same locked-down connection overwrites its own source file:
    # this is the hole the OS layer closes (and why this test fails without it).
    exposed = run_like_a_worker(path, "none")
    assert exposed["overwrite"] == "written"
    assert pq.read_table(path).column(0).to_pylist() == [42]
