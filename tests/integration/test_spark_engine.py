"""The Spark engine against a real Spark Connect server (started from the pyspark wheel).

Same compiled queries as DuckDB, same answers; parameters bound by Spark; a pooled session
lent to one job at a time that carries nothing from one job to the next; time, row and
error limits; Parquet, CSV, catalogue and JDBC (PostgreSQL) sources.
"""

from __future__ import annotations

import importlib.util
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.conftest import IN_CI

if importlib.util.find_spec("pyspark") is None:  # the `spark` extra (make test installs it)
    if IN_CI:
        raise ImportError("pyspark is missing: with CI=true the Spark tests must run")
    pytest.skip("pyspark is not installed (pip install '.[spark]')", allow_module_level=True)
import sqlalchemy as sa

from sandbox import (
    Column,
    ColumnCheck,
    CompiledQuery,
    DuckDBEngine,
    ExecutionCategory,
    ExecutionError,
    JdbcConnection,
    Limits,
    ParameterSpec,
    ProfileRequest,
    QueryTimeout,
    ResourceLimitExceeded,
    SandboxBug,
    Sensitivity,
    SparkEngine,
    TableSchema,
    TableSource,
    TemplateKind,
    TemplateRejected,
    compile_template,
    derive_disclosure_queries,
    difference_size,
    group_key,
    population_params,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]

PEOPLE = "civil.people"
SCHEMA = TableSchema(
    PEOPLE,
    (
        Column("person_id", "VARCHAR", Sensitivity.IDENTIFIER),
        Column("district", "VARCHAR", Sensitivity.PUBLIC),
        Column("age", "INTEGER", Sensitivity.QUASI_IDENTIFIER),
        Column("income", "BIGINT", Sensitivity.SENSITIVE),
    ),
)
BY_DISTRICT = """SELECT p.district, COUNT(*) AS people, SUM(p.income) AS income
FROM civil.people AS p WHERE p.age >= :min_age AND p.district <> :skip GROUP BY p.district"""


def people(n: int = 400, *, drop: int = 0) -> pa.Table:
    ids = [f"P{i:05d}" for i in range(drop, n)]
    return pa.table(
        {
            "person_id": ids,
            "district": [f"d{int(i[1:]) % 5}" for i in ids],
            "age": pa.array([18 + int(i[1:]) % 60 for i in ids], pa.int32()),
            "income": pa.array([1000 + (int(i[1:]) * 37) % 5000 for i in ids], pa.int64()),
        }
    )


@pytest.fixture
def parquet_source(tmp_path: Path) -> TableSource:
    path = tmp_path / "people.parquet"
    pq.write_table(people(), path)
    return TableSource(PEOPLE, "parquet", path)


@pytest.fixture
def spark(spark_remote: str) -> Iterator[SparkEngine]:
    engine = SparkEngine(spark_remote, Limits(timeout_s=300, max_rows=1000))
    yield engine
    engine.close()


def compiled(sql: str = BY_DISTRICT, kind: TemplateKind = TemplateKind.AGGREGATE) -> CompiledQuery:
    params = {
        "min_age": ParameterSpec.from_mapping("min_age", {"type": "integer", "min": 0, "max": 99}),
        "skip": ParameterSpec.from_mapping("skip", {"type": "string", "max_length": 40}),
    }
    used = {k: v for k, v in params.items() if f":{k}" in sql}
    count = "people" if kind is TemplateKind.AGGREGATE else None
    return compile_template(
        sql, kind=kind, tables={PEOPLE: SCHEMA}, parameters=used, count_column=count
    )


def raw(query: str, sql: str, **fields: Any) -> CompiledQuery:
    """A compiled query written by hand (for engine limits that templates would refuse)."""
    base: dict[str, Any] = {
        "kind": TemplateKind.AGGREGATE,
        "source_sql": sql,
        "duckdb_sql": sql,
        "spark_sql": sql,
        "parameters": (),
        "tables": (PEOPLE,),
        "output_columns": (query,),
        "count_column": None,
        "group_columns": (),
    }
    return CompiledQuery(**{**base, **fields})


