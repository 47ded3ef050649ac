"""Data-quality profiles run by the real DuckDB engine (and a real sandbox worker process):
counts and rates only; MIN/MAX leave for public columns alone; domains are bound, not spliced."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox import (
    ColumnCheck,
    DuckDBEngine,
    Limits,
    ProcessEngine,
    ProfileRequest,
    SandboxBug,
    TableSource,
)
from sandbox.compile.spark import profile_sql

SECRET = "S3CR3T-CAPITAL-VALUE"


@pytest.fixture
def source(tmp_path: Path) -> TableSource:
    path = tmp_path / "registry.parquet"
    table = pa.table(
        {
            "enterprise_id": ["E1", "E2", "E2", None, "E5", "bad id"],
            "district": ["a", "b", "zz", "a", None, "a"],
            "capital": [SECRET, "2", "3", "4", "5", "6"],
        }
    )
    pq.write_table(table, path)
    return TableSource("market.registry", "parquet", path)


def request() -> ProfileRequest:
    return ProfileRequest(
        dataset_id="market.registry",
        columns=(
            ColumnCheck("enterprise_id", pattern="E[0-9]+"),
            ColumnCheck("district", public=True, domain=("a", "b")),
            ColumnCheck("capital"),
        ),
        key=("enterprise_id",),
    )


def test_profile_counts_nulls_distincts_domains_and_key_duplicates(source: TableSource) -> None:
    engine = DuckDBEngine(Limits(timeout_s=10))
    try:
        profile = engine.profile(source, request())
    finally:
        engine.close()
    assert profile.rows == 6
    ident, district, capital = profile.columns
    assert (ident.nulls, ident.distinct, ident.outside_domain) == (1, 4, 1)
    assert (district.nulls, district.distinct, district.outside_domain) == (1, 3, 1)
    assert (district.min, district.max) == ("a", "zz")  # public: its range may leave
    assert capital.outside_domain is None
    assert (ident.min, ident.max, capital.min, capital.max) == (None, None, None, None)
    assert profile.key_nulls == 1
    assert profile.key_duplicates == 1  # E2 twice


def test_profile_from_a_worker_process_carries_no_value_of_a_non_public_column(
    source: TableSource,
) -> None:
    engine = ProcessEngine(Limits(timeout_s=30), spares=0)
    try:
        profile = engine.profile(source, request())
    finally:
        engine.close()
    assert profile.rows == 6
    assert SECRET not in repr(profile.encode())
    assert "E1" not in repr(profile.encode())


def test_domain_values_are_bound_parameters_never_sql_text() -> None:
    hostile = "a') OR 1=1 --"
    req = ProfileRequest(
        "market.registry", (ColumnCheck("district", domain=(hostile,), pattern="x'y"),)
    )
    sql, params = req.sql()
    assert hostile not in sql and "x'y" not in sql
    assert params == {"d0": [hostile], "p0": "x'y"}


def test_a_public_flag_is_what_lets_min_and_max_through_a_screened_profile(
    source: TableSource,
) -> None:
    engine = DuckDBEngine(Limits(timeout_s=10))
    try:
        open_req = ProfileRequest("market.registry", (ColumnCheck("capital", public=True),))
        profile = engine.profile(source, open_req)
    finally:
        engine.close()
    assert profile.columns[0].min is not None
    closed = ProfileRequest("market.registry", (ColumnCheck("capital"),))
    assert closed.screened(profile).columns[0].min is None


@pytest.mark.parametrize(
    "bad",
    [
        lambda: ColumnCheck('x" OR 1=1 --'),
        lambda: ColumnCheck("x", domain=()),
        lambda: ColumnCheck("x", pattern="("),
        lambda: ProfileRequest("market.registry", (ColumnCheck("x"),), key=("y",)),
    ],
)
def test_malformed_requests_are_refused(bad: object) -> None:
    with pytest.raises(SandboxBug):
        bad()  # type: ignore[operator]


def test_the_spark_profile_reads_the_view_and_binds_its_domains() -> None:
    """The Spark rendering of a profile (for catalogue and JDBC tables) reads the job's view,
    binds each domain as a named parameter and holds no domain value in its text."""
    request = ProfileRequest(
        "market.registry",
        (ColumnCheck("sector", public=True, domain=(SECRET, "retail")),),
        key=("sector",),
    )
    duckdb_sql, params = request.sql()
    text = profile_sql(duckdb_sql, "market.registry", tuple(params))
    assert text.endswith("FROM insitu_v0 AS registry") and "market" not in text
    assert ":d0" in text and SECRET not in text and "retail" not in text
    assert params == {"d0": [SECRET, "retail"]}
