"""VERIFY compilation: the wrapper, its rules, and real runs on DuckDB with bound keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import (
    Column,
    CompiledQuery,
    DuckDBEngine,
    ParameterSpec,
    ParamType,
    SandboxBug,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    TemplateRejected,
    compile_template,
    synthetic_values,
    write_synthetic_csv,
)

RES = "civil.residents"
SCHEMA = TableSchema(
    RES,
    (
        Column("person_id", "VARCHAR", Sensitivity.IDENTIFIER),
        Column("district", "VARCHAR", Sensitivity.PUBLIC),
    ),
)
KEY = ParameterSpec("person_id", ParamType.STRING, pattern="P[0-9]{3}")
DISTRICT = ParameterSpec("district", ParamType.STRING)
FILTER = f"SELECT 1 FROM {RES} AS p WHERE p.person_id = :person_id AND p.district = :district"
PEOPLE = {f"P{n:03d}": ("north" if n % 2 else "south") for n in range(100)}


def verify(
    sql: str = FILTER, *, slots: int = 1, answer: str = "match", params: bool = True
) -> CompiledQuery:
    return compile_template(
        sql,
        kind=TemplateKind.VERIFY,
        tables={RES: SCHEMA},
        parameters={"district": DISTRICT} if params else {},
        count_column=None,
        verify_key=KEY,
        verify_answer=answer,
        verify_slots=slots,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TableSource]:
    path: Path = tmp_path_factory.mktemp("verify") / "residents.parquet"
    pq.write_table(pa.table({"person_id": list(PEOPLE), "district": list(PEOPLE.values())}), path)
    yield TableSource(RES, "parquet", path)


def run(query: CompiledQuery, source: TableSource, keys: list[str], district: str) -> list[object]:
    values: dict[str, object] = {"district": district}
    values.update(zip(query.key_parameters, keys, strict=True))
    return [tuple(r) for r in DuckDBEngine().run(query, {RES: source}, values).rows]


def test_each_key_gets_its_own_bound_slot() -> None:
    q = verify(slots=3)
    assert q.key_parameters == ("verify_key_0001", "verify_key_0002", "verify_key_0003")
    assert q.parameters == ("district", *q.key_parameters)
    assert q.output_columns == ("key_index", "matched")
    assert "$verify_key_0003" in q.duckdb_sql and ":person_id" not in q.spark_sql
    assert "person_id = insitu_keys.key_value" in q.duckdb_sql


def test_match_answers_one_bit_per_key(source: TableSource) -> None:
    rows = run(verify(slots=4), source, ["P001", "P002", "P999", "P003"], "north")
    assert rows == [(1, True), (2, False), (3, False), (4, True)]


def test_count_answers_only_the_number(source: TableSource) -> None:
    q = verify(slots=3, answer="count")
    assert q.output_columns == ("matches",)
    assert run(q, source, ["P001", "P003", "P004"], "north") == [(2,)]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(keys=st.lists(st.text(max_size=12), min_size=1, max_size=6, unique=True))
def test_keys_never_change_the_sql_text_and_are_compared_as_data(
    source: TableSource, keys: list[str]
) -> None:
    q = verify(slots=len(keys))
    assert q == verify(slots=len(keys))  # compilation never sees a key
    keys = [k.replace("\x00", "") for k in keys]
    if len(set(keys)) != len(keys):
        return
    expected = [(i, PEOPLE.get(k) == "north") for i, k in enumerate(keys, start=1)]
    assert run(q, source, keys, "north") == expected


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (f"SELECT 1 FROM {RES} AS p WHERE p.district = :district AND p.person_id <> :person_id",
         "look records up by key"),
        (f"SELECT 1 FROM {RES} AS p WHERE p.district = :district OR p.person_id = :person_id",
         "look records up by key"),
        (f"SELECT p.district FROM {RES} AS p WHERE p.person_id = :person_id AND p.district = "
         ":district GROUP BY p.district", "GROUP"),
        (f"SELECT 1 FROM {RES} AS p WHERE p.person_id = :person_id AND p.district = :district "
         "LIMIT 1", "LIMIT"),
        (f"SELECT COUNT(*) FROM {RES} AS p WHERE p.person_id = :person_id AND p.district = "
         ":district", "aggregate"),
        (f"SELECT 1 FROM {RES} AS insitu_keys WHERE insitu_keys.person_id = :person_id AND "
         "insitu_keys.district = :district", "reserved"),
        (f"SELECT 1 FROM {RES} AS p WHERE p.person_id = :person_id AND p.district = :district; "
         "SELECT 2", "exactly one"),
        ("SELECT 1 FROM read_csv('/etc/passwd') AS p WHERE p.a = :person_id AND "
         "p.b = :district", "table functions"),
    ],
)  # fmt: skip
def test_verify_filter_rules(sql: str, reason: str) -> None:
    with pytest.raises(TemplateRejected, match=reason):
        verify(sql)


def test_a_verify_template_needs_its_key_and_only_verify_takes_one() -> None:
    with pytest.raises(TemplateRejected, match="verify key"):
        compile_template(FILTER, kind=TemplateKind.VERIFY, tables={RES: SCHEMA},
                         parameters={"district": DISTRICT}, count_column=None)  # fmt: skip
    with pytest.raises(TemplateRejected, match="verify key"):
        compile_template(FILTER, kind=TemplateKind.AGGREGATE, tables={RES: SCHEMA},
                         parameters={"district": DISTRICT}, count_column="n",
                         verify_key=KEY)  # fmt: skip
    with pytest.raises(SandboxBug):
        verify(slots=0)


def test_synthetic_data_runs_through_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "residents.csv"
    write_synthetic_csv(SCHEMA, path, 50, {"district": ("north",)})
    ids = synthetic_values(SCHEMA, "person_id", 50)
    assert len(ids) == 50 and "north" in synthetic_values(
        SCHEMA, "district", 50, {"district": ("north",)}
    )
    q = verify(f"SELECT 1 FROM {RES} AS p WHERE p.person_id = :person_id", slots=2, params=False)
    table = DuckDBEngine().run(
        q, {RES: TableSource(RES, "csv", path)}, {q.key_parameters[0]: ids[0],
                                                  q.key_parameters[1]: "nobody"}
    )  # fmt: skip
    assert [tuple(r) for r in table.rows] == [(1, True), (2, False)]
