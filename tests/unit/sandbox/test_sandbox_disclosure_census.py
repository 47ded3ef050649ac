"""The `census` a job runs equals its references, on real DuckDB.

The census is the contributor figures and the member hashes of one pass over the per-(group,
unit) rows; `contributors` and `members` compute each half on its own, `populations` the
sketches in SQL. Whatever the data and the template, the census must give the same figures,
the same hash sets and (through the hashes) the same sketches. Spark:
`tests/integration/test_spark_engine.py`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import (
    Column,
    CompiledQuery,
    DuckDBEngine,
    ParameterSpec,
    SandboxBug,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    compile_template,
    derive_disclosure_queries,
    group_key,
    population_params,
)
from sandbox.compile.auxiliary import DisclosureQueries
from sandbox.results import ResultTable

DATASET = "civil.people"
SCHEMA = TableSchema(
    DATASET,
    (
        Column("person_id", "VARCHAR", Sensitivity.IDENTIFIER),
        Column("age", "BIGINT", Sensitivity.QUASI_IDENTIFIER),
        Column("district", "VARCHAR", Sensitivity.PUBLIC),
        Column("sex", "VARCHAR", Sensitivity.PUBLIC),
        Column("income", "BIGINT", Sensitivity.SENSITIVE),
        Column("hours", "BIGINT", Sensitivity.SENSITIVE),
    ),
)
ARROW = pa.schema(
    [
        ("person_id", pa.string()),
        ("age", pa.int64()),
        ("district", pa.string()),
        ("sex", pa.string()),
        ("income", pa.int64()),
        ("hours", pa.int64()),
    ]
)
FROM = "FROM civil.people AS p WHERE p.age >= :lo"
TEMPLATES = {
    "no group, two magnitudes": f"SELECT COUNT(*) AS n, SUM(p.income) AS income, "
    f"AVG(p.hours) AS hours {FROM}",
    "one group, one magnitude": f"SELECT p.district, COUNT(*) AS n, SUM(p.income) AS income "
    f"{FROM} GROUP BY p.district",
    "two groups, two magnitudes": "SELECT p.district, p.sex, COUNT(*) AS n, "
    f"SUM(p.income) AS income, AVG(p.hours) AS hours {FROM} GROUP BY p.district, p.sex",
    "one group, counts only": f"SELECT p.district, COUNT(*) AS n {FROM} GROUP BY p.district",
    "a dispersion": "SELECT p.district, COUNT(*) AS n, SUM(p.hours) AS hours, "
    f"STDDEV(p.income) AS spread {FROM} GROUP BY p.district",
}
LO = {"lo": ParameterSpec.from_mapping("lo", {"type": "integer", "min": 0, "max": 120})}
SECRET = population_params("census test secret")


def compiled(sql: str) -> CompiledQuery:
    return compile_template(
        sql, kind=TemplateKind.AGGREGATE, tables={DATASET: SCHEMA}, parameters=LO, count_column="n"
    )


def derived_of(query: CompiledQuery, *, unique: bool) -> DisclosureQueries:
    return derive_disclosure_queries(
        query, unit="person_id", top_n=2, cells_per_hash=8, max_groups=1000, unit_is_unique=unique
    )


def people(rows: Sequence[Mapping[str, object]], path: Path) -> dict[str, TableSource]:
    pq.write_table(pa.Table.from_pylist(list(rows), schema=ARROW), path)
    return {DATASET: TableSource(DATASET, "parquet", path)}


def assert_census_equals_references(
    engine: DuckDBEngine,
    query: CompiledQuery,
    derived: DisclosureQueries,
    sources: Mapping[str, TableSource],
    lo: int = 0,
) -> None:
    """Run every derived query once; the census reads as each of its references."""
    table, aux = engine.run_with_auxiliary(query, sources, {"lo": lo}, derived.queries, SECRET)
    named = derived.by_name(aux)
    census = named["census"]
    keys = [group_key(table.columns, query.group_columns, row) for row in table.rows]
    dispersions = named.get("dispersions")
    assert derived.contributors_from(census, dispersions) == derived.contributors_from(
        named["contributors"], dispersions
    )
    hashes = derived.members_from(census, keys)
    reference = derived.members_from(named["members"], keys)
    assert hashes.keys() == reference.keys() == set(keys)
    for key, found in hashes.items():
        assert np.array_equal(found, reference[key])
    made = derived.sketches_from_members(census, hashes)
    assert {k: v for k, v in made.items() if hashes[k].size} == derived.sketches_from(
        named["populations"], keys
    )  # a group-less template over no rows has no population row, and an empty sketch
    units = {key: c.units for key, c in derived.contributors_from(census, dispersions).items()}
    assert {key: found.size for key, found in hashes.items()} == {k: units[k] for k in keys}


ROWS = [
    {
        "person_id": f"P{i % 13:02d}",  # 13 people over 40 rows: a unit has several rows
        "age": 20 + i % 50,
        "district": f"d{i % 3}",
        "sex": "fm"[i % 2],
        "income": None if i % 5 == 0 else (i * 37) % 1000 - 200,  # NULLs and negatives
        "hours": None if i % 7 == 0 else i % 40,
    }
    for i in range(40)
]


@pytest.mark.parametrize("unique", [False, True], ids=["grouped by unit", "unique unit"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_the_census_gives_the_figures_and_hashes_of_its_references(
    template: str, unique: bool, tmp_path: Path
) -> None:
    rows = ROWS if not unique else [{**r, "person_id": f"U{i:03d}"} for i, r in enumerate(ROWS)]
    query = compiled(TEMPLATES[template])
    derived = derived_of(query, unique=unique)
    assert derived.census is not None
    sql = derived.census.duckdb_sql
    assert ("GROUP BY g0" in sql) == bool(query.group_columns)
    assert (re.search(r"GROUP BY (p\.\w+, )*p\.person_id\)", sql) is not None) != unique
    engine = DuckDBEngine()
    try:
        for lo in (0, 45):  # all rows, then a bound parameter leaves some
            assert_census_equals_references(
                engine, query, derived, people(rows, tmp_path / f"{lo}.parquet"), lo
            )
    finally:
        engine.close()


def test_a_job_runs_the_census_alone_and_without_a_unit_the_contributors() -> None:
    query = compiled(TEMPLATES["two groups, two magnitudes"])
    derived = derived_of(query, unique=False)
    assert derived.census is not None and derived.job_queries == (derived.census,)
    assert derived.census.max_rows == 1000 == derived.contributors.max_rows
    assert derived.census.output_columns == (
        *derived.contributors.output_columns,
        "hashes",
        "scheme",
    )
    for word in SECRET.values():
        assert str(word) not in derived.census.duckdb_sql + derived.census.spark_sql
    assert set(SECRET) <= set(derived.census.parameters)  # keys bound, never spliced
    spread = derived_of(compiled(TEMPLATES["a dispersion"]), unique=False)
    assert spread.job_queries == (spread.census, spread.dispersion_query)
    rows_only = derive_disclosure_queries(
        query, unit=None, top_n=2, cells_per_hash=8, max_groups=1000
    )
    assert rows_only.census is None and rows_only.job_queries == (rows_only.contributors,)


def test_results_are_read_by_column_name_and_a_missing_column_fails_closed() -> None:
    query = compiled(TEMPLATES["one group, one magnitude"])
    derived = derived_of(query, unique=False)
    hashes = bytes.fromhex("00000000000000020000000000000001")  # packed, in any order
    table = ResultTable(
        ("g0", "units", "total0", "top0", "hashes", "scheme"),
        ("VARCHAR", "BIGINT", "HUGEINT", "BIGINT[]", "VARCHAR", "UBIGINT"),
        (("d0", 2, 30, [20, 10], hashes, 7),),
    )
    order = (5, 4, 3, 2, 1, 0)  # the same result, columns in another order
    shuffled = ResultTable(
        tuple(table.columns[i] for i in order),
        tuple(table.types[i] for i in order),
        tuple(tuple(row[i] for i in order) for row in table.rows),
    )
    key = (("district", "d0"),)
    for result in (table, shuffled):
        assert derived.contributors_from(result)[key].magnitudes == {"income": (30.0, (20.0, 10.0))}
        members = derived.members_from(result, [key])
        assert [int(h) for h in members[key]] == [1, 2]
        assert derived.sketches_from_members(result, members)[key].units == 2
    readers: dict[str, Callable[[ResultTable], object]] = {
        "contributors": derived.contributors_from,
        "members": lambda result: derived.members_from(result, [key]),
        "sketches": lambda result: derived.sketches_from_members(
            result, derived.members_from(table, [key])
        ),
    }
    needs = {
        "g0": ("contributors", "members"),
        "units": ("contributors", "members"),
        "total0": ("contributors",),
        "top0": ("contributors",),
        "hashes": ("members",),
        "scheme": ("sketches",),
    }
    for missing, readers_failing in needs.items():
        keep = [i for i, c in enumerate(table.columns) if c != missing]
        cut = ResultTable(
            tuple(table.columns[i] for i in keep),
            tuple(table.types[i] for i in keep),
            tuple(tuple(row[i] for i in keep) for row in table.rows),
        )
        for reader in readers_failing:
            with pytest.raises(SandboxBug, match=f"lacks column.* {missing}"):
                readers[reader](cut)


people_rows = st.lists(
    st.fixed_dictionaries(
        {
            "person_id": st.one_of(st.none(), st.sampled_from([f"P{i}" for i in range(12)])),
            "age": st.integers(0, 99),
            "district": st.sampled_from(["a", "b", "c"]),
            "sex": st.sampled_from(["f", "m"]),
            "income": st.one_of(st.none(), st.integers(-(10**6), 10**6)),
            "hours": st.one_of(st.none(), st.integers(0, 80)),
        }
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(rows=people_rows, template=st.sampled_from(sorted(TEMPLATES)), unique=st.booleans())
def test_any_data_gives_the_census_the_figures_and_hashes_of_its_references(
    rows: list[dict[str, object]], template: str, unique: bool, duckdb_engine: DuckDBEngine
) -> None:
    """Units repeated or unique (then none NULL), NULL units and magnitudes, ties, empty groups
    after the WHERE: the census always equals the references."""
    if unique:
        rows = [{**r, "person_id": f"U{i}"} for i, r in enumerate(rows)]
    query = compiled(TEMPLATES[template])
    with tempfile.TemporaryDirectory() as scratch:
        assert_census_equals_references(
            duckdb_engine,
            query,
            derived_of(query, unique=unique),
            people(rows, Path(scratch) / "people.parquet"),
            lo=30,
        )


@pytest.fixture(scope="module")
def duckdb_engine() -> Iterator[DuckDBEngine]:
    engine = DuckDBEngine()
    yield engine
    engine.close()


def test_a_template_without_groups_over_no_rows_has_no_members(
    duckdb_engine: DuckDBEngine, tmp_path: Path
) -> None:
    """DuckDB aggregates no rows into one row with NULL hashes: read as no members, so such a
    job releases (its empty cell withheld) instead of failing."""
    query = compiled(TEMPLATES["no group, two magnitudes"])
    for unique in (False, True):
        derived = derived_of(query, unique=unique)
        sources = people(ROWS, tmp_path / "people.parquet")
        table, aux = duckdb_engine.run_with_auxiliary(
            query, sources, {"lo": 120}, derived.job_queries, SECRET
        )
        census = derived.by_name(aux, derived.job_queries)["census"]
        assert table.rows[0][0] == 0
        members = derived.members_from(census, [()])
        assert members[()].size == 0
        assert derived.contributors_from(census)[()].units == 0


def test_a_worker_process_sends_the_census_the_engine_packed(tmp_path: Path) -> None:
    """The member hashes cross the process boundary as binary (8 bytes a unit), unchanged."""
    from sandbox.engines.process import ProcessEngine

    query = compiled(TEMPLATES["two groups, two magnitudes"])
    derived = derived_of(query, unique=False)
    sources = people(ROWS, tmp_path / "people.parquet")
    local, worker = DuckDBEngine(), ProcessEngine(spares=0)
    try:
        here = local.run_with_auxiliary(query, sources, {"lo": 0}, derived.queries, SECRET)
        there = worker.run_with_auxiliary(query, sources, {"lo": 0}, derived.queries, SECRET)
    finally:
        local.close()
        worker.close()

    def rows(table: ResultTable) -> list[str]:
        """The rows in a stable order: GROUP BY has none, nor do a group's packed hashes (8
        bytes each, "in any order" as `hashes_from_bytes` takes them)."""
        units = [i for i, c in enumerate(table.columns) if c == "hashes"]
        return sorted(
            repr(
                tuple(
                    b"".join(sorted(v[k : k + 8] for k in range(0, len(v), 8)))
                    if i in units and isinstance(v, bytes)
                    else v
                    for i, v in enumerate(row)
                )
            )
            for row in table.rows
        )

    for a, b in zip((there[0], *there[1]), (here[0], *here[1]), strict=True):
        assert a.columns == b.columns and a.types == b.types
        assert rows(a) == rows(b)
    census = derived.by_name(there[1])["census"]
    at = census.columns.index("hashes")
    assert all(isinstance(row[at], bytes) and len(row[at]) % 8 == 0 for row in census.rows)
    assert sum(len(row[at]) for row in census.rows) // 8 == sum(
        c.units for c in derived.contributors_from(census).values()
    )