def test_aggregate_and_disclosure_figures_equal_duckdb(
    spark: SparkEngine, parquet_source: TableSource
) -> None:
    query = compiled()
    derived = derive_disclosure_queries(
        query, unit="person_id", top_n=2, cells_per_hash=16, max_groups=100
    )
    sources = {PEOPLE: parquet_source}
    params = {"min_age": 30, "skip": "d4"}
    duck = DuckDBEngine(Limits(max_rows=1000))
    try:
        d_main, d_aux = duck.run_with_auxiliary(
            query, sources, params, derived.queries, population_params("k")
        )
    finally:
        duck.close()
    s_main, s_aux = spark.run_with_auxiliary(
        query, sources, params, derived.queries, population_params("k")
    )
    assert sorted(s_main.rows) == sorted(d_main.rows)
    assert s_main.columns == d_main.columns
    assert s_main.types[:2] == ("VARCHAR", "BIGINT")
    assert len(s_main.rows) == 4  # d4 skipped by a bound parameter
    assert derived.contributors_from(s_aux[0]) == derived.contributors_from(d_aux[0])
    keys = [((("district", row[0]),)) for row in s_main.rows]
    sketches = derived.sketches_from(s_aux[1], keys)
    assert {s.scheme for s in sketches.values()} == {next(iter(sketches.values())).scheme} and next(
        iter(sketches.values())
    ).scheme.startswith("iblt3/spark-xxhash64/")
    assert {k: s.units for k, s in sketches.items()} == {
        k: c.units for k, c in derived.contributors_from(d_aux[0]).items()
    }
    # What a job does instead of the populations query, on each engine: the same sketches
    # from the member hashes (Spark's xxhash64 scheme, DuckDB's hash scheme).
    for aux in (s_aux, d_aux):
        members = derived.members_from(aux[2], keys)
        assert derived.sketches_from_members(aux[2], members) == derived.sketches_from(aux[1], keys)
    # What a job runs (the census, aux[3]): the figures on both engines, Spark's sketches.
    assert derived.job_queries == (derived.census,)
    assert derived.contributors_from(s_aux[3]) == derived.contributors_from(d_aux[0])
    members = derived.members_from(s_aux[3], keys)
    assert derived.sketches_from_members(s_aux[3], members) == sketches


CENSUS_SCHEMA = TableSchema(
    PEOPLE, (*SCHEMA.columns, Column("hours", "BIGINT", Sensitivity.SENSITIVE))
)
CENSUS_TEMPLATES = {
    "no group": "SELECT COUNT(*) AS people, SUM(p.income) AS income, AVG(p.hours) AS hours "
    "FROM civil.people AS p WHERE p.age >= :min_age",
    "two groups": "SELECT p.district, p.age, COUNT(*) AS people, SUM(p.income) AS income, "
    "AVG(p.hours) AS hours FROM civil.people AS p WHERE p.age >= :min_age "
    "GROUP BY p.district, p.age",
    "counts only": "SELECT p.district, COUNT(*) AS people FROM civil.people AS p "
    "WHERE p.age >= :min_age GROUP BY p.district",
}


