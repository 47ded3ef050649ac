"""Queries the sandbox derives itself to check a release; their results never leave.

``sandbox.compile.disclosure`` builds them from a compiled AGGREGATE template (same FROM,
WHERE and GROUP BY, parameters bound by the engine); engines run them on the same connection
as the template, so both see the same data. Kept free of sqlglot so engines import it cheaply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.disclosure.population import MASK, PopulationSketch, sketch_scheme
from sandbox.disclosure.rules import Contributors, GroupKey
from sandbox.errors import SandboxBug
from sandbox.results import ResultTable

if TYPE_CHECKING:
    from sandbox.disclosure.atoms import Hashes

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
    """One derived query: DuckDB SQL binding ``$name`` parameters (and the same query as Spark
    SQL binding ``:name``), and a row cap."""

    name: str
    duckdb_sql: str
    parameters: tuple[str, ...]
    output_columns: tuple[str, ...]
    max_rows: int
    spark_sql: str = ""

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
    holding SUM/AVG; ``populations`` and ``members`` are None without a unit column.
    """

    dataset_id: str
    group_columns: tuple[str, ...]
    magnitudes: tuple[str, ...]
    top_n: int
    contributors: AuxiliaryQuery
    populations: AuxiliaryQuery | None
    cells_per_hash: int
    members: AuxiliaryQuery | None = None
    dispersions: tuple[str, ...] = ()
    dispersion_query: AuxiliaryQuery | None = None

    @property
    def queries(self) -> tuple[AuxiliaryQuery, ...]:
        """Every derived query: contributors, then (with a unit column) populations and
        members, then (with a dispersion output) dispersions, in this order."""
        found = [self.contributors]
        if self.populations is not None and self.members is not None:
            found += [self.populations, self.members]
        if self.dispersion_query is not None:
            found.append(self.dispersion_query)
        return tuple(found)

    @property
    def job_queries(self) -> tuple[AuxiliaryQuery, ...]:
        """What a job runs: ``queries`` without ``populations``, whose sketches a job
        computes from the member hashes instead (``sketches_from_members``; tests pin the
        two equal on DuckDB and on Spark)."""
        return tuple(q for q in self.queries if q is not self.populations)

    def by_name(
        self, results: Sequence[ResultTable], queries: Sequence[AuxiliaryQuery] | None = None
    ) -> dict[str, ResultTable]:
        """The results of ``queries`` (default: ``self.queries``), by query name."""
        ran = self.queries if queries is None else queries
        if len(results) != len(ran):
            raise SandboxBug("one result per derived query")
        return {q.name: r for q, r in zip(ran, results, strict=True)}

    def members_from(self, table: ResultTable, keys: Sequence[GroupKey]) -> dict[GroupKey, Hashes]:
        """Per group among ``keys``: the sorted keyed hashes of its units."""
        from sandbox.disclosure.atoms import hashes_from_hex  # noqa: PLC0415 - numpy, lazily

        width = len(self.group_columns)
        wanted = set(keys)
        out: dict[GroupKey, Hashes] = {}
        for row in table.rows:
            key = tuple(zip(self.group_columns, row[:width], strict=True))
            n, text = row[width : width + 2]
            if key not in wanted:
                continue
            if not isinstance(text, str):
                raise SandboxBug("member hashes are a text")
            hashes = hashes_from_hex(text)
            if hashes.size != n:
                raise SandboxBug("a group's member hashes do not match its units")
            out[key] = hashes
        return out

    def contributors_from(
        self, table: ResultTable, dispersions: ResultTable | None = None
    ) -> dict[GroupKey, Contributors]:
        """Per group: distinct units (rows without a unit column), totals and top values of
        each SUM/AVG and (from ``dispersions``) of each dispersion's squared deviations.

        A group with a dispersion output but no dispersion figures is left out (so it is
        withheld: fail closed).
        """
        out = {
            key: Contributors(units=units, magnitudes=figures)
            for key, (units, figures) in _figures(self.group_columns, self.magnitudes, table)
        }
        if not self.dispersions:
            return out
        spread = dict(_figures(self.group_columns, self.dispersions, dispersions))
        return {
            key: Contributors(c.units, {**c.magnitudes, **spread[key][1]})
            for key, c in out.items()
            if key in spread
        }

    def sketches_from_members(
        self, table: ResultTable, members: Mapping[GroupKey, Hashes]
    ) -> dict[GroupKey, PopulationSketch]:
        """Per group of ``members`` (``members_from`` of the same ``members`` result): its
        population sketch, made from the member hashes as the ``populations`` query makes
        it in SQL, under the scheme the members query reported."""
        width = len(self.group_columns)
        schemes = {str(row[width + 2]) for row in table.rows}
        if len(schemes) > 1:
            raise SandboxBug("one members query returned several hash schemes")
        scheme = sketch_scheme(schemes.pop()) if schemes else ""
        return {
            key: PopulationSketch.from_hash_array(self.cells_per_hash, hashes, scheme)
            for key, hashes in members.items()
        }

    def sketches_from(
        self, table: ResultTable, keys: Sequence[GroupKey]
    ) -> dict[GroupKey, PopulationSketch]:
        """Per group among ``keys``: the population sketch, from a ``populations`` result."""
        width = len(self.group_columns)
        rows: dict[GroupKey, list[tuple[object, object, object, object]]] = {}
        schemes = set()
        for row in table.rows:
            key = tuple(zip(self.group_columns, row[:width], strict=True))
            cell, n, hashes, checks, scheme = row[width:]
            if isinstance(hashes, int) and isinstance(checks, int):  # Spark's are signed
                hashes, checks = hashes & MASK, checks & MASK
            rows.setdefault(key, []).append((cell, n, hashes, checks))
            schemes.add(str(scheme))
        if len(schemes) > 1:
            raise SandboxBug("one population query returned several hash schemes")
        scheme = sketch_scheme(schemes.pop()) if schemes else ""
        wanted = set(keys)
        return {
            key: PopulationSketch.from_rows(self.cells_per_hash, cells, scheme)
            for key, cells in rows.items()
            if key in wanted
        }


def _figures(
    group_columns: Sequence[str], columns: Sequence[str], table: ResultTable | None
) -> list[tuple[GroupKey, tuple[int, dict[str, tuple[float, tuple[float, ...]]]]]]:
    """Rows of a contributors-shaped result: group key, units, per column (total, tops)."""
    width = len(group_columns)
    out = []
    for row in table.rows if table is not None else ():
        key = tuple(zip(group_columns, row[:width], strict=True))
        units = row[width]
        figures: dict[str, tuple[float, tuple[float, ...]]] = {}
        for i, column in enumerate(columns):
            total, top = row[width + 1 + 2 * i], row[width + 2 + 2 * i]
            tops = tuple(_number(v) for v in top) if isinstance(top, list) else ()
            figures[column] = (_number(total), tops)
        if isinstance(units, int) and not isinstance(units, bool):
            out.append((key, (units, figures)))
    return out


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
