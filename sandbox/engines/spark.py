"""The Spark engine: runs compiled queries on a Spark cluster through Spark Connect.

The only module that imports ``pyspark`` (the ``spark`` extra). The data stays where Spark
reads it; this process is a client that sends SQL text and bound values and gets back at
most ``max_rows + 1`` rows. Per call (a job, or a catalogue look-up):

1. a Spark Connect session (its own session id on the server) **taken for this call alone**
   from the engine's small pool: a session serves one call at a time, and goes back to the
   pool only when the call ended cleanly (a time-out, a Spark or transport error closes it);
   a pooled session that the server no longer holds (expired, restarted) is replaced once,
   before any work was done. A new session gets its settings once: ANSI mode (an overflow,
   a bad cast or a division by zero is an error, as in DuckDB, never a silent NULL), UTC,
   and no SQL on files (``runSQLOnFiles=false``);
2. every dataset the query reads is named ``insitu_v<i>`` **inside the one request** that
   runs the query (Spark Connect's SQL with references: the server binds the names for
   that statement and drops them after it): a Parquet or CSV path (read by the cluster), a
   table of the cluster's catalogue, or a JDBC table whose URL and credentials come from
   the engine's ``connections`` (the gateway's settings), never from the dataset document
   or a job. No view outlives its statement, so a pooled session carries nothing from one
   job to the next, and nothing is written to the catalogue;
3. the compiled Spark SQL is checked again and renamed to those names
   (``sandbox.compile.spark.job_sql``), then run with **named parameters** bound by Spark:
   the text never holds a value;
4. a timer interrupts the session's operations at the job's time limit (the session is
   then closed, never reused); the result is ``LIMIT max_rows + 1`` before anything is
   collected, then converted and size-checked.

One query is one round trip: no view is created and no statement analysed separately
before it runs (``bench/spark.py`` measures what each of those cost).

Errors become ExecutionError(category) raised outside the ``except`` block; the driver's
text (values, paths, credentials) travels nowhere, and pyspark's own error loggers are
switched off so it is not printed either.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import socket
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from sandbox.compile.auxiliary import POPULATION_KEYS, AuxiliaryQuery, pack_member_hashes
from sandbox.compile.query import CompiledQuery
from sandbox.compile.spark import job_sql, profile_sql, view_name
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
from sandbox.sources import (
    DEFAULT_LIMITS,
    JdbcConnection,
    Limits,
    TableSource,
    check_spark_remote,
)

with warnings.catch_warnings():  # pyspark warns about pandas 3 on import; nothing we use
    warnings.simplefilter("ignore")
    import pyarrow as pa
    from pyspark.errors import PySparkException
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.dataframe import DataFrame
    from pyspark.sql.connect.functions.builtin import lit
    from pyspark.sql.connect.plan import SQL, SubqueryAlias
    from pyspark.sql.connect.session import SparkSession

__all__ = ["SparkEngine"]

T = TypeVar("T")
_C = ExecutionCategory
_BINDABLE = (bool, int, str, Decimal, date)
_SESSION_CONF: dict[str, str | int | bool] = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.runSQLOnFiles": "false",
    # LIMIT cap+1 reads every partition of the last stage in one go, not 1, 4, 16, …
    "spark.sql.limit.initialNumPartitions": "100000",
}
# pyspark logs every analysis/execution error with its full message (values, paths) before
# raising it, and its client warns with server messages; the sandbox never lets such text
# out. A level above CRITICAL (children inherit it), not only ``disabled``: uvicorn's logging
# set-up re-enables every existing logger.
_SILENT = logging.CRITICAL + 10
for _name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger", "pyspark"):
    logging.getLogger(_name).setLevel(_SILENT)
    logging.getLogger(_name).disabled = True


class _Session:
    """One Spark Connect session: its settings, and the timer of the call that holds it."""

    def __init__(self, remote: str) -> None:
        self.spark = SparkSession(connection=remote)
        self.spark.client.set_retry_policies([DefaultPolicy(max_retries=3, max_backoff=2000)])
        self.configured = False
        self.reused = False
        self.idle_since = time.monotonic()
        self.timed_out = threading.Event()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._call = 0  # which call the running timer belongs to (0: none)

    def begin(self, timeout_s: float) -> None:
        """Start one call: a fresh time-out flag and a timer that interrupts this call only."""
        with self._lock:
            self._call += 1
            self.timed_out = threading.Event()
            self._timer = threading.Timer(timeout_s, self._interrupt, args=(self._call,))
            self._timer.daemon = True
            self._timer.start()
        if not self.configured:
            self.spark.conf._set_all(configs=_SESSION_CONF, silent=False)
            self.configured = True

    def end(self) -> None:
        """After it returns, the timer of the call that ended can no longer interrupt."""
        with self._lock:
            self._call += 1
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _interrupt(self, call: int) -> None:
        with self._lock:
            if call != self._call:
                return  # the call ended; the session may already serve another one
            self.timed_out.set()
            with contextlib.suppress(Exception):  # the session may be gone; the job fails anyway
                self.spark.interruptAll()

    def close(self) -> None:
        self.end()
        with contextlib.suppress(Exception):  # best effort; the server expires idle sessions
            self.spark.stop()  # releases the session on the server


class _Sessions:
    """At most ``keep`` idle sessions, each lent to one call at a time (last in, first out).

    Spark builds a new session's state (analyser, catalogue, function registry) on its first
    statement: a few hundred milliseconds of driver time that a reused session does not pay.
    A session idle longer than ``idle_s`` is closed rather than lent (the server expires idle
    sessions after an hour by default)."""

    def __init__(self, remote: str, keep: int = 4, idle_s: float = 600.0) -> None:
        self.remote = remote
        self.keep = keep
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._idle: list[_Session] = []

    def take(self) -> _Session:
        stale: list[_Session] = []
        found: _Session | None = None
        with self._lock:
            while self._idle and found is None:
                session = self._idle.pop()
                if time.monotonic() - session.idle_since <= self.idle_s:
                    found = session
                else:
                    stale.append(session)
        for session in stale:
            session.close()
        return found if found is not None else _Session(self.remote)

    def give(self, session: _Session) -> None:
        session.reused = True
        session.idle_since = time.monotonic()
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(session)
                return
        session.close()

    def idle(self) -> tuple[_Session, ...]:
        with self._lock:
            return tuple(self._idle)

    def close(self) -> None:
        with self._lock:
            sessions, self._idle = self._idle, []
        for session in sessions:
            session.close()


class _StaleSession(Exception):
    """A pooled session the server no longer holds; the call is retried on a new one."""


class _Call:
    """One call's session and its sources, each named ``insitu_v<i>`` in every statement."""

    def __init__(self, spark: SparkSession, frames: Sequence[Any]) -> None:
        self.spark = spark
        self.frames = tuple(frames)

    def relation(self, sql: str, params: Mapping[str, object]) -> Any:
        """``sql`` with its named parameters and the sources as references: one relation,
        sent with the request that runs it (pyspark's own ``spark.sql(text, args, **frames)``
        sends the same plan, but as a command first, a round trip and an analysis more)."""
        views = [SubqueryAlias(frame._plan, view_name(i)) for i, frame in enumerate(self.frames)]
        named = {name: lit(value) for name, value in params.items()}
        return DataFrame(SQL(sql, None, named, views), self.spark)


