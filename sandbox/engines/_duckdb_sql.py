"""The SQL text the DuckDB engine writes itself: views over sources and lock-down settings.

No parameter value or request data is ever written here: dataset ids are validated
identifiers, paths come from the catalogue and are quoted as string literals with quotes
doubled, and limits are validated numbers and sizes. Kept free of ``duckdb`` so the only
module importing the driver stays ``duckdb_engine.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandbox.errors import SandboxBug
from sandbox.sources import SORTED, Limits, TableSource


def literal(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# (setting, required), in the order they are SET. Optional ones are set only when this
# DuckDB build has them (duckdb 2.0.0 has all of them).
LOCKDOWN: tuple[tuple[str, bool], ...] = (
    ("threads", True),  # CPU bound per job
    ("memory_limit", True),  # memory bombs fail with out-of-memory instead of hurting the host
    ("temp_directory", True),  # '' = no spill directory: nothing writable on disk
    ("max_temp_directory_size", True),  # '0KB' as a second lock on spilling
    ("max_execution_time", False),  # the engine's own timeout next to our interrupt timer
    ("allowed_directories", True),  # [] = no directory is readable or writable
    ("allowed_paths", True),  # exactly the mounted source files, read-only
    ("enable_external_access", True),  # false: no other files, URLs, ATTACH, COPY, INSTALL
    ("autoinstall_known_extensions", True),  # no network fetch of extensions
    ("autoload_known_extensions", True),  # no extension loaded behind a function call
    ("allow_community_extensions", True),
    ("allow_unsigned_extensions", True),
    ("allow_extension_repositories", False),  # 'forbidden'
    ("allow_persistent_secrets", False),  # no secrets read from or written to disk
    ("python_enable_replacements", False),  # a table name never resolves to a Python variable
    ("enable_progress_bar", False),  # nothing printed to the worker's terminal
    ("allowed_configs", False),  # [] = no setting stays changeable after the lock
    ("lock_configuration", True),  # last: every setting above is now fixed
)


def reader_sql(source: TableSource) -> str:
    """The table function reading a Parquet or CSV source (the path a quoted literal)."""
    path = literal(str(source.file))  # a table source is a SandboxBug here
    if source.format == "parquet":
        return f"read_parquet({path}, filename=false, hive_partitioning=false)"
    if source.format == "csv":
        return (
            f"read_csv({path}, header=true, delim=',', quote='\"', escape='\"', "
            "filename=false, hive_partitioning=false, strict_mode=true, ignore_errors=false)"
        )
    raise SandboxBug(f"source of {source.dataset_id}: no reader for format {source.format}")


def sorted_alias(source: TableSource) -> str:
    """The name a sorted copy is attached under: from the validated dataset id."""
    return "insitu_sorted_" + source.dataset_id.replace(".", "__")


def view_sql(source: TableSource) -> tuple[str, ...]:
    """The schema and view for one source; the id is validated, the path a quoted literal.
    A ``sorted`` copy is attached read-only first (before the lock-down forbids ATTACH)."""
    dept, name = source.dataset_id.split(".")
    schema = f'CREATE SCHEMA IF NOT EXISTS "{dept}"'
    if source.format == SORTED:
        alias = sorted_alias(source)
        return (
            f'ATTACH {literal(str(source.file))} AS "{alias}" (READ_ONLY)',
            schema,
            f'CREATE VIEW "{dept}"."{name}" AS SELECT * FROM "{alias}".main.rows',  # noqa: S608
        )
    return (
        schema,
        f'CREATE VIEW "{dept}"."{name}" AS SELECT * FROM {reader_sql(source)}',  # noqa: S608
    )


def lockdown_values(limits: Limits, sources: Sequence[TableSource]) -> dict[str, str]:
    paths = ", ".join(literal(str(s.file)) for s in sources)
    return {
        "threads": str(limits.threads),
        "memory_limit": literal(limits.memory_limit),
        "temp_directory": "''",
        "max_temp_directory_size": "'0KB'",
        "max_execution_time": str(max(1, round(limits.timeout_s * 1000))),
        "allowed_directories": "[]",
        "allowed_paths": f"[{paths}]",
        "enable_external_access": "false",
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
        "allow_community_extensions": "false",
        "allow_unsigned_extensions": "false",
        "allow_extension_repositories": "'forbidden'",
        "allow_persistent_secrets": "false",
        "python_enable_replacements": "false",
        "enable_progress_bar": "false",
        "allowed_configs": "[]",
        "lock_configuration": "true",
    }
