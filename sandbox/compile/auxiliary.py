"""Queries the sandbox derives itself to check a release; their results never leave.

``sandbox.compile.disclosure`` builds them from a compiled AGGREGATE template (same FROM,
WHERE and GROUP BY, parameters bound by the engine); engines run them on the same connection
as the template, so both see the same data. Kept free of sqlglot so engines import it cheaply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sandbox.disclosure.population import PopulationSketch
from sandbox.disclosure.rules import Contributors, GroupKey
from sandbox.errors import SandboxBug
from sandbox.results import ResultTable

# Names bound by the sandbox itself start with an underscore, which template parameters
# cannot (``params.PARAMETER_NAME``), so they never collide.
POPULATION_KEYS = ("_insitu_key1", "_insitu_key2")


def population_params(secret: str) -> dict[str, object]:
    """The two 64-bit words that key unit hashes, derived from the deployment's secret."""
    digest = hashlib.sha256(b"insitu population sketch\0" + secret.encode()).digest()
    return {
        POPULATION_KEYS[0]: int.from_bytes(digest[:8], "big"),
        POPULATION_KEYS[1]: int.from_bytes(digest[8:16], "big"),
    }


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


@dataclass(frozen=True, slots=True)
class DisclosureQueries:
    """The derived queries of one template (``compile_disclosure``) and how to read them.

    ``dataset_id`` is the table whose rows are counted; ``magnitudes`` are the output columns
    holding SUM/AVG; ``populations`` is None without a unit column.
    """

    dataset_id: str
    group_columns: tuple[str, ...]
    magnitudes: tuple[str, ...]
    top_n: int
    contributors: AuxiliaryQuery
    populations: AuxiliaryQuery | None
    cells_per_hash: int

    @property
    def queries(self) -> tuple[AuxiliaryQuery, ...]:
        if self.populations is None:
            return (self.contributors,)
        return (self.contributors, self.populations)

    def contributors_from(self, table: ResultTable) -> dict[GroupKey, Contributors]:
        """Per group: distinct units (rows without a unit column), totals and top values."""
        width = len(self.group_columns)
        out: dict[GroupKey, Contributors] = {}
        for row in table.rows:
            key = tuple(zip(self.group_columns, row[:width], strict=True))
            units = row[width]
            magnitudes: dict[str, tuple[float, tuple[float, ...]]] = {}
            for i, column in enumerate(self.magnitudes):
                total, top = row[width + 1 + 2 * i], row[width + 2 + 2 * i]
                tops = tuple(_number(v) for v in top) if isinstance(top, list) else ()
                magnitudes[column] = (_number(total), tops)
            if isinstance(units, int) and not isinstance(units, bool):
                out[key] = Contributors(units=units, magnitudes=magnitudes)
        return out

    def sketches_from(
        self, table: ResultTable, keys: Sequence[GroupKey]
    ) -> dict[GroupKey, PopulationSketch]:
        """Per group among ``keys``: the population sketch."""
        width = len(self.group_columns)
        rows: dict[GroupKey, list[tuple[object, object, object, object]]] = {}
        schemes = set()
        for row in table.rows:
            key = tuple(zip(self.group_columns, row[:width], strict=True))
            cell, n, hashes, checks, scheme = row[width:]
            rows.setdefault(key, []).append((cell, n, hashes, checks))
            schemes.add(str(scheme))
        if len(schemes) > 1:
            raise SandboxBug("one population query returned several hash schemes")
        scheme = f"iblt3/duckdb-hash/{schemes.pop()}" if schemes else ""
        wanted = set(keys)
        return {
            key: PopulationSketch.from_rows(self.cells_per_hash, cells, scheme)
            for key, cells in rows.items()
            if key in wanted
        }


def _number(value: object) -> float:
    """A magnitude as a float; an unreadable one counts as infinite (so it dominates)."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return float("inf")
