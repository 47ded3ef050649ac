"""The embedded engine: runs one compiled query on a locked-down DuckDB connection of its own.

The only module that imports ``duckdb``. Per job (see README.md for why each step):

1. a fresh connection no other job has used, to an in-memory database (nothing is written to
   disk) whose catalogue holds exactly
2. ``CREATE SCHEMA <dept>`` and ``CREATE VIEW <dept>.<name>`` over ``read_parquet`` /
   ``read_csv`` for exactly the datasets the query reads (paths from the catalogue, quoted);
3. ``SET`` the lock-down settings in ``_duckdb_sql.LOCKDOWN`` order, ``lock_configuration``
   last, then read them back on the job's connection and refuse to run if any differs;
4. DuckDB's own parser must see exactly one SELECT with exactly the declared parameters;
5. execute with bound parameters under a timer that interrupts the connection, fetch at
   most ``max_rows + 1`` rows, convert and size-check them; close the connection always.

A database and its views are made for a set of sources (their files' identities and the
limits) and then serve up to ``CONNECTIONS_PER_INSTANCE`` jobs over exactly that set, one
connection each: the connections are made and given their session settings *before* the
configuration is locked (a connection made after the lock could not be), each is handed to
one job only and closed after it, and a job that fails or times out retires its database
(`_Locked`). What jobs share is what is read-only to a SELECT: the views, the locked
settings, DuckDB's caches of the same files. Opening a database and closing it were half
the sandbox's CPU per small job under load. When a database has served its last job, its
successor over the same sources is made in the background (`_Successors`), so the next job
takes it instead of making it on its own path (every 16th job paid 30-60 ms); a job that
arrives while it is being made waits for it rather than making a second one.

Driver errors become ExecutionError(category) raised outside the ``except`` block, so the
driver's text (values, paths) travels nowhere.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path
from stat import S_ISREG
from typing import TypeVar

import duckdb

from sandbox.compile.auxiliary import AuxiliaryQuery, pack_member_hashes
from sandbox.compile.query import CompiledQuery
from sandbox.dp.snapshot import DpOutcome, DpRun, run_dp
from sandbox.engines._duckdb_sql import LOCKDOWN, literal, lockdown_values, reader_sql, view_sql
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
from sandbox.sources import DEFAULT_LIMITS, SORTED, Limits, TableSource

__all__ = [
    "DuckDBEngine",
    "Limits",
    "ResultTable",
    "TableSource",
    "available_settings",
    "sort_copy",
]

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
    neither. Every instance is handed out once, locked for one set of sources (`_Locked`,
    which serves jobs over exactly those sources, a connection each) and retired after its
    last job: nothing is handed out twice. The next spare is opened once the job that took
    the last one has retired it (or found none), not while that job's query runs: on a
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


CONNECTIONS_PER_INSTANCE = 16  # jobs one locked database serves, a connection each
# Locked databases an engine keeps between jobs. One: a job over other sources first closes
# it, so a worker holds at most one database with cached data (the job memory limit, and the
# worker's address-space limit of twice that, stay the bound they were).
KEPT_INSTANCES = 1
_SETTINGS = tuple(name for name, _required in LOCKDOWN if name != "lock_configuration")


@dataclass
class _Locked:
    """A locked database over one set of sources and its connections not yet handed out.

    Each connection was made, and given the settings a new connection does not inherit from
    the database (DuckDB keeps e.g. ``python_enable_replacements`` per connection), before
    ``lock_configuration``; ``expected`` is every lock-down setting as read on the database,
    which each connection is held to again when a job takes it.
    """

    instance: duckdb.DuckDBPyConnection
    unused: list[duckdb.DuckDBPyConnection]
    expected: tuple[object, ...]

    def close(self) -> None:
        for con in self.unused:
            con.close()
        self.unused.clear()
        self.instance.close()


@dataclass
class _KeptInstances:
    """Locked databases between jobs, by the identity of their sources and limits."""

    most: int
    _idle: OrderedDict[tuple[object, ...], _Locked] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: tuple[object, ...]) -> _Locked | None:
        """The idle database for ``key``, now the caller's alone; None if there is none."""
        with self._lock:
            return self._idle.pop(key, None)

    def keep(self, key: tuple[object, ...], locked: _Locked) -> list[_Locked]:
        """Keep ``locked`` for the next job over ``key``; returns the databases to close."""
        with self._lock:
            evicted = []
            already = self._idle.pop(key, None)  # two jobs over the same sources at once
            if already is not None:
                evicted.append(already)
            self._idle[key] = locked
            while len(self._idle) > self.most:
                evicted.append(self._idle.popitem(last=False)[1])
            return evicted

    def drain(self) -> list[_Locked]:
        with self._lock:
            found = list(self._idle.values())
            self._idle.clear()
            return found


