"""Snapshot-verified contribution statistics: skip the per-unit windows only where they are
provably no-ops, for the exact files the reading process read.

The expensive part of a ``dp`` plan is bounding contributions: a ``ROW_NUMBER`` (and maybe a
``DENSE_RANK``) partitioned by the privacy unit, a sort of every row by unit. When no
non-NULL unit of the source has more than ``m`` rows and ``m`` is within the plan's bounds
(``dp_plan.windows_are_no_ops``), those windows keep every row, so the plan without them
(``compile_dp(..., bounded=False)``; clamping stays) gives the identical exact aggregate.

``m`` is a statistic of one snapshot of the source, measured by the sandbox itself
(``unit_rows_query``, NULL units left out exactly as the plan leaves them out) and stored by
the gateway under the snapshot's ``fingerprint``: a digest of the dataset id, format, unit
column, this module's ``VERSION`` and, for every file read, its path, size, ``st_mtime_ns``,
``st_ctime_ns``, ``st_ino`` and ``st_dev``. ``run_dp`` runs in the process that reads the
data (the sandbox worker) and fails closed:

- the fast plan runs only if the fingerprint taken just before the read equals the stored
  one, and its result is used only if the fingerprint taken just after the read equals it
  too; otherwise the full plan runs (the "fallback");
- a statistic is reported only if the fingerprints before and after its read are equal and
  every file's ctime is at least ``SETTLE_NS`` older than the clock before the read. A write,
  truncation, rename or ``utime`` sets a file's ctime to the current time (no unprivileged
  call sets it back), so any change to the file after the statistic was measured — or while
  a fast plan reads it — changes the fingerprint, even one keeping the size and mtime, even
  one landing within the kernel's coarse timestamp tick of the measurement (which the
  settling margin excludes). A file replaced by rename has a new ctime (and usually inode).

Not covered (documented in README.md): someone able to step the system clock back by more
than ``SETTLE_NS`` and collide a ctime to the nanosecond, or to swap a parent directory of
the source and swap it back while a query runs (both need write access to the data or root,
who can change the data anyway); network filesystems whose attributes lag their contents;
filesystems without a kernel-kept change time (vfat, some FUSE).
Spark never gets the fast plan: its reads happen elsewhere and cannot be fingerprinted here.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from sandbox.compile.query import CompiledQuery, TemplateKind
from sandbox.dp.plan import _q
from sandbox.engines import protocol
from sandbox.errors import ExecutionCategory, ExecutionError
from sandbox.results import ResultTable
from sandbox.sources import TableSource

VERSION = "dp-unit-rows/1"  # bump when the plan's reading or NULL-unit treatment changes
SETTLE_NS = 2_000_000_000  # a file's ctime must be this much older than a statistic's read

Path_ = Literal["fast", "full", "fallback"]


def fingerprint(source: TableSource, unit: str, *, now_ns: int | None = None) -> str | None:
    """The snapshot digest of ``source`` for statistics of ``unit``; None when some file is
    not a regular file, cannot be read, or (``now_ns`` given) changed less than
    ``SETTLE_NS`` before ``now_ns``."""
    if not source.is_file:
        return None  # a table elsewhere (Spark) cannot be fingerprinted here
    parts: list[object] = [VERSION, source.dataset_id, source.format, unit]
    for path in (source.file,):  # one named file: TableSource refuses globs and directories
        try:
            st = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        if now_ns is not None and st.st_ctime_ns > now_ns - SETTLE_NS:
            return None
        parts += [str(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    text = "\x1f".join(str(p) for p in parts)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def unit_rows_query(dataset_id: str, unit: str) -> CompiledQuery:
    """The most rows any non-NULL unit has in the source (``max_rows``, 0 for none) and the
    number of rows whose unit is NULL (``null_rows``), grouped as the plan partitions."""
    dept, name = dataset_id.split(".")

    def sql(dialect: str) -> str:
        u = _q(unit, dialect)
        return (
            "SELECT COALESCE(MAX(CASE WHEN u IS NOT NULL THEN c END), 0) AS max_rows, "  # noqa: S608
            "COALESCE(SUM(CASE WHEN u IS NULL THEN c END), 0) AS null_rows "
            f"FROM (SELECT t.{u} AS u, COUNT(*) AS c "
            f"FROM {_q(dept, dialect)}.{_q(name, dialect)} AS t GROUP BY t.{u}) AS p"
        )

    return CompiledQuery(
        kind=TemplateKind.DP,
        source_sql=sql("duckdb"),
        duckdb_sql=sql("duckdb"),
        spark_sql=sql("spark"),
        parameters=(),
        tables=(dataset_id,),
        output_columns=("max_rows", "null_rows"),
        count_column=None,
        group_columns=(),
    )


@dataclass(frozen=True, slots=True)
class DpRun:
    """What the gateway asks: the full plan, and either the fast plan for the snapshot
    ``expected`` (whose stored statistic makes the windows no-ops), or a statistic to
    ``measure`` — with the fast plan and the most rows per unit (``limit``) up to which it
    keeps every row, so a first run can use it once the statistic it just measured allows."""

    dataset_id: str
    unit: str
    full: CompiledQuery
    fast: CompiledQuery | None = None
    expected: str | None = None
    measure: bool = False
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.fast is not None and (self.expected is None) == (self.limit is None):
            raise ValueError("a fast plan comes with a stored snapshot or a limit to measure")
        if self.limit is not None and not (self.measure and type(self.limit) is int):
            raise ValueError("a limit belongs to a measuring run")
        if self.expected is not None and (self.fast is None or self.measure):
            raise ValueError("an expected snapshot belongs to a fast run")
        for query in (self.full, self.fast):
            if query is not None and query.tables != (self.dataset_id,):
                raise ValueError("a dp run reads exactly its dataset")


@dataclass(frozen=True, slots=True)
class DpOutcome:
    table: ResultTable
    path: Path_
    snapshot: str | None = None  # the fingerprint the statistics below were measured on
    max_rows: int | None = None
    null_rows: int | None = None


@runtime_checkable
class DpEngine(Protocol):
    def run_dp(
        self, request: DpRun, sources: Mapping[str, TableSource], params: Mapping[str, object]
    ) -> DpOutcome: ...


class _Runs(Protocol):
    def run(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
    ) -> ResultTable: ...


def run_dp(
    engine: _Runs,
    request: DpRun,
    sources: Mapping[str, TableSource],
    params: Mapping[str, object],
) -> DpOutcome:
    """Run ``request`` with ``engine`` in this process (the one that reads the files)."""
    source = sources[request.dataset_id]
    if request.fast is not None and request.expected is not None:
        if fingerprint(source, request.unit) == request.expected:
            table = engine.run(request.fast, sources, params)
            if fingerprint(source, request.unit) == request.expected:
                return DpOutcome(table, "fast")
        return DpOutcome(engine.run(request.full, sources, params), "fallback")
    if not request.measure:
        return DpOutcome(engine.run(request.full, sources, params), "full")
    before = fingerprint(source, request.unit, now_ns=time.time_ns())
    if before is None:  # too fresh to measure (or not a regular file)
        return DpOutcome(engine.run(request.full, sources, params), "full")
    stats = engine.run(unit_rows_query(request.dataset_id, request.unit), sources, {})
    values = stats.rows[0] if len(stats.rows) == 1 else ()
    if (
        len(values) != 2
        or not all(type(v) is int and v >= 0 for v in values)
        or fingerprint(source, request.unit) != before
    ):
        return DpOutcome(engine.run(request.full, sources, params), "full")
    max_rows, null_rows = values
    assert isinstance(max_rows, int) and isinstance(null_rows, int)
    if request.fast is not None and request.limit is not None and max_rows <= request.limit:
        # the statistic was read from ``before``; so is the fast plan's input if the
        # fingerprint still matches after it (no change to the file in between)
        table = engine.run(request.fast, sources, params)
        if fingerprint(source, request.unit) == before:
            return DpOutcome(table, "fast", before, max_rows, null_rows)
        return DpOutcome(engine.run(request.full, sources, params), "fallback")
    table = engine.run(request.full, sources, params)
    return DpOutcome(table, "full", before, max_rows, null_rows)


# --- over the worker protocol ---------------------------------------------------------


def encode_run(request: DpRun) -> dict[str, Any]:
    return {
        "dataset_id": request.dataset_id,
        "unit": request.unit,
        "full": protocol.encode_query(request.full),
        "fast": None if request.fast is None else protocol.encode_query(request.fast),
        "expected": request.expected,
        "measure": request.measure,
        "limit": request.limit,
    }


def decode_run(data: dict[str, Any]) -> DpRun:
    fast = data.get("fast")
    return DpRun(
        dataset_id=str(data["dataset_id"]),
        unit=str(data["unit"]),
        full=protocol.decode_query(data["full"]),
        fast=None if fast is None else protocol.decode_query(fast),
        expected=None if data.get("expected") is None else str(data["expected"]),
        measure=bool(data.get("measure")),
        limit=data.get("limit"),
    )


def encode_outcome(outcome: DpOutcome) -> dict[str, Any]:
    return {
        "table": protocol.encode_table(outcome.table),
        "path": outcome.path,
        "snapshot": outcome.snapshot,
        "max_rows": outcome.max_rows,
        "null_rows": outcome.null_rows,
    }


def decode_outcome(data: dict[str, Any]) -> DpOutcome:
    path = data.get("path")
    snapshot, max_rows, nulls = data.get("snapshot"), data.get("max_rows"), data.get("null_rows")
    if path not in ("fast", "full", "fallback"):
        raise ExecutionError(ExecutionCategory.INTERNAL)
    table = protocol.decode_table(data["table"])
    if snapshot is None:
        return DpOutcome(table, path)
    if not (isinstance(snapshot, str) and type(max_rows) is int and type(nulls) is int):
        raise ExecutionError(ExecutionCategory.INTERNAL)
    return DpOutcome(table, path, snapshot, max_rows, nulls)
