"""The public surface and the import boundaries of the sandbox package."""

from __future__ import annotations

import ast
from pathlib import Path

import sandbox

PACKAGE = Path(sandbox.__file__).parent


def test_public_exports_are_pinned() -> None:
    assert sorted(sandbox.__all__) == [
        "Column",
        "ColumnCheck",
        "ColumnProfile",
        "CompiledQuery",
        "DP_INTEGER_TYPES",
        "DatasetProfile",
        "DisclosedTable",
        "DisclosureQueries",
        "DisclosureRules",
        "DpBudget",
        "DpEngine",
        "DpFilter",
        "DpMeasure",
        "DpPlan",
        "DpRelease",
        "DpRun",
        "DuckDBEngine",
        "Engine",
        "ExecutionCategory",
        "ExecutionError",
        "GroupKey",
        "JdbcConnection",
        "Limits",
        "MeasureKind",
        "Mechanism",
        "OsLimits",
        "ParamType",
        "ParameterError",
        "ParameterSpec",
        "Partition",
        "PopulationSketch",
        "ProcessEngine",
        "ProfileRequest",
        "QueryTimeout",
        "ResourceLimitExceeded",
        "ResultTable",
        "SandboxBug",
        "SandboxError",
        "Sensitivity",
        "SparkEngine",
        "TableSchema",
        "TableSource",
        "TemplateKind",
        "TemplateRejected",
        "WithheldCell",
        "apply_disclosure",
        "base_table",
        "cells_from_bytes",
        "cells_to_bytes",
        "check_dp_plan",
        "check_spark_remote",
        "compared_literals",
        "compile_dp",
        "compile_template",
        "default_address_space",
        "derive_disclosure_queries",
        "difference_size",
        "domain_text",
        "dp_mechanism",
        "group_key",
        "make_sorted_copy",
        "no_op_limit",
        "parse_size",
        "population_params",
        "refined_partition",
        "refines_partition",
        "small_atoms",
        "snapshot_fingerprint",
        "stale_sorted_builds",
        "synthetic_values",
        "uniqueness_query",
        "validate_parameters",
        "windows_are_no_ops",
        "write_synthetic_csv",
    ]
    for name in sandbox.__all__:
        assert hasattr(sandbox, name)


def test_error_tree() -> None:
    assert issubclass(sandbox.QueryTimeout, sandbox.ExecutionError)
    assert issubclass(sandbox.ResourceLimitExceeded, sandbox.ExecutionError)
    for error in (
        sandbox.TemplateRejected,
        sandbox.ParameterError,
        sandbox.ExecutionError,
        sandbox.SandboxBug,
    ):
        assert issubclass(error, sandbox.SandboxError)


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_third_party_libraries_stay_in_their_modules() -> None:
    allowed = {
        "duckdb": {"duckdb_engine.py"},
        "sqlglot": {
            "compile.py",
            "compile_safety.py",
            "compile_shape.py",
            "compile_aggregate.py",
            "compile_verify.py",
            "compile_list.py",
            "compile_disclosure.py",
        },
    }
    for path in PACKAGE.glob("*.py"):
        imported = imports_of(path)
        assert not imported & {"gateway", "policies", "audit"}, path.name
        for library, homes in allowed.items():
            if library in imported:
                assert path.name in homes, f"{path.name} imports {library}"
