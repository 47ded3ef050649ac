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
    holding SUM/AVG; ``populations``, ``members`` and ``census`` are None without a unit
    column. Results are read by column name (``units``, ``total0``, ``hashes`` …), so a
    ``census`` result reads as a ``contributors`` and as a ``members`` result; a missing
    column is a SandboxBug (fail closed).
    """

    dataset_id: str
    group_columns: tuple[str, ...]
    magnitudes: tuple[str, ...]
    top_n: int
    contributors: AuxiliaryQuery
    populations: AuxiliaryQuery | None
    cells_per_hash: int
    members: AuxiliaryQuery | None = None
    census: AuxiliaryQuery | None = None
    dispersions: tuple[str, ...] = ()
    dispersion_query: AuxiliaryQuery | None = None

    @property
    def queries(self) -> tuple[AuxiliaryQuery, ...]:
        """Every derived query: contributors, then (with a unit column) populations, members
        and census, then (with a dispersion output) dispersions, in this order."""
        found = [self.contributors]
        if self.populations is not None and self.members is not None:
            found += [self.populations, self.members]
        if self.census is not None:
            found.append(self.census)
        if self.dispersion_query is not None:
            found.append(self.dispersion_query)
        return tuple(found)

    @property
    def job_queries(self) -> tuple[AuxiliaryQuery, ...]:
        """What a job runs: with a unit column the ``census`` alone (the contributor figures
        and the member hashes in one pass; the sketches are made from the hashes,
        ``sketches_from_members``), else ``contributors``; then ``dispersions`` if any.
        ``contributors``, ``members`` and ``populations`` stay as the references tests hold
        the census and the sketches to, on DuckDB and on Spark."""
        found = [self.census if self.census is not None else self.contributors]
        if self.dispersion_query is not None:
            found.append(self.dispersion_query)
        return tuple(found)

    def by_name(
        self, results: Sequence[ResultTable], queries: Sequence[AuxiliaryQuery] | None = None
    ) -> dict[str, ResultTable]:
        """The results of ``queries`` (default: ``self.queries``), by query name."""
        ran = self.queries if queries is None else queries
        if len(results) != len(ran):
            raise SandboxBug("one result per derived query")
        return {q.name: r for q, r in zip(ran, results, strict=True)}

    def members_from(self, table: ResultTable, keys: Sequence[GroupKey]) -> dict[GroupKey, Hashes]:
        """Per group among ``keys``: the sorted keyed hashes of its units (from a ``census``
        or a ``members`` result, its hashes packed by the engine: ``pack_member_hashes``)."""
        from sandbox.disclosure.atoms import hashes_from_bytes  # noqa: PLC0415 - numpy, lazily

        group, (units, hashes) = self._keys(table), _positions(table, ("units", "hashes"))
        wanted = set(keys)
        out: dict[GroupKey, Hashes] = {}
        for row in table.rows:
            key = tuple(zip(self.group_columns, (row[i] for i in group), strict=True))
            if key not in wanted:
                continue
            packed = row[hashes]
            if not isinstance(packed, bytes):
                raise SandboxBug("member hashes are packed (pack_member_hashes)")
            found = hashes_from_bytes(packed)
            if found.size != row[units]:
                raise SandboxBug("a group's member hashes do not match its units")
            out[key] = found
        return out

    def contributors_from(
        self, table: ResultTable, dispersions: ResultTable | None = None
    ) -> dict[GroupKey, Contributors]:
        """Per group: distinct units (rows without a unit column), totals and top values of
        each SUM/AVG (from a ``contributors`` or a ``census`` result) and (from
        ``dispersions``) of each dispersion's squared deviations.

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
        """Per group of ``members`` (``members_from`` of the same ``census`` or ``members``
        result): its population sketch, made from the member hashes as the ``populations``
        query makes it in SQL, under the scheme the query reported."""
        (column,) = _positions(table, ("scheme",))
        schemes = {str(row[column]) for row in table.rows}
        if len(schemes) > 1:
            raise SandboxBug("one members query returned several hash schemes")
        scheme = sketch_scheme(schemes.pop()) if schemes else ""
        keys = list(members)
        made = PopulationSketch.from_hash_arrays(
            self.cells_per_hash, [members[key] for key in keys], scheme
        )
        return dict(zip(keys, made, strict=True))

    def sketches_from(
        self, table: ResultTable, keys: Sequence[GroupKey]
    ) -> dict[GroupKey, PopulationSketch]:
        """Per group among ``keys``: the population sketch, from a ``populations`` result."""
        group = self._keys(table)
        columns = _positions(table, ("cell", "n", "keys", "checks", "scheme"))
        rows: dict[GroupKey, list[tuple[object, object, object, object]]] = {}
        schemes = set()
        for row in table.rows:
            key = tuple(zip(self.group_columns, (row[i] for i in group), strict=True))
            cell, n, hashes, checks, scheme = (row[i] for i in columns)
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

    def _keys(self, table: ResultTable) -> list[int]:
        return _positions(table, _key_columns(self.group_columns))


def pack_member_hashes(table: ResultTable) -> ResultTable:
    """A derived query's result with its ``hashes`` (if it has them) packed: each group's text
    of 16 hex digits a unit as 8 bytes a unit, big-endian, what ``members_from`` reads.

    Engines pack where they run the query (the worker process for DuckDB), so the gateway
    neither scans the text as JSON nor converts it. A NULL (``STRING_AGG`` over no rows, a
    group-less template) packs as no units.
    """
    if "hashes" not in table.columns:
        return table
    at = table.columns.index("hashes")
    rows = []
    for row in table.rows:
        text = row[at]
        if text is not None and not isinstance(text, str):
            raise SandboxBug("member hashes are a text")
        try:
            packed = bytes.fromhex(text or "")
        except ValueError:
            raise SandboxBug("member hashes are hex digits") from None
        rows.append((*row[:at], packed, *row[at + 1 :]))
    return ResultTable(table.columns, table.types, tuple(rows))


def _key_columns(group_columns: Sequence[str]) -> tuple[str, ...]:
    """The names derived queries give the group keys: ``g0``, ``g1`` … in the template's order."""
    return tuple(f"g{i}" for i in range(len(group_columns)))


def _positions(table: ResultTable, names: Sequence[str]) -> list[int]:
    """Where each of ``names`` is among ``table``'s columns; a missing one is a SandboxBug."""
    found = {column.lower(): i for i, column in enumerate(table.columns)}
    missing = [name for name in names if name not in found]
    if missing:
        raise SandboxBug(f"a derived query's result lacks column(s) {', '.join(missing)}")
    return [found[name] for name in names]


def _figures(
    group_columns: Sequence[str], columns: Sequence[str], table: ResultTable | None
) -> list[tuple[GroupKey, tuple[int, dict[str, tuple[float, tuple[float, ...]]]]]]:
    """Rows of a contributors-shaped result (``contributors``, ``census``, ``dispersions``):
    group key, units, per column (total, tops); the figures of ``columns[i]`` are read from
    ``total{i}`` and ``top{i}``."""
    if table is None:
        return []
    group = _positions(table, _key_columns(group_columns))
    (units_at,) = _positions(table, ("units",))
    at = _positions(table, [f"{kind}{i}" for i in range(len(columns)) for kind in ("total", "top")])
    out = []
    for row in table.rows:
        key = tuple(zip(group_columns, (row[i] for i in group), strict=True))
        units = row[units_at]
        figures: dict[str, tuple[float, tuple[float, ...]]] = {}
        for i, column in enumerate(columns):
            total, top = row[at[2 * i]], row[at[2 * i + 1]]
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