class SparkEngine:
    """Runs compiled queries on Spark through Spark Connect, one pooled session per call."""

    def __init__(
        self,
        remote: str,
        limits: Limits = DEFAULT_LIMITS,
        *,
        connections: Mapping[str, JdbcConnection] | None = None,
    ) -> None:
        self.remote = check_spark_remote(remote)
        self.limits = limits
        self._connections = dict(connections or {})
        self._sessions = _Sessions(self.remote)
        # an engine nobody closed still releases its sessions (and their channels) at exit
        atexit.register(_close_at_exit, weakref.ref(self._sessions))

    def close(self) -> None:
        """Release the pooled sessions on the server."""
        self._sessions.close()

    def ready(self) -> bool:
        """Is the Spark Connect server taking connections (a TCP connect, 1 s at most)?"""
        host, _, port = self.remote.removeprefix("sc://").rstrip("/").rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port or 15002)), timeout=1.0):
                return True
        except (OSError, ValueError):
            return False

    def profile(self, source: TableSource, request: ProfileRequest) -> DatasetProfile:
        """The data-quality profile of ``source``: one aggregate row of counts and rates. A
        file is profiled beside the data by the embedded, locked-down DuckDB engine (as the
        pre-flight is); a catalogue or JDBC table, which only the cluster reads, by the same
        query rendered for Spark — except ``pattern`` rules (regular expressions differ
        between the two engines), which are refused for such sources."""
        if not source.is_file:
            if any(column.pattern is not None for column in request.columns):
                raise TemplateRejected(
                    f"{source.dataset_id}: pattern rules need a file source; catalogue and "
                    "JDBC tables are profiled on Spark, whose regular expressions differ"
                )
            return self.profile_on_spark(source, request)
        from sandbox.engines.duckdb import DuckDBEngine  # noqa: PLC0415 (only for profiles)

        local = DuckDBEngine(self.limits)
        try:
            return local.profile(source, request)
        finally:
            local.close()

    def profile_on_spark(self, source: TableSource, request: ProfileRequest) -> DatasetProfile:
        """The profile query of ``request`` run on Spark (any source; ``profile`` uses it for
        catalogue and JDBC tables, a test compares it with DuckDB's on the same file)."""
        if request.dataset_id != source.dataset_id:
            raise SandboxBug("the profile request names another dataset")
        duckdb_sql, params = request.sql()
        text = profile_sql(duckdb_sql, source.dataset_id, tuple(params))
        table = self._guarded([source], lambda c: self._execute(c, text, params, 1, None))
        if len(table.rows) != 1:
            raise SandboxBug("a profile query returns one row")
        return request.read(table.columns, table.rows[0])

    # --- the engine interface ---------------------------------------------------------

    def run(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
    ) -> ResultTable:
        mounted = [_source(sources, table) for table in query.tables]
        _check_params(query, params)
        text = job_sql(query.spark_sql, query.tables, query.parameters)
        return self._guarded(mounted, lambda c: self._run_checked(c, query, text, params))

    def run_with_auxiliary(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
        auxiliary: Sequence[AuxiliaryQuery],
        extra_params: Mapping[str, object] | None = None,
    ) -> tuple[ResultTable, tuple[ResultTable, ...]]:
        """``query``, then each auxiliary query in the same session (the same sources)."""
        extra = dict(extra_params or {})
        if any(not name.startswith("_") for name in extra):
            raise SandboxBug("extra parameters of auxiliary queries start with an underscore")
        bindable = {**params, **extra}
        texts = []
        for aux in auxiliary:
            if not aux.spark_sql:
                raise SandboxBug(f"auxiliary query {aux.name} has no Spark SQL")
            if not set(aux.parameters) <= set(bindable):
                raise SandboxBug(f"auxiliary query {aux.name} needs unbound parameters")
            texts.append(job_sql(aux.spark_sql, query.tables, aux.parameters))
        _check_params(query, params)
        mounted = [_source(sources, table) for table in query.tables]
        text = job_sql(query.spark_sql, query.tables, query.parameters)

        def work(call: _Call) -> tuple[ResultTable, tuple[ResultTable, ...]]:
            main = self._run_checked(call, query, text, params)
            results = []
            for aux, aux_text in zip(auxiliary, texts, strict=True):
                values = {name: _spark_value(name, bindable[name]) for name in aux.parameters}
                found = self._execute(call, aux_text, values, aux.max_rows, None)
                results.append(pack_member_hashes(found))
            return main, tuple(results)

        return self._guarded(mounted, work)

    def distinct_values(
        self, source: TableSource, column: str, limit: int = 1000
    ) -> tuple[str | int, ...]:
        """The sorted distinct non-null values of ``column``, for a ``values_from`` domain."""
        if not COLUMN_NAME.fullmatch(column) or type(limit) is not int or not 0 < limit <= 100_000:
            raise SandboxBug("distinct_values needs a plain column name and a limit in 1..100000")
        view = view_name(0)
        # Identifiers validated above and by TableSource; the limit is a checked int.
        sql = (
            f"SELECT DISTINCT `{column}` FROM {view} "  # noqa: S608
            f"WHERE `{column}` IS NOT NULL ORDER BY 1 LIMIT {limit + 1}"
        )
        table = self._guarded([source], lambda c: self._execute(c, sql, {}, limit + 1, None))
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
        """(column, type) of ``source`` as Spark reads it, with DuckDB's type names (the
        catalogue declares those), to check a registration."""

        def work(call: _Call) -> tuple[tuple[str, str], ...]:
            schema = call.frames[0].limit(0).toArrow().schema
            return tuple((field.name, arrow_type_name(field.type)) for field in schema)

        return self._guarded([source], work)

    # --- internals --------------------------------------------------------------------

    def _run_checked(
        self, call: _Call, query: CompiledQuery, text: str, params: Mapping[str, object]
    ) -> ResultTable:
        table = self._execute(call, text, dict(params))
        if tuple(c.lower() for c in table.columns) != tuple(
            c.lower() for c in query.output_columns
        ):
            raise SandboxBug("the result's columns differ from the compiled output columns")
        return table

    def _guarded(self, sources: Sequence[TableSource], work: Callable[[_Call], T]) -> T:
        """Run ``work`` on a pooled session (a new one if the pooled one has gone)."""
        session = self._sessions.take()
        try:
            return self._attempt(session, sources, work)
        except _StaleSession:
            pass  # nothing ran; the retry below raises outside this block
        return self._attempt(_Session(self.remote), sources, work)

    def _attempt(
        self, session: _Session, sources: Sequence[TableSource], work: Callable[[_Call], T]
    ) -> T:
        """One call on ``session``; errors become categories. The session goes back to the
        pool only after a clean end (a result, or one of our own checks refusing it)."""
        category: ExecutionCategory | None = None
        stale = False
        keep = False
        stage = "mount"
        try:
            session.begin(self.limits.timeout_s)  # one timer for the whole call
            call = _Call(session.spark, self._frames(session, sources))
            stage = "query"
            result = work(call)
            keep = True
            return result
        except SandboxError:
            keep = True  # our check after a finished operation: the session is fine
            raise
        except PySparkException as exc:
            stale = session.reused and _condition(exc)[0].startswith("INVALID_HANDLE")
            category = _category(exc, stage)
        except Exception:  # a conversion or transport surprise must not leak its message
            category = _C.SOURCE_UNAVAILABLE if stage == "mount" else _C.INTERNAL
        finally:
            session.end()
            if keep and not session.timed_out.is_set():
                self._sessions.give(session)
            else:
                session.close()
        if stale:
            raise _StaleSession
        if session.timed_out.is_set() or category is _C.TIMEOUT:
            raise QueryTimeout(self.limits.timeout_s)
        if category is _C.OUT_OF_MEMORY:
            raise ResourceLimitExceeded(category, self.limits.memory_limit)
        raise ExecutionError(category)

    def _frames(self, session: _Session, sources: Sequence[TableSource]) -> list[Any]:
        """The sources as (lazy) DataFrames; only a JDBC table is resolved here, so that a
        refused connection is an unavailable source, not a failed query."""
        frames = []
        for source in sources:
            reader: Any = session.spark.read
            if source.format == "parquet":
                frame = reader.parquet(str(source.file))
            elif source.format == "csv":
                frame = (
                    reader.options(
                        header="true", sep=",", quote='"', escape='"', inferSchema="true"
                    )
                    .options(mode="FAILFAST")
                    .csv(str(source.file))
                )
            elif source.format == "table":
                frame = reader.table(source.table)
            elif source.format == "sorted":  # the embedded engine's own copies
                raise SandboxBug("the Spark engine reads no sorted copy; pass the source")
            else:
                frame = self._jdbc(reader, source)
                frame.schema  # noqa: B018 - one analysis round trip: connects and reads columns
            frames.append(frame)
        return frames

    def _jdbc(self, reader: Any, source: TableSource) -> Any:
        connection = self._connections.get(source.connection or "")
        if connection is None:
            raise ExecutionError(_C.SOURCE_UNAVAILABLE)
        return (
            reader.format("jdbc")
            .options(
                url=connection.url,
                dbtable=source.table,
                user=connection.user,
                password=connection.password,
                driver=connection.driver,
            )
            .load()
        )

    def _execute(
        self,
        call: _Call,
        sql: str,
        params: dict[str, object],
        max_rows: int | None = None,
        max_bytes: int | None = -1,
    ) -> ResultTable:
        """Run ``sql``; at most ``max_rows + 1`` rows are collected; cap bytes unless None."""
        limits = self.limits
        max_rows = limits.max_rows if max_rows is None else max_rows
        max_bytes = limits.max_bytes if max_bytes == -1 else max_bytes
        result: pa.Table = call.relation(sql, params).limit(max_rows + 1).toArrow()
        if result.num_rows > max_rows:
            raise ResourceLimitExceeded(ExecutionCategory.ROW_LIMIT, f"{max_rows} rows")
        rows: list[tuple[object, ...]] = []
        size = 0
        for raw in result.to_pylist():
            row = tuple(json_value(v) for v in raw.values())
            if max_bytes is not None:
                size += len(json.dumps(row, ensure_ascii=False).encode())
                if size > max_bytes:
                    raise ResourceLimitExceeded(ExecutionCategory.BYTE_LIMIT, f"{max_bytes} bytes")
            rows.append(row)
        return ResultTable(
            columns=tuple(result.schema.names),
            types=tuple(arrow_type_name(field.type) for field in result.schema),
            rows=tuple(rows),
        )


