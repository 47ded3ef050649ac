"""Static checks at compile time, without an engine: a template never names storage (files,
URLs) in a string literal, and never calls a function that reads files, settings or metadata."""

from __future__ import annotations

import pytest
from sandbox_testdata import REGISTRY

from sandbox import CompiledQuery, TableSchema, TemplateKind, TemplateRejected, compile_template

SQL = f"SELECT district, COUNT(*) AS n FROM {REGISTRY} WHERE industry = {{value}} GROUP BY 1"


def compile_with(value: str, tables: dict[str, TableSchema]) -> CompiledQuery:
    return compile_template(
        SQL.format(value=value),
        kind=TemplateKind.AGGREGATE,
        tables={REGISTRY: tables[REGISTRY]},
        parameters={},
        count_column="n",
    )


@pytest.mark.parametrize(
    "literal",
    ["'retail'", "'mining and quarrying'", "'a/b'", "'3.5'", "'R&D: services'"],
)
def test_ordinary_string_literals_are_accepted(
    literal: str, tables: dict[str, TableSchema]
) -> None:
    assert compile_with(literal, tables).tables == (REGISTRY,)


@pytest.mark.parametrize(
    "literal",
    [
        "'/etc/passwd'",
        "'~/secrets.parquet'",
        "'../data/tax/filings.parquet'",
        "'./x'",
        "'C:\\\\data\\\\x'",
        "'https://example.org/leak'",
        "'s3://bucket/key'",
        "'hf:datasets/x/y'",
        "'file:///etc/shadow'",
        "'filings.parquet'",
        "'dump.CSV'",
        "'store.duckdb'",
        "' archive.json.gz'",
    ],
)
def test_literals_naming_files_or_urls_are_refused(
    literal: str, tables: dict[str, TableSchema]
) -> None:
    with pytest.raises(TemplateRejected, match="naming files or URLs"):
        compile_with(literal, tables)


@pytest.mark.parametrize(
    "call", ["getenv('HOME')", "current_setting('threads')", "read_text('x')", "duckdb_settings()"]
)
def test_functions_reading_files_settings_or_metadata_are_named_and_refused(
    call: str, tables: dict[str, TableSchema]
) -> None:
    with pytest.raises(TemplateRejected, match="is never allowed"):
        compile_with(call, tables)
