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
    "Column",
    "CompiledQuery",
    "DisclosedTable",
    "DisclosureRules",
    "DuckDBEngine",
    "ExecutionCategory",
    "ExecutionError",
    "Limits",
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
    "compared_literals",
    "compile_template",
    "synthetic_values",
    "validate_parameters",
    "write_synthetic_csv",
]