def _close_at_exit(sessions: weakref.ref[_Sessions]) -> None:
    pool = sessions()
    if pool is not None:
        pool.close()


def _source(sources: Mapping[str, TableSource], table: str) -> TableSource:
    source = sources.get(table)
    if source is None or source.dataset_id != table:
        raise SandboxBug(f"no source given for dataset {table}")
    return source


def _check_params(query: CompiledQuery, params: Mapping[str, object]) -> None:
    if sorted(params) != list(query.parameters):
        raise SandboxBug("run() needs exactly the query's (validated) parameters")
    for name, value in params.items():
        if not isinstance(value, _BINDABLE):
            raise SandboxBug(f"parameter '{name}' was not converted by validate_parameters")


def _spark_value(name: str, value: object) -> object:
    """The two population key words are unsigned 64-bit; Spark's BIGINT is signed."""
    if name in POPULATION_KEYS and type(value) is int and value >= 2**63:
        return value - 2**64
    return value


# Spark's error conditions that say something about the data (as DuckDB's conversion,
# overflow and division errors do): all of them are reported as one category, ``data``.
_DATA_STATES = ("22",)  # SQLSTATE class 22: data exception
_SOURCE_CONDITIONS = frozenset(
    {"PATH_NOT_FOUND", "FAILED_READ_FILE", "TABLE_OR_VIEW_NOT_FOUND", "UNABLE_TO_INFER_SCHEMA"}
)