class _Successors:
    """Locked databases being made in the background for the next job over a set of sources,
    at most one at a time (a successor holds no cached data yet, but it is a database)."""

    def __init__(self, make: Callable[[Sequence[TableSource]], _Locked]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._pending: dict[tuple[object, ...], Future[_Locked]] = {}
        self._closed = False

    def prepare(self, key: tuple[object, ...], sources: Sequence[TableSource]) -> None:
        """Start making the database for ``key`` (another one pending is dropped)."""
        future: Future[_Locked] = Future()
        with self._lock:
            if self._closed or key in self._pending:
                return
            dropped = list(self._pending.values())
            self._pending = {key: future}
        for other in dropped:
            other.add_done_callback(_close_made)

        def make() -> None:
            try:
                future.set_result(self._make(sources))
            except BaseException as exc:  # the next job makes its own, and meets the error
                future.set_exception(exc)

        threading.Thread(target=make, name="sandbox-duckdb-successor", daemon=True).start()

    def take(self, key: tuple[object, ...]) -> _Locked | None:
        """The database made (or being made: waited for) for ``key``, now the caller's; None
        if there is none or it could not be made. Any other pending one is dropped."""
        with self._lock:
            future = self._pending.pop(key, None)
            dropped = list(self._pending.values())
            self._pending.clear()
        for other in dropped:
            other.add_done_callback(_close_made)
        if future is None:
            return None
        try:
            return future.result()
        except Exception:
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            dropped = list(self._pending.values())
            self._pending.clear()
        for future in dropped:
            future.add_done_callback(_close_made)


def _close_made(future: Future[_Locked]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close()


def _identity(limits: Limits, sources: Sequence[TableSource]) -> tuple[object, ...] | None:
    """What a kept database must match: each source's id, format, file and the file's
    identity (device, inode, size, modification and change times: a rewritten or replaced
    file is another source), and the limits. None when a file cannot be looked at or is not
    a regular file (then nothing is kept)."""
    files: list[tuple[object, ...]] = []
    for source in sources:
        try:
            stat = source.file.stat()
        except (OSError, ValueError, SandboxBug):
            return None
        if not S_ISREG(stat.st_mode):
            return None
        files.append(
            (
                source.dataset_id,
                source.format,
                str(source.file),
                stat.st_dev,
                stat.st_ino,
                stat.st_size,
                stat.st_mtime_ns,
                stat.st_ctime_ns,  # unlike the modification time, not settable by utime
            )
        )
    return (limits, tuple(files))


class DuckDBEngine:
    """Runs compiled queries, each on a locked-down DuckDB connection no other call used."""

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
        self._kept = _KeptInstances(KEPT_INSTANCES)
        self._successors = _Successors(
            lambda sources: self._lock_new(sources, CONNECTIONS_PER_INSTANCE)
        )

    def close(self) -> None:
        """Stop the background threads and close the instances kept ready or kept locked."""
        self._successors.close()
        for locked in self._kept.drain():
            locked.close()
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

    def prepare(self, sources: Sequence[TableSource]) -> bool:
        """Make the locked database a job over ``sources`` (in the order the job mounts them)
        would take, and keep it for that job: the job then makes none on its path. True if
        one was made; False if one is kept already or none can be (a source that is not a
        regular file). Each connection is still held to the lock-down when a job takes it."""
        key = _identity(self.limits, sources)
        if key is None:
            return False
        locked, made = self._database(sources, key)
        for evicted in self._kept.keep(key, locked):
            self._retire(evicted)
        return made

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
        """Run ``query`` and then each auxiliary query on the same connection (the job's own).

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
                found = self._execute(con, aux.duckdb_sql, values, aux.max_rows, None)
                results.append(pack_member_hashes(found))
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
        """Take a locked connection, run ``work``, close it (and keep or retire its database);
        turn any driver error into an ExecutionError."""
        category: ExecutionCategory | None = None
        con: duckdb.DuckDBPyConnection | None = None
        locked: _Locked | None = None
        timer: threading.Timer | None = None
        key = _identity(self.limits, sources)
        finished = False
        try:
            locked, con = self._open(sources, key)
            # One timer for the whole job (the template and any auxiliary queries).
            timer = threading.Timer(self.limits.timeout_s, con.interrupt)
            timer.daemon = True
            timer.start()
            result = work(con)
            finished = True
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
            self._close(con, key, locked, failed=not finished, sources=sources)
        if finished:
            return result
        if category is None:  # not reached: an exception that was not caught re-raised above
            raise SandboxBug("a job ended without a result or an error")
        if category is _C.TIMEOUT:
            raise QueryTimeout(self.limits.timeout_s)
        if category is _C.OUT_OF_MEMORY:
            raise ResourceLimitExceeded(category, self.limits.memory_limit)
        raise ExecutionError(category)

    def _open(
        self, sources: Sequence[TableSource], key: tuple[object, ...] | None
    ) -> tuple[_Locked, duckdb.DuckDBPyConnection]:
        """A locked database over ``sources`` (kept, or new) and a connection to it no job
        has used, its settings read back."""
        locked, _made = self._database(sources, key)
        con = locked.unused.pop()
        try:
            if _read_settings(con) != locked.expected:
                raise SandboxBug("a connection's settings differ from its locked database's")
            _verify_lockdown(con, sources, self.limits)
        except BaseException:
            self._close(con, key, locked, failed=True)
            raise
        return locked, con

    def _database(
        self, sources: Sequence[TableSource], key: tuple[object, ...] | None
    ) -> tuple[_Locked, bool]:
        """The database kept (or its successor made) for ``key``, else a new one over
        ``sources`` (True); a new one first closes the kept ones (one database with cached
        data at a time). Without a key (nothing can be kept) it has one connection."""
        locked = None if key is None else self._kept.take(key) or self._successors.take(key)
        if locked is not None:
            return locked, False
        for other in self._kept.drain():
            self._retire(other)
        return self._lock_new(sources, CONNECTIONS_PER_INSTANCE if key is not None else 1), True

    def _lock_new(self, sources: Sequence[TableSource], connections: int) -> _Locked:
        """A fresh database: views, settings, ``connections`` connections, then the lock."""
        limits = self.limits
        instance = self._instances.take()
        unused: list[duckdb.DuckDBPyConnection] = []
        try:
            for source in sources:  # a log beside a read-only copy would be replayed into it
                if source.format == SORTED and any(
                    Path(f"{source.file}{suffix}").exists() for suffix in _ATTACHED_SIDE_FILES
                ):
                    raise ExecutionError(_C.SOURCE_UNAVAILABLE)
            # one script (views, then the settings in LOCKDOWN order but the lock)
            statements = [statement for source in sources for statement in view_sql(source)]
            values = lockdown_values(limits, sources)
            sets = {
                name: f"SET {name} = {values[name]}"
                for name, required in LOCKDOWN
                if (required or name in available_settings()) and name != "lock_configuration"
            }
            instance.execute(";\n".join([*statements, *sets.values()]))
            expected = _read_settings(instance)
            # What a new connection does not inherit, read on the first one (~1 ms a read):
            # every connection is made the same way, and each is held to `expected` again
            # when a job takes it (`_open`), so one that differed would be refused, not run.
            missing: list[str] | None = None
            for _ in range(connections):
                con = instance.cursor()
                unused.append(con)
                if missing is None:
                    inherited = _read_settings(con)
                    missing = [
                        sets[name]
                        for name, want, got in zip(_SETTINGS, expected, inherited, strict=True)
                        if want != got and name in sets
                    ]
                if missing:
                    con.execute(";\n".join(missing))
            instance.execute("SET lock_configuration = true")
        except BaseException:
            for con in unused:
                con.close()
            instance.close()
            raise
        return _Locked(instance, unused, expected)

    def _close(
        self,
        con: duckdb.DuckDBPyConnection | None,
        key: tuple[object, ...] | None,
        locked: _Locked | None,
        *,
        failed: bool,
        sources: Sequence[TableSource] = (),
    ) -> None:
        """Close the job's connection; keep or retire its database whatever that raises.
        A job that did not finish retires its database."""
        try:
            if con is not None:
                con.close()
        finally:
            if locked is not None:
                self._done_with(key, locked, failed=failed, sources=sources)

    def _done_with(
        self,
        key: tuple[object, ...] | None,
        locked: _Locked,
        *,
        failed: bool,
        sources: Sequence[TableSource] = (),
    ) -> None:
        """After a job: keep its database for the next job over the same sources while it
        has connections left and nothing went wrong; else close it (off the job's path).
        A database that served its last job well gets a successor over ``sources``, made in
        the background."""
        if key is not None and not failed and locked.unused:
            for evicted in self._kept.keep(key, locked):
                self._retire(evicted)
            return
        self._retire(locked)
        if key is not None and not failed and sources:
            self._successors.prepare(key, sources)

    def _retire(self, locked: _Locked) -> None:
        for con in locked.unused:
            con.close()
        locked.unused.clear()
        self._instances.retire(locked.instance)

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


SORTED_ROW_GROUP = 4_096  # rows per row group of a sorted copy: what one key lookup reads


def sort_copy(
    source: TableSource,
    column: str,
    dest: Path,
    *,
    memory_limit: str,
    spill_limit: str,
    threads: int,
    temp: Path,
) -> int:
    """Write the rows of the Parquet or CSV ``source`` ordered by ``column`` to the new DuckDB
        database file ``dest`` (table ``rows``, row groups of ``SORTED_ROW_GROUP`` rows), spilling
        to ``temp`` (at most ``spill_limit``); check it holds as many rows as the source; return
    that count.

        Trusted input only: the source and column come from the catalogue (validated here), no
        template SQL is involved. Run by ``sandbox.engines.sorter`` in a process that may write
        below the copies' directory and nowhere else. A key lookup in the copy reads the one row
        group whose range holds the key (zone maps), instead of every row of the source."""
    if source.format == SORTED or not source.is_file:
        raise SandboxBug("a sorted copy is made of a Parquet or CSV file")
    if not COLUMN_NAME.fullmatch(column):
        raise SandboxBug("a sorted copy's key must be a plain column name")
    if dest.exists():
        raise SandboxBug("a sorted copy is written to a new file")
    reader = reader_sql(source)
    config: dict[str, str | bool | int | float | list[str]] = {
        "threads": threads,
        "memory_limit": memory_limit,
        "temp_directory": str(temp),
        "max_temp_directory_size": spill_limit,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
    }
    category: ExecutionCategory | None = None
    try:
        with duckdb.connect(":memory:", config=config) as con:
            out = f"ATTACH {literal(str(dest))} AS insitu_out (ROW_GROUP_SIZE {SORTED_ROW_GROUP})"
            con.execute(out)
            # the reader's path is a quoted literal, the column checked above
            sort = f'CREATE TABLE insitu_out.rows AS SELECT * FROM {reader} ORDER BY "{column}"'  # noqa: S608
            con.execute(sort)
            copied = con.execute("SELECT count(*) FROM insitu_out.rows").fetchone()
            expected = con.execute(f"SELECT count(*) FROM {reader}").fetchone()  # noqa: S608
            con.execute("DETACH insitu_out")
    except duckdb.Error as exc:  # the driver's text (values, paths) stays here
        category = next((c for kind, c in _ERRORS if isinstance(exc, kind)), _C.INTERNAL)
    if category is not None:
        raise ExecutionError(category)
    if copied is None or expected is None or copied[0] != expected[0]:
        raise SandboxBug("the sorted copy does not hold the source's rows")
    return int(copied[0])


def _read_settings(con: duckdb.DuckDBPyConnection) -> tuple[object, ...]:
    """Every lock-down setting but the lock itself, as ``con`` sees it, in ``_SETTINGS``
    order (None for one this build does not have)."""
    names = [name for name in _SETTINGS if name in available_settings()]
    row = con.execute(
        "SELECT " + ", ".join(f"current_setting('{name}')" for name in names)
    ).fetchone()
    if row is None:
        raise SandboxBug("DuckDB settings could not be read back")
    found = dict(zip(names, row, strict=True))
    return tuple(found.get(name) for name in _SETTINGS)


def _verify_lockdown(
    con: duckdb.DuckDBPyConnection, sources: Sequence[TableSource], limits: Limits | None = None
) -> None:
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
    # The connection's own settings (a new connection does not inherit them from the database)
    if "python_enable_replacements" in available_settings():
        expected["python_enable_replacements"] = False
    if limits is not None and "max_execution_time" in available_settings():
        expected["max_execution_time"] = max(1, round(limits.timeout_s * 1000))
    names = [*expected, "allowed_paths"]
    selected = ", ".join(f"current_setting('{name}')" for name in names)
    actual = con.execute(f"SELECT {selected}").fetchone()
    if actual is None:
        raise SandboxBug("DuckDB settings could not be read back")
    for name, value in zip(expected, actual, strict=False):
        if value != expected[name]:
            raise SandboxBug(f"DuckDB setting {name} did not take effect")
    if sorted(actual[-1]) != sorted(_allowed_paths(sources)):
        raise SandboxBug("DuckDB setting allowed_paths did not take effect")


# DuckDB adds these to `allowed_paths` for a database attached before external access is
# turned off (measured, duckdb 2.0.1); a read-only copy has none of them, and the worker
# process may write no file anyway (Landlock).
_ATTACHED_SIDE_FILES = (".wal", ".wal.checkpoint", ".wal.recovery")


def _allowed_paths(sources: Sequence[TableSource]) -> list[str]:
    """Exactly what a job's connection may read: the source files, and for a sorted copy
    the side files DuckDB allows with it."""
    paths = [str(s.file) for s in sources]
    for source in sources:
        if source.format == SORTED:
            paths += [f"{source.file}{suffix}" for suffix in _ATTACHED_SIDE_FILES]
    return paths
