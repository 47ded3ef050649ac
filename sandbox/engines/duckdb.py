"""The embedded engine: runs one compiled query on a fresh, locked-down DuckDB connection.

The only module that imports ``duckdb``. Per job (see README.md for why each step):

1. ``duckdb.connect(":memory:")`` — a fresh database: no TEMP objects or attachments survive
   from another job, nothing is written to disk;
2. ``CREATE SCHEMA <dept>`` and ``CREATE VIEW <dept>.<name>`` over ``read_parquet`` /
   ``read_csv`` for exactly the datasets the query reads (paths from the catalogue, quoted);
3. ``SET`` the lock-down settings in ``_duckdb_sql.LOCKDOWN`` order, ``lock_configuration``
   last, then read them back and refuse to run if any differs;
4. DuckDB's own parser must see exactly one SELECT with exactly the declared parameters;
5. execute with bound parameters under a timer that interrupts the connection, fetch at
   most ``max_rows + 1`` rows, convert and size-check them; close the connection always.

Driver errors become ExecutionError(category) raised outside the ``except`` block, so the
driver's text (values, paths) travels nowhere.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from functools import cache
from typing import TypeVar

import duckdb

from sandbox.compile.auxiliary import AuxiliaryQuery
from sandbox.compile.query import CompiledQuery
from sandbox.dp.snapshot import DpOutcome, DpRun, run_dp
from sandbox.engines._duckdb_sql import LOCKDOWN, lockdown_values, view_sql
from sandbox.errors import (
    ExecutionCategory,
    ExecutionError,
    QueryTimeout,
    ResourceLimitExceeded,
    SandboxBug,
    SandboxError,
    TemplateRejected,
)
from sandbox.quality.profile import DatasetProfile, ProfileRequest
from sandbox.results import ResultTable, json_value
from sandbox.schema import COLUMN_NAME
from sandbox.sources import DEFAULT_LIMITS, Limits, TableSource

__all__ = ["DuckDBEngine", "Limits", "ResultTable", "TableSource", "available_settings"]

T = TypeVar("T")
_C = ExecutionCategory
_BINDABLE = (bool, int, str, Decimal, date)
_ERRORS: tuple[tuple[type[duckdb.Error], ExecutionCategory], ...] = (
    (duckdb.InterruptException, _C.TIMEOUT),
    (duckdb.OutOfMemoryException, _C.OUT_OF_MEMORY),
    (duckdb.ConversionException, _C.DATA),
    (duckdb.OutOfRangeException, _C.DATA),
    (duckdb.PermissionException, _C.REFUSED),
    (duckdb.ParserException, _C.REFUSED),
    (duckdb.IOException, _C.SOURCE_UNAVAILABLE),
)


@cache
def available_settings() -> frozenset[str]:
    """The setting names this DuckDB build knows (from ``duckdb_settings()``)."""
    with duckdb.connect(":memory:") as con:
        rows = con.execute("SELECT name FROM duckdb_settings()").fetchall()
    return frozenset(str(row[0]) for row in rows)


class _FreshInstances:
    """Fresh in-memory DuckDB instances, opened ahead of jobs and closed after them off the path.

    Opening a database instance costs ~35 ms and closing one ~15 ms; a job should wait for
    neither. Every instance is handed out once and retired after its job: nothing is reused
    between jobs, so the isolation is the same as opening one on demand (which happens when
    none is ready, and always when `spares` is 0). The next spare is opened once the job that
    took the last one has retired it (or found none), not while that job's query runs: on a
    small machine the two would compete for the same cores.
    """

    def __init__(self, config: dict[str, str | int], spares: int) -> None:
        self._config = config
        self._spares = spares
        self._ready: queue.Queue[duckdb.DuckDBPyConnection] = queue.Queue(maxsize=max(spares, 1))
        self._retired: queue.Queue[duckdb.DuckDBPyConnection | None] = queue.Queue()
        self._closed = threading.Event()
        self._refill = threading.Event()  # set: open spares up to `spares`
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def take(self) -> duckdb.DuckDBPyConnection:
        if self._spares > 0 and not self._closed.is_set():
            self._start()
            try:
                return self._ready.get_nowait()
            except queue.Empty:
                self._refill.set()  # ready one for the next job
        return self.open()

    def open(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(":memory:", config=dict(self._config))

    def retire(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._threads and not self._closed.is_set():
            self._retired.put(con)
        else:
            con.close()

    def close(self) -> None:
        self._closed.set()
        self._refill.set()
        self._retired.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        while not self._ready.empty():
            self._ready.get_nowait().close()

    def _start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._refill.set()
            for target, name in ((self._fill, "spares"), (self._drain, "closer")):
                thread = threading.Thread(target=target, name=f"sandbox-duckdb-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _fill(self) -> None:
        while True:
            self._refill.wait()
            self._refill.clear()
            while not self._closed.is_set() and self._ready.qsize() < self._spares:
                self._ready.put(self.open())  # only this thread puts: never blocks
            if self._closed.is_set():
                return

    def _drain(self) -> None:
        while (con := self._retired.get()) is not None:
            con.close()
            self._refill.set()
        while not self._retired.empty():
            leftover = self._retired.get_nowait()
            if leftover is not None:
                leftover.close()


class DuckDBEngine:
    """Runs compiled queries, one fresh locked-down in-memory DuckDB connection per call."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, spares: int = 0) -> None:
        """`spares`: fresh instances to keep ready ahead of jobs (0: open each on demand)."""
        missing = [n for n, required in LOCKDOWN if required and n not in available_settings()]
        if missing:
            raise SandboxBug(f"this DuckDB lacks lock-down settings: {', '.join(missing)}")
        self.limits = limits
        self._instances = _FreshInstances(
            {
                "threads": limits.threads,
                "memory_limit": limits.memory_limit,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
            },
            spares,
        )

    def close(self) -> None:
        """Stop the background threads and close the instances kept ready."""
        self._instances.close()

    def ready(self) -> bool:
        """In the calling process: ready whenever the process is."""
        return True

    def run(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
    ) -> ResultTable:
        """Run ``query`` over ``sources`` (only those it reads are mounted)."""
        mounted = [self._source(sources, table) for table in query.tables]
        self._check_params(query, params)
        return self._guarded(mounted, lambda con: self._run_checked(con, query, params))

    def run_dp(
        self, request: DpRun, sources: Mapping[str, TableSource], params: Mapping[str, object]
    ) -> DpOutcome:
        """A dp plan with snapshot-verified statistics, read in this process (dp_snapshot)."""
        return run_dp(self, request, sources, params)

    @staticmethod
    def _check_params(query: CompiledQuery, params: Mapping[str, object]) -> None:
        if sorted(params) != list(query.parameters):
            raise SandboxBug("run() needs exactly the query's (validated) parameters")
        for name, value in params.items():
            if not isinstance(value, _BINDABLE):
                raise SandboxBug(f"parameter '{name}' was not converted by validate_parameters")

    def _run_checked(
        self, con: duckdb.DuckDBPyConnection, query: CompiledQuery, params: Mapping[str, object]
    ) -> ResultTable:
        self._check_sql(con, query.duckdb_sql, query.parameters)
        table = self._execute(con, query.duckdb_sql, dict(params))
        if tuple(c.lower() for c in table.columns) != tuple(
            c.lower() for c in query.output_columns
        ):
            raise SandboxBug("the result's columns differ from the compiled output columns")
        return table

    def run_with_auxiliary(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
        auxiliary: Sequence[AuxiliaryQuery],
        extra_params: Mapping[str, object] | None = None,
    ) -> tuple[ResultTable, tuple[ResultTable, ...]]:
        """Run ``query`` and then each auxiliary query on the same fresh connection.

        Auxiliary results are for the sandbox's own checks (disclosure control); they are
        capped by their own row limits and bind the template's parameters plus
        ``extra_params`` (names starting with an underscore).
        """
        extra = dict(extra_params or {})
        if any(not name.startswith("_") for name in extra):
            raise SandboxBug("extra parameters of auxiliary queries start with an underscore")
        bindable = {**params, **extra}
        for aux in auxiliary:
            if not set(aux.parameters) <= set(bindable):
                raise SandboxBug(f"auxiliary query {aux.name} needs unbound parameters")

        def work(con: duckdb.DuckDBPyConnection) -> tuple[ResultTable, tuple[ResultTable, ...]]:
            main = self._run_checked(con, query, params)
            results = []
            for aux in auxiliary:
                self._check_sql(con, aux.duckdb_sql, aux.parameters)
                values = {name: bindable[name] for name in aux.parameters}
                results.append(self._execute(con, aux.duckdb_sql, values, aux.max_rows, None))
            return main, tuple(results)

        self._check_params(query, params)
        mounted = [self._source(sources, table) for table in query.tables]
        return self._guarded(mounted, work)

    def distinct_values(
        self, source: TableSource, column: str, limit: int = 1000
    ) -> tuple[str | int, ...]:
        """The sorted distinct non-null values of ``column``, for a ``values_from`` domain."""
        if not COLUMN_NAME.fullmatch(column) or type(limit) is not int or not 0 < limit <= 100_000:
            raise SandboxBug("distinct_values needs a plain column name and a limit in 1..100000")
        dept, name = source.dataset_id.split(".")
        # Identifiers validated above and by TableSource; the limit is a checked int.
        sql = (
            f'SELECT DISTINCT "{column}" FROM "{dept}"."{name}" '  # noqa: S608
            f'WHERE "{column}" IS NOT NULL ORDER BY 1 LIMIT {limit + 1}'
        )
        table = self._guarded([source], lambda con: self._execute(con, sql, {}))
        values = [row[0] for row in table.rows]
        if len(values) > limit:
            raise TemplateRejected(
                f"{source.dataset_id}.{column} has more than {limit} distinct values; too many "
                "for a values_from domain"
            )
        if not all(isinstance(v, str) or type(v) is int for v in values):
            raise TemplateRejected(
                f"{source.dataset_id}.{column} must hold strings or integers for values_from"
            )
        return tuple(v for v in values if isinstance(v, str | int))

    def infer_schema(self, source: TableSource) -> tuple[tuple[str, str], ...]:
        """(column, DuckDB type) of ``source`` as DuckDB reads it, to check a registration."""
        dept, name = source.dataset_id.split(".")
        sql = f'DESCRIBE SELECT * FROM "{dept}"."{name}"'  # noqa: S608 (validated id)
        table = self._guarded([source], lambda con: self._execute(con, sql, {}))
        return tuple((str(row[0]), str(row[1])) for row in table.rows)

    def profile(self, source: TableSource, request: ProfileRequest) -> DatasetProfile:
        """The data-quality profile of ``source``: counts, and MIN/MAX of public columns only."""
        if request.dataset_id != source.dataset_id:
            raise SandboxBug("the profile request names another dataset")
        sql, params = request.sql()

        def work(con: duckdb.DuckDBPyConnection) -> ResultTable:
            self._check_sql(con, sql, tuple(params))
            return self._execute(con, sql, params, 1, None)

        table = self._guarded([source], work)
        if len(table.rows) != 1:
            raise SandboxBug("a profile query returns one row")
        return request.read(table.columns, table.rows[0])

    @staticmethod
    def _source(sources: Mapping[str, TableSource], table: str) -> TableSource:
        source = sources.get(table)
        if source is None or source.dataset_id != table:
            raise SandboxBug(f"no source given for dataset {table}")
        return source

    def _guarded(
        self, sources: Sequence[TableSource], work: Callable[[duckdb.DuckDBPyConnection], T]
    ) -> T:
        """Open, lock, run ``work``, close; turn any driver error into an ExecutionError."""
        category: ExecutionCategory | None = None
        con: duckdb.DuckDBPyConnection | None = None
        timer: threading.Timer | None = None
        try:
            con = self._open(sources)
            # One timer for the whole job (the template and any auxiliary queries).
            timer = threading.Timer(self.limits.timeout_s, con.interrupt)
            timer.daemon = True
            timer.start()
            return work(con)
        except SandboxError:
            raise
        except duckdb.InvalidInputException as exc:  # the text picks a category, never leaves
            text = str(exc).lower()
            category = _C.DATA if "division by zero" in text else _C.INTERNAL
            category = _C.REFUSED if "configuration has been locked" in text else category
        except duckdb.Error as exc:
            category = next((c for kind, c in _ERRORS if isinstance(exc, kind)), _C.INTERNAL)
        except Exception:  # a conversion surprise must not leak its message either
            category = _C.INTERNAL
        finally:
            if timer is not None:
                timer.cancel()
            if con is not None:
                self._instances.retire(con)
        if category is _C.TIMEOUT:
            raise QueryTimeout(self.limits.timeout_s)
        if category is _C.OUT_OF_MEMORY:
            raise ResourceLimitExceeded(category, self.limits.memory_limit)
        raise ExecutionError(category)

    def _open(self, sources: Sequence[TableSource]) -> duckdb.DuckDBPyConnection:
        limits = self.limits
        con = self._instances.take()
        try:
            # one script (views, then the settings in LOCKDOWN order), then read back
            statements = [statement for source in sources for statement in view_sql(source)]
            values = lockdown_values(limits, sources)
            statements += [
                f"SET {name} = {values[name]}"
                for name, required in LOCKDOWN
                if required or name in available_settings()
            ]
            con.execute(";\n".join(statements))
            _verify_lockdown(con, sources)
        except BaseException:
            con.close()
            raise
        return con

    @staticmethod
    def _check_sql(con: duckdb.DuckDBPyConnection, sql: str, parameters: Sequence[str]) -> None:
        """Defence in depth: DuckDB's parser must agree this is one SELECT."""
        try:
            statements = con.extract_statements(sql)
        except duckdb.ParserException:
            statements = []
        if (
            len(statements) != 1
            or statements[0].type != duckdb.StatementType.SELECT
            or set(statements[0].named_parameters) != set(parameters)
        ):
            raise ExecutionError(ExecutionCategory.REFUSED)

    def _execute(
        self,
        con: duckdb.DuckDBPyConnection,
        sql: str,
        params: dict[str, object],
        max_rows: int | None = None,
        max_bytes: int | None = -1,
    ) -> ResultTable:
        """Execute (the job's timer runs); cap rows, and bytes unless ``max_bytes`` is None."""
        limits = self.limits
        max_rows = limits.max_rows if max_rows is None else max_rows
        max_bytes = limits.max_bytes if max_bytes == -1 else max_bytes
        con.execute(sql, params)
        description = con.description or []
        raw_rows = con.fetchmany(max_rows + 1)
        if len(raw_rows) > max_rows:
            raise ResourceLimitExceeded(ExecutionCategory.ROW_LIMIT, f"{max_rows} rows")
        rows: list[tuple[object, ...]] = []
        size = 0
        for raw in raw_rows:
            row = tuple(json_value(v) for v in raw)
            if max_bytes is not None:
                size += len(json.dumps(row, ensure_ascii=False).encode())
                if size > max_bytes:
                    raise ResourceLimitExceeded(ExecutionCategory.BYTE_LIMIT, f"{max_bytes} bytes")
            rows.append(row)
        return ResultTable(
            columns=tuple(str(d[0]) for d in description),
            types=tuple(str(d[1]) for d in description),
            rows=tuple(rows),
        )


def _verify_lockdown(con: duckdb.DuckDBPyConnection, sources: Sequence[TableSource]) -> None:
    """Read the settings back; refuse to run on a connection that is not locked down."""
    expected: dict[str, object] = {
        "enable_external_access": False,
        "lock_configuration": True,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "temp_directory": "",
        "allowed_directories": [],
    }
    names = [*expected, "allowed_paths"]
    selected = ", ".join(f"current_setting('{name}')" for name in names)
    actual = con.execute(f"SELECT {selected}").fetchone()
    if actual is None:
        raise SandboxBug("DuckDB settings could not be read back")
    for name, value in zip(expected, actual, strict=False):
        if value != expected[name]:
            raise SandboxBug(f"DuckDB setting {name} did not take effect")
    if sorted(actual[-1]) != sorted(str(s.file) for s in sources):
        raise SandboxBug("DuckDB setting allowed_paths did not take effect")