@pytest.mark.parametrize("unique", [False, True], ids=["grouped by unit", "unique unit"])
@pytest.mark.parametrize("template", CENSUS_TEMPLATES)
def test_the_census_equals_its_references_on_spark_and_duckdb(
    spark: SparkEngine, tmp_path: Path, template: str, unique: bool
) -> None:
    """The census (figures and member hashes in one pass, what a job runs) against the
    contributors, members and populations queries, on each engine: the same figures, the same
    hash sets, the same sketches; and the same figures on Spark as on DuckDB. NULL and
    negative magnitudes, units of several rows (or unique ones), zero to two group columns."""
    n = 150
    path = tmp_path / "people.parquet"
    pq.write_table(
        pa.table(
            {
                "person_id": [f"P{i if unique else i % 41:03d}" for i in range(n)],
                "district": [f"d{i % 3}" for i in range(n)],
                "age": pa.array([18 + i % 4 for i in range(n)], pa.int32()),
                "income": pa.array(
                    [None if i % 5 == 0 else (i * 37) % 900 - 300 for i in range(n)], pa.int64()
                ),
                "hours": pa.array([None if i % 7 == 0 else i % 40 for i in range(n)], pa.int64()),
            }
        ),
        path,
    )
    query = compile_template(
        CENSUS_TEMPLATES[template],
        kind=TemplateKind.AGGREGATE,
        tables={PEOPLE: CENSUS_SCHEMA},
        parameters={
            "min_age": ParameterSpec.from_mapping("min_age", {"type": "integer", "min": 0})
        },
        count_column="people",
    )
    derived = derive_disclosure_queries(
        query, unit="person_id", top_n=2, cells_per_hash=16, max_groups=100, unit_is_unique=unique
    )
    sources, params = {PEOPLE: TableSource(PEOPLE, "parquet", path)}, {"min_age": 19}
    duck = DuckDBEngine(Limits(max_rows=1000))
    try:
        ran = [
            duck.run_with_auxiliary(query, sources, params, derived.queries, population_params("k"))
        ]
    finally:
        duck.close()
    ran.append(
        spark.run_with_auxiliary(query, sources, params, derived.queries, population_params("k"))
    )
    figures = []
    for table, aux in ran:
        named = derived.by_name(aux)
        keys = [group_key(table.columns, query.group_columns, row) for row in table.rows]
        figures.append(derived.contributors_from(named["census"]))
        assert figures[-1] == derived.contributors_from(named["contributors"])
        hashes = derived.members_from(named["census"], keys)
        reference = derived.members_from(named["members"], keys)
        assert {k: h.tolist() for k, h in hashes.items()} == {
            k: h.tolist() for k, h in reference.items()
        }
        assert hashes.keys() == set(keys)
        assert derived.sketches_from_members(named["census"], hashes) == derived.sketches_from(
            named["populations"], keys
        )
    assert figures[0] == figures[1]


def test_spark_population_sketches_decode_small_differences(
    spark: SparkEngine, tmp_path: Path
) -> None:
    """Two releases whose populations differ by 3 people: the Spark sketches (xxhash64,
    checked in Python by population.spark_check) peel to exactly 3."""
    query = compiled(
        "SELECT p.district, COUNT(*) AS people FROM civil.people AS p GROUP BY p.district"
    )
    derived = derive_disclosure_queries(
        query, unit="person_id", top_n=2, cells_per_hash=16, max_groups=100
    )
    found = []
    for drop in (0, 15):  # people 0..14 gone: 3 of them in d0
        path = tmp_path / f"p{drop}.parquet"
        pq.write_table(people(drop=drop), path)
        _, aux = spark.run_with_auxiliary(
            query,
            {PEOPLE: TableSource(PEOPLE, "parquet", path)},
            {},
            derived.queries,
            population_params("k"),
        )
        found.append(derived.sketches_from(aux[1], [(("district", "d0"),)]))
    key = (("district", "d0"),)
    assert difference_size(found[0][key], found[1][key], limit=10) == 3


def test_parameters_are_bound_not_spliced(spark: SparkEngine, parquet_source: TableSource) -> None:
    hostile = "d1' OR '1'='1"
    table = spark.run(compiled(), {PEOPLE: parquet_source}, {"min_age": 0, "skip": hostile})
    assert len(table.rows) == 5  # the text is a value: no district is called that


