"""Quality rules against profiles (counts in, verdicts out), freshness and drift; and what an
open result may carry."""

from __future__ import annotations

import pytest

from gateway.catalogue.documents import DatasetSpec, parse_document
from gateway.errors import InvalidInput
from gateway.opendata.render import public_result
from gateway.quality import checks
from sandbox import ColumnProfile, DatasetProfile

DOC = """\
id: market.licences
title: Licences
provider: market
source: {format: parquet, path: data/market/l.parquet}
share_class: unconditional
classification: general
update_cycle: daily
columns:
  - {name: enterprise_id, type: VARCHAR, sensitivity: identifier, personal: false}
  - {name: district, type: VARCHAR, sensitivity: public, values: [a, b]}
  - {name: fee, type: DOUBLE, sensitivity: sensitive}
quality:
  rules:
    - {rule: required, columns: [enterprise_id], severity: must}
    - {rule: key_unique, columns: [enterprise_id], severity: must}
    - {rule: max_null_rate, column: district, max: 0.1}
    - {rule: max_staleness, hours: 48}
"""


def spec(text: str = DOC) -> DatasetSpec:
    parsed: DatasetSpec = parse_document(text, DatasetSpec)
    return parsed


def profile(rows: int, id_nulls: int, dups: int, district_nulls: int) -> DatasetProfile:
    return DatasetProfile(
        rows=rows,
        columns=(
            ColumnProfile("enterprise_id", id_nulls, rows - id_nulls - dups, None),
            ColumnProfile("district", district_nulls, 2, 0, "a", "b"),
            ColumnProfile("fee", 0, rows, None),
        ),
        key=("enterprise_id",),
        key_nulls=id_nulls,
        key_duplicates=dups,
    )


def test_request_marks_only_public_columns_and_takes_declared_domains() -> None:
    request = checks.request_for(spec())
    by_name = {c.name: c for c in request.columns}
    assert by_name["district"].public and by_name["district"].domain == ("a", "b")
    assert not by_name["fee"].public and not by_name["enterprise_id"].public
    assert request.key == ("enterprise_id",)


def test_must_rules_fail_on_missing_and_repeated_keys_should_rules_only_warn() -> None:
    verdicts = checks.evaluate(spec(), profile(100, 1, 2, 20), age_hours=72)
    failing = {(c.rule, c.severity) for c in verdicts if not c.ok}
    assert failing == {
        ("required", "must"),
        ("key_unique", "must"),
        ("max_null_rate", "should"),
        ("max_staleness", "should"),
    }
    assert all(c.ok for c in checks.evaluate(spec(), profile(100, 0, 0, 0), age_hours=1))


def test_freshness_follows_the_update_cycle() -> None:
    assert checks.freshness(spec(), 23.0)["state"] == "fresh"
    assert checks.freshness(spec(), 25.0)["state"] == "stale"
    other = spec(DOC.replace("update_cycle: daily", "update_cycle: whenever"))
    assert checks.freshness(other, 10_000.0)["state"] == "unknown"


def test_drift_flags_row_and_null_rate_changes() -> None:
    before = profile(100, 0, 0, 0).encode()
    assert checks.drift(before, profile(110, 0, 0, 0))["flagged"] is False  # type: ignore[index]
    assert checks.drift(before, profile(300, 0, 0, 0))["flagged"] is True  # type: ignore[index]
    moved = checks.drift(before, profile(100, 0, 0, 30))
    assert moved is not None and moved["columns"]["district"]["flagged"] is True
    assert checks.drift(None, profile(1, 0, 0, 0)) is None


def test_rules_must_name_declared_columns() -> None:
    with pytest.raises(InvalidInput):
        spec(DOC.replace("column: district, max", "column: nowhere, max"))


def test_an_open_result_carries_only_the_public_fields() -> None:
    released = {
        "columns": ["d", "n"],
        "rows": [["a", 12]],
        "withheld": [],
        "profiles": {"market.licences": "p"},
        "job": "secret-job-id",
        "keys": ["K1"],
    }
    assert public_result(released) == {"columns": ["d", "n"], "rows": [["a", 12]], "withheld": []}