def _condition(exc: PySparkException) -> tuple[str, str]:
    """Spark's error condition and SQLSTATE (empty when it has none)."""
    try:
        return str(exc.getCondition() or ""), str(exc.getSqlState() or "")
    except Exception:
        return "", ""


def _category(exc: PySparkException, stage: str) -> ExecutionCategory:
    condition, state = _condition(exc)
    if condition == "OPERATION_CANCELED" or "INTERRUPTED" in condition:
        return _C.TIMEOUT
    if stage == "mount":
        return _C.SOURCE_UNAVAILABLE
    if state.startswith(_DATA_STATES) or condition in ("DIVIDE_BY_ZERO", "ARITHMETIC_OVERFLOW"):
        return _C.DATA
    if condition.split(".")[0] in _SOURCE_CONDITIONS:
        return _C.SOURCE_UNAVAILABLE
    if "PARSE" in condition:
        return _C.REFUSED
    if "MEMORY" in condition:
        return _C.OUT_OF_MEMORY
    return _C.INTERNAL


def arrow_type_name(kind: pa.DataType) -> str:
    """An Arrow type (as Spark sends results) under DuckDB's name for it."""
    simple = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.date32(): "DATE",
        pa.binary(): "BLOB",
        pa.null(): "NULL",
    }
    if kind in simple:
        return simple[kind]
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision},{kind.scale})"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP WITH TIME ZONE" if kind.tz else "TIMESTAMP"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"{arrow_type_name(kind.value_type)}[]"
    return str(kind).upper()
