"""Sorted copies for verify lookups (`sandbox.make_sorted_copy`): the same rows, the same
answers, as locked down as a file source, and a maker that can write nowhere but its directory."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from sandbox import (
    Column,
    CompiledQuery,
    DuckDBEngine,
    ExecutionCategory,
    ExecutionError,
    ParameterSpec,
    ParamType,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    compile_template,
    make_sorted_copy,
)
from sandbox.engines import landlock
from sandbox.engines.duckdb import SORTED_ROW_GROUP, _identity

ROWS = 3 * SORTED_ROW_GROUP + 1234  # several row groups: lookups cross their boundaries
DATASET = "civil.people"
FILTER = "SELECT 1 FROM civil.people AS p WHERE p.person_id = :person_id AND p.district = :d"
JOINED = (
    "SELECT 1 FROM civil.people AS p JOIN civil.people AS q ON p.district = q.district "
    "WHERE q.person_id = :person_id AND p.district = :d"
)


def people(rows: int = ROWS, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)
    ids: list[str | None] = [f"P{rng.randrange(10 * rows):09d}" for _ in range(rows)]  # some repeat
    ids[5] = None  # a row without a key
    return pa.table(
        {
            "person_id": ids,
            "district": [f"d{rng.randrange(4)}" for _ in range(rows)],
            "age": [rng.randrange(100) for _ in range(rows)],
        }
    )


def write(directory: Path, table: pa.Table, kind: str) -> TableSource:
    path = directory / f"people.{kind}"
    if kind == "parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return TableSource(DATASET, kind, path)  # type: ignore[arg-type]


def sort(source: TableSource, directory: Path) -> TableSource:
    directory.mkdir(exist_ok=True)
    copy, abi = make_sorted_copy(
        source,
        "person_id",
        directory / "people.duckdb",
        memory_limit="512MB",
        threads=2,
        timeout_s=120,
    )
    assert list(directory.iterdir()) == [copy.file]  # its build directory is gone
    assert abi == landlock.abi_version()  # the sorter ran confined where the kernel can
    return copy


SCHEMA = TableSchema(
    DATASET,
    (
        Column("person_id", "VARCHAR", Sensitivity.IDENTIFIER),
        Column("district", "VARCHAR", Sensitivity.PUBLIC),
        Column("age", "INTEGER", Sensitivity.PUBLIC),
    ),
)


def verify_query(slots: int, answer: str = "match", sql: str = FILTER) -> CompiledQuery:
    return compile_template(
        sql,
        kind=TemplateKind.VERIFY,
        tables={DATASET: SCHEMA},
        parameters={"d": ParameterSpec("d", ParamType.STRING)},
        count_column=None,
        verify_key=ParameterSpec("person_id", ParamType.STRING),
        verify_answer=answer,
        verify_slots=slots,
    )


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[TableSource, TableSource]]:
    made = {}
    for kind in ("parquet", "csv"):
        directory = tmp_path_factory.mktemp(kind)
        source = write(directory, people(), kind)
        made[kind] = (source, sort(source, directory / "sorted"))
    return made


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_sorted_copy_holds_exactly_the_sources_rows_ordered_by_the_key(
    copies: dict[str, tuple[TableSource, TableSource]], kind: str
) -> None:
    source, copy = copies[kind]
    assert copy.format == "sorted"
    with duckdb.connect() as con:
        reader = "read_parquet" if kind == "parquet" else "read_csv"
        original = con.execute(f"SELECT * FROM {reader}('{source.file}')").fetchall()
        con.execute(f"ATTACH '{copy.file}' AS c (READ_ONLY)")
        copied = con.execute("SELECT * FROM c.main.rows").fetchall()
        groups = con.execute(
            "SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('c.main.rows')"
        ).fetchone()
    assert sorted(copied, key=repr) == sorted(original, key=repr)
    keys = [row[0] for row in copied if row[0] is not None]
    assert keys == sorted(keys)
    assert groups is not None and groups[0] >= 4  # small row groups: what a lookup prunes by
    assert copy.file.stat().st_mode & 0o077 == 0  # the dataset's rows: this user's only


@pytest.mark.parametrize("kind", ["parquet", "csv"])
@pytest.mark.parametrize("answer", ["match", "count"])
def test_verify_answers_on_the_copy_equal_those_on_the_file(
    copies: dict[str, tuple[TableSource, TableSource]], kind: str, answer: str
) -> None:
    source, copy = copies[kind]
    present = [k for k in people().column("person_id").to_pylist() if k is not None]
    engine = DuckDBEngine()
    try:
        for seed in range(6):
            rng = random.Random(seed)
            slots = rng.choice([1, 3, 40])
            keys = [
                rng.choice(present) if rng.random() < 0.6 else f"P{rng.randrange(10**9):09d}"
                for _ in range(slots)
            ]
            keys[0] = min(present) if seed == 1 else max(present) if seed == 2 else keys[0]
            query = verify_query(slots, answer)
            values = {"d": f"d{seed % 4}", **dict(zip(query.key_parameters, keys, strict=True))}
            on_file = engine.run(query, {DATASET: source}, values)
            on_copy = engine.run(query, {DATASET: copy}, values)
            assert on_copy == on_file, (seed, keys)
    finally:
        engine.close()


def test_the_compiled_lookup_names_its_key_column_and_repeats_the_keys_as_constants() -> None:
    query = verify_query(3)
    assert query.key_column == (DATASET, "person_id")
    assert "p.person_id IN ($verify_key_0001, $verify_key_0002, $verify_key_0003)" in (
        query.duckdb_sql
    )
    assert "IN (:verify_key_0001, :verify_key_0002, :verify_key_0003)" in query.spark_sql
    assert verify_query(2, sql=JOINED).key_column == (DATASET, "person_id")  # the alias q's


def test_a_job_connection_over_a_copy_is_locked_down_and_cannot_change_it(
    copies: dict[str, tuple[TableSource, TableSource]], tmp_path: Path
) -> None:
    _, copy = copies["parquet"]
    before = copy.file.read_bytes()
    engine = DuckDBEngine()
    _, con = engine._open([copy], _identity(engine.limits, [copy]))
    alias = "insitu_sorted_civil__people"
    try:
        for sql in (
            f"INSERT INTO {alias}.main.rows VALUES ('P1', 'd0', 1)",
            f"DELETE FROM {alias}.main.rows",
            f"DROP TABLE {alias}.main.rows",
            f"ATTACH '{tmp_path}/other.duckdb' AS other",
            f"COPY (SELECT 1 AS n) TO '{tmp_path}/out.csv'",
            "SET enable_external_access = true",
        ):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        allowed = con.execute("SELECT current_setting('allowed_paths')").fetchone()
        assert allowed is not None
        assert sorted(allowed[0]) == sorted(
            [
                str(copy.file),
                *(f"{copy.file}{s}" for s in (".wal", ".wal.checkpoint", ".wal.recovery")),
            ]
        )
        assert con.execute("SELECT count(*) FROM civil.people").fetchone() == (ROWS,)
    finally:
        con.close()
    # DETACH, like DROP VIEW, is not the lock-down's to refuse: the statement check is
    detach = CompiledQuery(
        kind=TemplateKind.AGGREGATE,
        source_sql=f"DETACH {alias}",
        duckdb_sql=f"DETACH {alias}",
        spark_sql=f"DETACH {alias}",
        parameters=(),
        tables=(DATASET,),
        output_columns=("n",),
        count_column=None,
        group_columns=(),
    )
    try:
        with pytest.raises(ExecutionError) as caught:
            engine.run(detach, {DATASET: copy}, {})
        assert caught.value.category is ExecutionCategory.REFUSED
        count = verify_query(1, "count")
        values = {"d": "d0", count.key_parameters[0]: "P0"}
        assert engine.run(count, {DATASET: copy}, values).rows == ((0,),)  # still attached
    finally:
        engine.close()
    assert copy.file.read_bytes() == before
    assert list(tmp_path.iterdir()) == []


def test_a_copy_with_a_log_beside_it_is_not_attached(
    copies: dict[str, tuple[TableSource, TableSource]], tmp_path: Path
) -> None:
    """A `.wal` beside a read-only copy would be replayed into it: rows no file holds."""
    _, made = copies["parquet"]
    copy = tmp_path / "people.duckdb"
    copy.write_bytes(made.file.read_bytes())
    source = TableSource(DATASET, "sorted", copy)
    count = verify_query(1, "count")
    values = {"d": "d0", count.key_parameters[0]: "P0"}
    engine = DuckDBEngine()
    try:
        assert engine.run(count, {DATASET: source}, values).rows == ((0,),)
        (tmp_path / "people.duckdb.wal").write_bytes(b"not a log a sorter wrote")
        with pytest.raises(ExecutionError) as caught:
            DuckDBEngine().run(count, {DATASET: source}, values)
        assert caught.value.category is ExecutionCategory.SOURCE_UNAVAILABLE
    finally:
        engine.close()


def test_a_copy_that_cannot_be_made_leaves_nothing_and_says_no_path(tmp_path: Path) -> None:
    out = tmp_path / "sorted"
    out.mkdir()
    missing = TableSource(DATASET, "parquet", tmp_path / "gone.parquet")
    with pytest.raises(ExecutionError) as caught:
        make_sorted_copy(
            missing, "person_id", out / "x.duckdb", memory_limit="512MB", threads=1, timeout_s=60
        )
    assert str(tmp_path) not in str(caught.value)
    source = write(tmp_path, people(100), "parquet")
    with pytest.raises(ExecutionError):  # no such column
        make_sorted_copy(
            source, "nobody", out / "y.duckdb", memory_limit="512MB", threads=1, timeout_s=60
        )
    assert list(out.iterdir()) == []


_MAKER_LIKE = """
import json, sys
from pathlib import Path
from sandbox.engines import sorter
sorter._limit_self({"dest": sys.argv[1] + "/copy.duckdb", "address_space": 4 << 30})
inside, outside = Path(sys.argv[1]) / "ok.txt", Path(sys.argv[2]) / "no.txt"
outcome = {}
for name, path in (("inside", inside), ("outside", outside)):
    try:
        path.write_text("x")
        outcome[name] = "written"
    except OSError as exc:
        outcome[name] = type(exc).__name__
print(json.dumps(outcome))
"""


@pytest.mark.skipif(landlock.abi_version() == 0, reason="this kernel has no Landlock")
def test_the_copy_maker_process_may_write_below_its_directory_and_nowhere_else(
    tmp_path: Path,
) -> None:
    inside, outside = tmp_path / "sorted", tmp_path / "data"
    inside.mkdir()
    outside.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _MAKER_LIKE, str(inside), str(outside)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).parents[3],
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"inside": "written", "outside": "PermissionError"}
    assert not (outside / "no.txt").exists()
