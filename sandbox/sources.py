"""Where a dataset's data lives, and the limits a job runs under.

Both come from trusted configuration (the catalogue and the gateway's settings), never from
a request; they are still validated because paths and sizes are written into engine SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sandbox.errors import SandboxBug
from sandbox.schema import dataset_id_problem

_MEMORY = re.compile(r"\d{1,6}(\.\d{1,3})?\s?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
# Characters DuckDB's readers expand (globs) or that have no business in a catalogue path.
_UNSAFE_PATH_CHARS = frozenset("*?[]{}") | {chr(c) for c in range(32)} | {"\x7f"}


FILE_FORMATS = ("parquet", "csv")
# A copy the sandbox made of a file source, its rows ordered by one column, as a read-only
# DuckDB database file (table ``rows``): what a verify job looks keys up in (`sort_copy`).
SORTED = "sorted"
# Sources only the Spark engine reads: a table of the cluster's catalogue, or a table of a
# database reached over JDBC (credentials by connection name, from the gateway's settings).
SPARK_FORMATS = ("table", "jdbc")
# A catalogue or JDBC table name: one to three plain identifiers joined by dots.
TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}(\.[A-Za-z_][A-Za-z0-9_]{0,127}){0,2}")
CONNECTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True, slots=True)
class TableSource:
    """Where one dataset's rows are: an absolute path to a single Parquet or CSV file (or to
    a ``sorted`` copy of one, which only the embedded engine reads), or
    (Spark only) a ``table`` of the cluster's catalogue, or a ``jdbc`` table reached through
    the named ``connection`` (whose URL and credentials the engine holds, never the source).

    CSV files are read with a header row, ',' delimiter and '"' quotes; column types are
    detected by the engine (check them against the registration with ``infer_schema``).
    """

    dataset_id: str
    format: Literal["parquet", "csv", "table", "jdbc", "sorted"]
    path: Path | None = None
    table: str | None = None
    connection: str | None = None

    def __post_init__(self) -> None:
        problem = dataset_id_problem(self.dataset_id)
        if problem is not None:
            raise SandboxBug(f"TableSource dataset id {problem}")
        if self.format in SPARK_FORMATS:
            self._check_table()
            return
        if self.format not in (*FILE_FORMATS, SORTED):
            raise SandboxBug(
                f"source of {self.dataset_id}: format must be parquet, csv, sorted, table or jdbc"
            )
        if self.table is not None or self.connection is not None:
            raise SandboxBug(f"source of {self.dataset_id}: a file source names no table")
        if not isinstance(self.path, Path) or not self.path.is_absolute():
            raise SandboxBug(
                f"source of {self.dataset_id}: path must be an absolute pathlib.Path; "
                "resolve it against the insitu home first"
            )
        if _UNSAFE_PATH_CHARS & set(str(self.path)):
            raise SandboxBug(
                f"source of {self.dataset_id}: path must not contain glob characters "
                "(*?[]{}) or control characters; name one file"
            )

    def _check_table(self) -> None:
        if self.path is not None:
            raise SandboxBug(f"source of {self.dataset_id}: a {self.format} source has no path")
        if not isinstance(self.table, str) or not TABLE_NAME.fullmatch(self.table):
            raise SandboxBug(f"source of {self.dataset_id}: table must be a name like 'db.table'")
        wants_connection = self.format == "jdbc"
        if wants_connection != (self.connection is not None):
            raise SandboxBug(
                f"source of {self.dataset_id}: a jdbc source, and only it, names a connection"
            )
        if self.connection is not None and not CONNECTION_NAME.fullmatch(self.connection):
            raise SandboxBug(f"source of {self.dataset_id}: connection must be a plain name")

    @property
    def is_file(self) -> bool:
        """Whether the rows are in one local file (``path``), which the host can stat."""
        return self.format in (*FILE_FORMATS, SORTED)

    @property
    def file(self) -> Path:
        """The source file; a SandboxBug for a table source."""
        if self.path is None:
            raise SandboxBug(f"source of {self.dataset_id} is a {self.format} table, not a file")
        return self.path


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-job limits of the embedded engine."""

    timeout_s: float = 30.0
    memory_limit: str = "2GB"
    threads: int = 2
    max_rows: int = 10_000
    max_bytes: int = 8_000_000

    def __post_init__(self) -> None:
        timeout = self.timeout_s
        if type(timeout) not in (int, float) or not 0 < timeout <= 3600:
            raise SandboxBug("Limits.timeout_s must be a number of seconds in (0, 3600]")
        if not isinstance(self.memory_limit, str) or not _MEMORY.fullmatch(self.memory_limit):
            raise SandboxBug("Limits.memory_limit must look like '512MB' or '2GB'")
        for name, low, high in (
            ("threads", 1, 256),
            ("max_rows", 1, 10_000_000),
            ("max_bytes", 1, 10_000_000_000),
        ):
            value = getattr(self, name)
            if type(value) is not int or not low <= value <= high:
                raise SandboxBug(f"Limits.{name} must be an integer from {low} to {high}")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class JdbcConnection:
    """How the Spark engine reaches a database over JDBC: from the gateway's settings (or a
    file of the home), never from a dataset document or a job. The password is not shown
    by ``repr``."""

    url: str
    user: str
    password: str = field(repr=False)
    driver: str = "org.postgresql.Driver"

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith("jdbc:"):
            raise SandboxBug("a JDBC connection's url starts with 'jdbc:'")
        if not all(isinstance(v, str) for v in (self.user, self.password, self.driver)):
            raise SandboxBug("a JDBC connection's user, password and driver are strings")


def check_spark_remote(remote: str) -> str:
    """A Spark Connect URL ``sc://host:port``; options after ``/;`` are refused (tokens and
    TLS belong to the server's proxy, not to a settings string)."""
    if not isinstance(remote, str) or not remote.startswith("sc://") or len(remote) > 300:
        raise SandboxBug("the Spark remote must be a Spark Connect URL like sc://host:15002")
    rest = remote.removeprefix("sc://").rstrip("/")
    if not rest or any(c in rest for c in "/;?#@ ") or rest.count(":") > 1:
        raise SandboxBug("the Spark remote must be sc://host:port with nothing after it")
    return remote
