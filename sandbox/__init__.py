"""insitu sandbox: compile templates, validate parameters, run them locked down, control
disclosure, plan and measure differential privacy. Never imports gateway, policies or audit.
See README.md.

The gateway imports every name it uses from this root. Names whose modules pull in a heavy
library (sqlglot for compilation, DuckDB for the engines, OpenDP for mechanisms) load lazily on
first use, so `import sandbox` (and so `import gateway.errors`) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sandbox.compile.auxiliary import DisclosureQueries, population_params
from sandbox.compile.query import CompiledQuery, TemplateKind
from sandbox.disclosure.population import PopulationSketch, difference_size
from sandbox.disclosure.rules import (
    DisclosedTable,
    DisclosureRules,
    GroupKey,
    WithheldCell,
    apply_disclosure,
    group_key,
)
from sandbox.dp.check import check_against as check_dp_plan
from sandbox.dp.plan import INTEGER_TYPES as DP_INTEGER_TYPES
from sandbox.dp.plan import (
    DpBudget,
    DpFilter,
    DpMeasure,
    DpPlan,
    MeasureKind,
    compile_dp,
    no_op_limit,
    windows_are_no_ops,
)
from sandbox.engines.base import Engine
from sandbox.engines.oslimits import OsLimits, default_address_space, parse_size
from sandbox.errors import (
    ExecutionCategory,
    ExecutionError,
    ParameterError,
    QueryTimeout,
    ResourceLimitExceeded,
    SandboxBug,
    SandboxError,
    TemplateRejected,
)
from sandbox.params._domains import domain_text
from sandbox.params.spec import ParameterSpec, ParamType, validate_parameters
from sandbox.quality.profile import ColumnCheck, ColumnProfile, DatasetProfile, ProfileRequest
from sandbox.results import ResultTable
from sandbox.schema import Column, Sensitivity, TableSchema
from sandbox.sources import JdbcConnection, Limits, TableSource, check_spark_remote
from sandbox.synthetic import synthetic_values, write_synthetic_csv

if TYPE_CHECKING:
    from sandbox.compile.disclosure import base_table, derive_disclosure_queries, uniqueness_query
    from sandbox.compile.template import compared_literals, compile_template
    from sandbox.disclosure.atoms import Partition, cells_from_bytes, cells_to_bytes, small_atoms
    from sandbox.disclosure.atoms import refined as refined_partition
    from sandbox.disclosure.atoms import refines as refines_partition
    from sandbox.dp.measure import DpRelease, Mechanism
    from sandbox.dp.measure import mechanism as dp_mechanism
    from sandbox.dp.snapshot import DpEngine, DpRun
    from sandbox.dp.snapshot import fingerprint as snapshot_fingerprint
    from sandbox.engines.duckdb import DuckDBEngine
    from sandbox.engines.process import ProcessEngine
    from sandbox.engines.sorter import make_sorted_copy
    from sandbox.engines.sorter import stale_builds as stale_sorted_builds
    from sandbox.engines.spark import SparkEngine

_LAZY = {
    "base_table": ("sandbox.compile.disclosure", "base_table"),
    "derive_disclosure_queries": ("sandbox.compile.disclosure", "derive_disclosure_queries"),
    "uniqueness_query": ("sandbox.compile.disclosure", "uniqueness_query"),
    "compared_literals": ("sandbox.compile.template", "compared_literals"),
    "compile_template": ("sandbox.compile.template", "compile_template"),
    "Partition": ("sandbox.disclosure.atoms", "Partition"),
    "cells_from_bytes": ("sandbox.disclosure.atoms", "cells_from_bytes"),
    "cells_to_bytes": ("sandbox.disclosure.atoms", "cells_to_bytes"),
    "refined_partition": ("sandbox.disclosure.atoms", "refined"),
    "refines_partition": ("sandbox.disclosure.atoms", "refines"),
    "small_atoms": ("sandbox.disclosure.atoms", "small_atoms"),
    "DpRelease": ("sandbox.dp.measure", "DpRelease"),
    "Mechanism": ("sandbox.dp.measure", "Mechanism"),
    "dp_mechanism": ("sandbox.dp.measure", "mechanism"),
    "DpEngine": ("sandbox.dp.snapshot", "DpEngine"),
    "DpRun": ("sandbox.dp.snapshot", "DpRun"),
    "snapshot_fingerprint": ("sandbox.dp.snapshot", "fingerprint"),
    "DuckDBEngine": ("sandbox.engines.duckdb", "DuckDBEngine"),
    "ProcessEngine": ("sandbox.engines.process", "ProcessEngine"),
    "SparkEngine": ("sandbox.engines.spark", "SparkEngine"),
    "make_sorted_copy": ("sandbox.engines.sorter", "make_sorted_copy"),
    "stale_sorted_builds": ("sandbox.engines.sorter", "stale_builds"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


__all__ = [
    "DP_INTEGER_TYPES",
    "Column",
    "ColumnCheck",
    "ColumnProfile",
    "CompiledQuery",
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