def test_list_csv_source_and_row_cap(spark_remote: str, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    pacsv.write_csv(people(30), path)
    source = TableSource(PEOPLE, "csv", path)
    schema = TableSchema(
        PEOPLE,
        tuple(
            Column(c.name, c.type, c.sensitivity, personal=False)
            for c in SCHEMA.columns
            if c.name != "income"
        ),
    )
    query = compile_template(
        "SELECT p.district, p.age FROM civil.people AS p WHERE p.age < :min_age ORDER BY p.age",
        kind=TemplateKind.LIST,
        tables={PEOPLE: schema},
        parameters={
            "min_age": ParameterSpec.from_mapping("min_age", {"type": "integer", "min": 0})
        },
        count_column=None,
    )
    wide = SparkEngine(spark_remote, Limits(max_rows=100))
    rows = wide.run(query, {PEOPLE: source}, {"min_age": 25}).rows
    duck = DuckDBEngine(Limits(max_rows=100))
    try:
        assert rows == duck.run(query, {PEOPLE: source}, {"min_age": 25}).rows
    finally:
        duck.close()
    assert len(rows) == 7
    narrow = SparkEngine(spark_remote, Limits(max_rows=5))
    with pytest.raises(ResourceLimitExceeded) as caught:
        narrow.run(query, {PEOPLE: source}, {"min_age": 25})
    assert caught.value.category is ExecutionCategory.ROW_LIMIT


def test_a_data_error_is_generic_and_its_text_goes_nowhere(
    spark: SparkEngine, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "secret.parquet"
    table = people(10).set_column(1, "district", pa.array(["SECRETVALUE"] * 10))
    pq.write_table(table, path)
    query = raw("n", "SELECT CAST(p.district AS INT) AS n FROM civil.people AS p")
    with pytest.raises(ExecutionError) as caught:
        spark.run(query, {PEOPLE: TableSource(PEOPLE, "parquet", path)}, {})
    assert caught.value.category is ExecutionCategory.DATA
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    out, err = capfd.readouterr()
    assert "SECRETVALUE" not in str(caught.value) + out + err
    assert str(path) not in out + err


def test_a_missing_file_is_source_unavailable(spark: SparkEngine, tmp_path: Path) -> None:
    gone = TableSource(PEOPLE, "parquet", tmp_path / "gone.parquet")
    with pytest.raises(ExecutionError) as caught:
        spark.run(compiled(), {PEOPLE: gone}, {"min_age": 1, "skip": "x"})
    assert caught.value.category is ExecutionCategory.SOURCE_UNAVAILABLE


def test_the_time_limit_interrupts_the_job(spark_remote: str, parquet_source: TableSource) -> None:
    slow = raw(
        "n",
        "SELECT COUNT(*) AS n FROM civil.people AS a, civil.people AS b, civil.people AS c, "
        "civil.people AS d WHERE a.income + b.income + c.income + d.income = 7",
    )
    engine = SparkEngine(spark_remote, Limits(timeout_s=3))
    with pytest.raises(QueryTimeout):
        engine.run(slow, {PEOPLE: parquet_source}, {})
    assert engine._sessions.idle() == ()  # an interrupted session is closed, never lent again
    engine.close()


def test_each_job_sees_only_its_own_views(spark: SparkEngine, tmp_path: Path) -> None:
    """Jobs running at the same time mount the same view name over different files; each
    answers from its own (a fresh session per job), and no view outlives its job."""
    sources = []
    for n in (50, 80, 120):
        path = tmp_path / f"p{n}.parquet"
        pq.write_table(people(n), path)
        sources.append(TableSource(PEOPLE, "parquet", path))
    query = raw("n", "SELECT COUNT(*) AS n FROM civil.people AS p")
    answers: dict[int, object] = {}

    def job(i: int) -> None:
        answers[i] = spark.run(query, {PEOPLE: sources[i]}, {}).rows

    threads = [threading.Thread(target=job, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {0: ((50,),), 1: ((80,),), 2: ((120,),)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyspark.sql.connect.session import SparkSession
    other = SparkSession(connection=spark.remote)
    try:
        assert [t.name for t in other.catalog.listTables()] == []
    finally:
        other.stop()


def test_a_pooled_session_carries_no_view_into_the_next_job(
    spark: SparkEngine, tmp_path: Path
) -> None:
    """Jobs one after the other share a session (no new session state per job), yet the
    session holds no view after a job, and the next job answers from its own file."""
    query = raw("n", "SELECT COUNT(*) AS n FROM civil.people AS p")
    answers = []
    for n in (50, 80):
        path = tmp_path / f"p{n}.parquet"
        pq.write_table(people(n), path)
        answers.append(spark.run(query, {PEOPLE: TableSource(PEOPLE, "parquet", path)}, {}).rows)
        (session,) = spark._sessions.idle()
        assert session.spark.catalog.listTables() == []
        assert session.spark.sql("SHOW VIEWS").collect() == []
    assert answers == [((50,),), ((80,),)]


def test_a_failed_job_does_not_return_its_session(spark: SparkEngine, tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(people(10).set_column(1, "district", pa.array(["x"] * 10)), path)
    query = raw("n", "SELECT CAST(p.district AS INT) AS n FROM civil.people AS p")
    with pytest.raises(ExecutionError):
        spark.run(query, {PEOPLE: TableSource(PEOPLE, "parquet", path)}, {})
    assert spark._sessions.idle() == ()


def test_a_pooled_session_the_server_dropped_is_replaced(
    spark: SparkEngine, parquet_source: TableSource
) -> None:
    """A session the server no longer holds (expired, or the server restarted) fails with
    an invalid handle before anything ran; the job runs again on a new session."""
    query = raw("n", "SELECT COUNT(*) AS n FROM civil.people AS p")
    first = spark.run(query, {PEOPLE: parquet_source}, {}).rows
    (pooled,) = spark._sessions.idle()
    session_id = pooled.spark.client._session_id
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyspark.sql.connect.session import SparkSession
    SparkSession(connection=f"{spark.remote}/;session_id={session_id}").stop()  # server side
    assert spark.run(query, {PEOPLE: parquet_source}, {}).rows == first
    (now,) = spark._sessions.idle()
    assert now.spark.client._session_id != session_id


PROFILE = ProfileRequest(
    PEOPLE,
    (
        ColumnCheck("person_id"),
        ColumnCheck("district", public=True, domain=("d0", "d1", "d2", "d3")),
        ColumnCheck("age", public=True, domain=tuple(range(18, 70))),
        ColumnCheck("income"),
    ),
    key=("person_id", "district"),
)


def test_a_profile_on_spark_equals_duckdbs(spark: SparkEngine, tmp_path: Path) -> None:
    """Catalogue and JDBC tables are profiled on Spark: the same counts, out-of-domain
    rates, public MIN/MAX and key figures as DuckDB's profile of the same rows."""
    table = people(300)
    table = table.set_column(3, "income", pa.array([None, *table["income"].to_pylist()[1:]]))
    path = tmp_path / "people.parquet"
    pq.write_table(table, path)
    source = TableSource(PEOPLE, "parquet", path)
    duck = DuckDBEngine()
    try:
        expected = duck.profile(source, PROFILE)
    finally:
        duck.close()
    assert expected.rows == 300
    assert spark.profile_on_spark(source, PROFILE) == expected


def test_pattern_rules_on_a_catalogue_table_are_refused(spark: SparkEngine) -> None:
    source = TableSource(PEOPLE, "table", table="registry.people")
    request = ProfileRequest(PEOPLE, (ColumnCheck("person_id", pattern="P[0-9]+"),))
    with pytest.raises(TemplateRejected):
        spark.profile(source, request)


def test_a_query_naming_anything_but_its_datasets_is_refused(
    spark: SparkEngine, parquet_source: TableSource
) -> None:
    for sql in (
        "SELECT COUNT(*) AS n FROM civil.other AS p",
        "SELECT COUNT(*) AS n FROM spark_catalog.civil.people AS p",
        "SELECT COUNT(*) AS n FROM civil.people AS p; DROP TABLE x",
    ):
        with pytest.raises(ExecutionError) as caught:
            spark.run(raw("n", sql), {PEOPLE: parquet_source}, {})
        assert caught.value.category is ExecutionCategory.REFUSED


def test_catalogue_table_source(spark: SparkEngine, parquet_source: TableSource) -> None:
    """A table of the cluster's catalogue (a Hive-style name), mounted as the job's view."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pyspark.sql.connect.session import SparkSession
    admin = SparkSession(connection=spark.remote)
    name = f"people_{uuid.uuid4().hex[:8]}"
    try:
        admin.sql("CREATE DATABASE IF NOT EXISTS registry")
        admin.sql(f"CREATE TABLE registry.{name} USING parquet LOCATION '{parquet_source.path}'")
        source = TableSource(PEOPLE, "table", table=f"registry.{name}")
        params = {"min_age": 30, "skip": "d4"}
        expected = spark.run(compiled(), {PEOPLE: parquet_source}, params).rows
        assert spark.run(compiled(), {PEOPLE: source}, params).rows == expected
        assert dict(spark.infer_schema(source))["age"] == "INTEGER"
    finally:
        admin.sql(f"DROP TABLE IF EXISTS registry.{name}")
        admin.stop()


@pytest.mark.postgres
def test_jdbc_source_reads_postgresql_in_place(
    spark: SparkEngine, spark_remote: str, postgres_url: str, parquet_source: TableSource
) -> None:
    """A department's operational PostgreSQL queried in place through Debian's JDBC driver;
    the credentials come from the engine's connections, and a wrong password fails as an
    unavailable source without echoing anything."""
    db = sa.create_engine(postgres_url)
    rows = people().to_pylist()
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE people (person_id text, district text, age integer, income bigint)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO people VALUES (:person_id, :district, :age, :income)"), rows
        )
    db.dispose()
    url = sa.make_url(postgres_url)
    jdbc_url = f"jdbc:postgresql://{url.host}:{url.port}/{url.database}"
    good = SparkEngine(
        spark_remote,
        spark.limits,
        connections={"civil_pg": JdbcConnection(jdbc_url, "postgres", "")},
    )
    source = TableSource(PEOPLE, "jdbc", table="public.people", connection="civil_pg")
    params = {"min_age": 30, "skip": "d4"}
    expected = spark.run(compiled(), {PEOPLE: parquet_source}, params).rows
    assert sorted(good.run(compiled(), {PEOPLE: source}, params).rows) == sorted(expected)
    unknown = SparkEngine(spark_remote, spark.limits)
    with pytest.raises(ExecutionError) as caught:
        unknown.run(compiled(), {PEOPLE: source}, params)
    assert caught.value.category is ExecutionCategory.SOURCE_UNAVAILABLE
    wrong = SparkEngine(
        spark_remote,
        spark.limits,
        connections={"civil_pg": JdbcConnection(f"{jdbc_url}_nope", "nobody", "hunter2")},
    )
    with pytest.raises(ExecutionError) as caught:
        wrong.run(compiled(), {PEOPLE: source}, params)
    assert caught.value.category is ExecutionCategory.SOURCE_UNAVAILABLE
    assert "hunter2" not in repr(caught.value) and "hunter2" not in repr(wrong.__dict__)


def test_duckdb_refuses_sources_only_spark_reads() -> None:
    duck = DuckDBEngine()
    try:
        with pytest.raises(SandboxBug):
            duck.run(
                compiled(),
                {PEOPLE: TableSource(PEOPLE, "table", table="r.people")},
                {"min_age": 1, "skip": "x"},
            )
    finally:
        duck.close()
