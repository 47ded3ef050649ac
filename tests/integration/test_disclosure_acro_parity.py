"""Parity with ACRO (the SACRO output checker): insitu withholds every cell ACRO flags.

The fixtures (tests/fixtures/acro/*.json) are written by `make peers-acro`, which runs ACRO
1.0.2 in its own virtualenv over fixed tables and records, per cell of a district × industry
crosstab (counts, and sums of `capital`), the checks ACRO failed. Here the same rows go
through insitu's real path — the template compiled, the derived contributor query and the
template run by DuckDB in a sandbox worker process, the disclosure pipeline — with ACRO's
thresholds and secondary suppression off, so the primary rules alone must cover ACRO.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import (
    Column,
    DisclosureRules,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    apply_disclosure,
    compile_template,
)
from sandbox.compile.disclosure import derive_disclosure_queries
from sandbox.engines.process import ProcessEngine

FIXTURES = sorted((Path(__file__).parents[1] / "fixtures" / "acro").glob("*.json"))
DATASET = "market.enterprises"
SQL = """
SELECT e.district, e.industry, COUNT(*) AS n, SUM(e.capital) AS capital
FROM market.enterprises AS e
GROUP BY e.district, e.industry
"""
SCHEMA = TableSchema(
    DATASET,
    (
        Column("enterprise_id", "VARCHAR", Sensitivity.IDENTIFIER),
        Column("district", "VARCHAR", Sensitivity.PUBLIC),
        Column("industry", "VARCHAR", Sensitivity.PUBLIC),
        Column("capital", "DOUBLE", Sensitivity.SENSITIVE),
    ),
)


@pytest.fixture(scope="module")
def engine() -> Iterator[ProcessEngine]:
    engine = ProcessEngine(spares=0)
    yield engine
    engine.close()


def test_fixtures_were_recorded_from_acro() -> None:
    assert len(FIXTURES) == 3
    for path in FIXTURES:
        fixture = json.loads(path.read_text())
        assert fixture["peer"] == "acro 1.0.2"
        assert fixture["flags"]["sum"], f"{path.name} flags nothing: a parity test needs flags"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
@pytest.mark.parametrize("unit", ["enterprise_id", None], ids=["units", "rows"])
def test_insitu_withholds_every_cell_acro_flags(
    path: Path, unit: str | None, engine: ProcessEngine, tmp_path: Path
) -> None:
    fixture = json.loads(path.read_text())
    columns = list(zip(*fixture["rows"], strict=True))
    data = tmp_path / "enterprises.parquet"
    pq.write_table(pa.table(dict(zip(fixture["columns"], columns, strict=True))), data)
    query = compile_template(
        SQL, kind=TemplateKind.AGGREGATE, tables={DATASET: SCHEMA}, parameters={},
        count_column="n",
    )  # fmt: skip
    thresholds = fixture["thresholds"]
    rules = DisclosureRules(
        min_group_size=thresholds["min_group_size"],
        dominance_n=thresholds["dominance"]["n"],
        dominance_k=thresholds["dominance"]["k"],
        p_percent=thresholds["p_percent"],
        secondary=False,
    )
    derived = derive_disclosure_queries(
        query, unit=unit, top_n=rules.top_n, cells_per_hash=20, max_groups=1000
    )
    table, aux = engine.run_with_auxiliary(
        query,
        {DATASET: TableSource(DATASET, "parquet", data)},
        {},
        [derived.contributors],
    )
    disclosed = apply_disclosure(
        table,
        count_column="n",
        group_columns=query.group_columns,
        rules=rules,
        contributors=derived.contributors_from(aux[0]),
    )
    released = {f"{row[0]}|{row[1]}" for row in disclosed.rows}
    withheld = {
        f"{dict(c.key)['district']}|{dict(c.key)['industry']}": c.rule for c in disclosed.withheld
    }
    flagged = {cell for kind in ("count", "sum") for cell in fixture["flags"][kind]}
    present = {f"{row[0]}|{row[1]}" for row in table.rows}
    assert flagged & present, "ACRO flagged no cell that the query returns"
    assert not flagged & released, f"released cells ACRO flags: {sorted(flagged & released)}"
    for cell in flagged & present:
        acro_checks = set(fixture["flags"]["sum"].get(cell, [])) | set(
            fixture["flags"]["count"].get(cell, [])
        )
        if acro_checks == {"MinimumThresholdCheck"}:
            assert withheld[cell] == "min_group_size"
        else:
            assert withheld[cell] in {"min_group_size", "dominance", "p_percent"}
