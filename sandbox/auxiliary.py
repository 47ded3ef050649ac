"""Queries the sandbox derives itself to check a release; their results never leave.

``sandbox.compile_disclosure`` builds them from a compiled AGGREGATE template (same FROM,
WHERE and GROUP BY, parameters bound by the engine); engines run them on the same connection
as the template, so both see the same data. Kept free of sqlglot so engines import it cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sandbox.errors import SandboxBug

# Names bound by the sandbox itself start with an underscore, which template parameters
# cannot (``params.PARAMETER_NAME``), so they never collide.
POPULATION_KEY = "_insitu_population_key"
_BOUND_NAME = re.compile(r"_?[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class AuxiliaryQuery:
    """One derived query: DuckDB SQL binding ``$name`` parameters, and a row cap."""

    name: str
    duckdb_sql: str
    parameters: tuple[str, ...]
    output_columns: tuple[str, ...]
    max_rows: int

    def __post_init__(self) -> None:
        if not all(_BOUND_NAME.fullmatch(p) for p in self.parameters):
            raise SandboxBug("AuxiliaryQuery parameters must be valid names")
        if list(self.parameters) != sorted(set(self.parameters)):
            raise SandboxBug("AuxiliaryQuery.parameters must be sorted and unique")
        if type(self.max_rows) is not int or self.max_rows < 1:
            raise SandboxBug("AuxiliaryQuery.max_rows must be a positive integer")
