"""Dispersion aggregates of a sensitive column (issue 15, attack 3), on real DuckDB.

``STDDEV_POP(income)`` was released without the dominance and p % checks that guard SUM. In
district d0, 29 people earn about 100,000 and one earns 100,500: no one dominates the SUM
(the top two hold ~7 %), but that one person holds almost all of the squared deviations, so
the spread tells the others how far the outlier lies from the mean. The derived
``dispersions`` query gives disclosure control each unit's share of the squared deviations;
dominance withholds d0. Without it (STDDEV treated as an ordinary output) d0 is released.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import (
    Column,
    DisclosureRules,
    DuckDBEngine,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    apply_disclosure,
    compile_template,
    derive_disclosure_queries,
    population_params,
)

DATASET = "civil.people"
TABLES = {
    DATASET: TableSchema(
        DATASET,
        (
            Column("person_id", "VARCHAR", Sensitivity.IDENTIFIER),
            Column("district", "VARCHAR", Sensitivity.PUBLIC),
            Column("income", "BIGINT", Sensitivity.SENSITIVE),
        ),
    )
}
RULES = DisclosureRules(
    min_group_size=10, dominance_n=2, dominance_k=0.9, p_percent=10.0, secondary=False
)


@pytest.fixture
def people(tmp_path: Path) -> dict[str, TableSource]:
    rows = []
    for d in range(3):
        for i in range(30):
            income = 100_000 + (i * 7) % 21 - 10
            if d == 0 and i == 0:
                income = 100_500  # the outlier of d0
            rows.append((f"P{d}{i:02d}", f"d{d}", income))
    path = tmp_path / "people.parquet"
    pq.write_table(
        pa.table(
            {k: [r[j] for r in rows] for j, k in enumerate(("person_id", "district", "income"))}
        ),
        path,
    )
    return {DATASET: TableSource(DATASET, "parquet", path)}


@pytest.fixture(scope="module")
def engine() -> DuckDBEngine:
    return DuckDBEngine()


def released(engine: DuckDBEngine, people: dict[str, TableSource], output: str) -> list[object]:
    query = compile_template(
        f"SELECT p.district, COUNT(*) AS n, {output} AS v FROM civil.people AS p "
        "GROUP BY p.district",
        kind=TemplateKind.AGGREGATE,
        tables=TABLES,
        parameters={},
        count_column="n",
    )
    derived = derive_disclosure_queries(
        query, unit="person_id", top_n=RULES.top_n, cells_per_hash=20, max_groups=100
    )
    table, aux = engine.run_with_auxiliary(
        query, people, {}, derived.queries, population_params("s" * 64)
    )
    named = derived.by_name(aux)
    disclosed = apply_disclosure(
        table,
        count_column="n",
        group_columns=query.group_columns,
        rules=RULES,
        contributors=derived.contributors_from(named["contributors"], named.get("dispersions")),
    )
    return sorted(row[0] for row in disclosed.rows)


@pytest.mark.parametrize(
    "spread", ["STDDEV_POP(p.income)", "VAR_SAMP(p.income)", "STDDEV(p.income)"]
)
def test_a_spread_dominated_by_one_person_is_withheld(
    engine: DuckDBEngine, people: dict[str, TableSource], spread: str
) -> None:
    assert released(engine, people, "SUM(p.income)") == ["d0", "d1", "d2"]  # sum: no outlier
    assert released(engine, people, spread) == ["d1", "d2"]
