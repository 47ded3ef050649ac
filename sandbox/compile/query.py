"""A compiled template: the engine-ready SQL and the facts the gateway and engines need.

Produced only by ``compile_template``; engines take it as given but re-check
what they can with their own parser (defence in depth). Kept free of sqlglot so engines can
import it without the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sandbox.errors import SandboxBug
from sandbox.params.spec import PARAMETER_NAME
from sandbox.schema import COLUMN_NAME, dataset_id_problem


class TemplateKind(StrEnum):
    AGGREGATE = "aggregate"
    DP = "dp"
    VERIFY = "verify"
    LIST = "list"


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """One template's SQL, checked and rendered for each engine.

    ``duckdb_sql`` binds parameters as ``$name``, ``spark_sql`` as ``:name``; neither text
    ever contains a parameter value. ``parameters`` and ``tables`` are sorted.
    ``group_columns`` are the output columns that identify a released group (AGGREGATE);
    ``count_column`` is the output column holding each group's COUNT.
    ``key_parameters`` (VERIFY) are the parameters that carry the requester's keys, one per
    slot, in the order of the keys' positions; the other parameters are the template's own.
    ``key_column`` (VERIFY) is the (dataset id, column) the keys are looked up in, when the
    template compares the key with one plain column of one of its tables.
    """

    kind: TemplateKind
    source_sql: str
    duckdb_sql: str
    spark_sql: str
    parameters: tuple[str, ...]
    tables: tuple[str, ...]
    output_columns: tuple[str, ...]
    count_column: str | None
    group_columns: tuple[str, ...]
    key_parameters: tuple[str, ...] = ()
    key_column: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "kind", TemplateKind(self.kind))
        except ValueError:
            raise SandboxBug("CompiledQuery.kind is not a TemplateKind") from None
        for name in self.parameters:
            if not PARAMETER_NAME.fullmatch(name):
                raise SandboxBug(f"CompiledQuery parameter {name!r} is not a valid name")
        if list(self.parameters) != sorted(set(self.parameters)):
            raise SandboxBug("CompiledQuery.parameters must be sorted and unique")
        for table in self.tables:
            problem = dataset_id_problem(table)
            if problem is not None:
                raise SandboxBug(f"CompiledQuery table {problem}")
        if list(self.tables) != sorted(set(self.tables)) or not self.tables:
            raise SandboxBug("CompiledQuery.tables must be non-empty, sorted and unique")
        outputs = self.output_columns
        if not outputs or len({c.lower() for c in outputs}) != len(outputs):
            raise SandboxBug("CompiledQuery.output_columns must be non-empty and unique")
        if self.count_column is not None and self.count_column not in outputs:
            raise SandboxBug("CompiledQuery.count_column must be one of the output columns")
        if not set(self.group_columns) <= set(outputs) - {self.count_column}:
            raise SandboxBug("CompiledQuery.group_columns must be non-count output columns")
        self._check_keys()

    def _check_keys(self) -> None:
        if not set(self.key_parameters) <= set(self.parameters):
            raise SandboxBug("CompiledQuery.key_parameters must be parameters of the query")
        if self.key_parameters and self.kind is not TemplateKind.VERIFY:
            raise SandboxBug("only VERIFY queries carry key parameters")
        key_column = self.key_column
        if key_column is None:
            return
        if self.kind is not TemplateKind.VERIFY or len(key_column) != 2:
            raise SandboxBug("only VERIFY queries name a key column: (dataset, column)")
        table, column = key_column
        if table not in self.tables or not COLUMN_NAME.fullmatch(column):
            raise SandboxBug("CompiledQuery.key_column names a table and a plain column")
