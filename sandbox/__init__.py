"""insitu sandbox: compile templates, validate parameters, run them locked down, control
disclosure. Never imports gateway, policies or audit. See README.md.
"""

from sandbox.compile import compared_literals, compile_template
from sandbox.disclosure import (
    DisclosedTable,
    DisclosureRules,
    WithheldCell,
    apply_disclosure,
)
from sandbox.dp_check import check_against as check_dp_plan
from sandbox.dp_measure import DpRelease, Mechanism
from sandbox.dp_measure import mechanism as dp_mechanism
from sandbox.dp_plan import INTEGER_TYPES as DP_INTEGER_TYPES
from sandbox.dp_plan import (
    DpBudget,
    DpFilter,
    DpMeasure,
    DpPlan,
    MeasureKind,
    compile_dp,
)
from sandbox.duckdb_engine import DuckDBEngine
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
from sandbox.params import ParameterSpec, ParamType, validate_parameters
from sandbox.query import CompiledQuery, TemplateKind
from sandbox.results import ResultTable
from sandbox.schema import Column, Sensitivity, TableSchema
from sandbox.sources import Limits, TableSource
from sandbox.synthetic import synthetic_values, write_synthetic_csv

__all__ = [
    "DP_INTEGER_TYPES",
    "Column",
    "CompiledQuery",
    "DisclosedTable",
    "DisclosureRules",
    "DpBudget",
    "DpFilter",
    "DpMeasure",
    "DpPlan",
    "DpRelease",
    "DuckDBEngine",
    "ExecutionCategory",
    "ExecutionError",
    "Limits",
    "MeasureKind",
    "Mechanism",
    "ParamType",
    "ParameterError",
    "ParameterSpec",
    "QueryTimeout",
    "ResourceLimitExceeded",
    "ResultTable",
    "SandboxBug",
    "SandboxError",
    "Sensitivity",
    "TableSchema",
    "TableSource",
    "TemplateKind",
    "TemplateRejected",
    "WithheldCell",
    "apply_disclosure",
    "check_dp_plan",
    "compared_literals",
    "compile_dp",
    "compile_template",
    "dp_mechanism",
    "synthetic_values",
    "validate_parameters",
    "write_synthetic_csv",
]
