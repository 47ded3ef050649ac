"""Where a dataset's data lives, and the limits a job runs under.

Both come from trusted configuration (the catalogue and the gateway's settings), never from
a request; they are still validated because paths and sizes are written into engine SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sandbox.errors import SandboxBug
from sandbox.schema import dataset_id_problem

_MEMORY = re.compile(r"\d{1,6}(\.\d{1,3})?\s?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
# Characters DuckDB's readers expand (globs) or that have no business in a catalogue path.
_UNSAFE_PATH_CHARS = frozenset("*?[]{}") | {chr(c) for c in range(32)} | {"\x7f"}


@dataclass(frozen=True, slots=True)
class TableSource:
    """One dataset's source file: an absolute path to a single Parquet or CSV file.

    CSV files are read with a header row, ',' delimiter and '"' quotes; column types are
    detected by DuckDB (check them against the registration with ``infer_schema``).
    """

    dataset_id: str
    format: Literal["parquet", "csv"]
    path: Path

    def __post_init__(self) -> None:
        problem = dataset_id_problem(self.dataset_id)
        if problem is not None:
            raise SandboxBug(f"TableSource dataset id {problem}")
        if self.format not in ("parquet", "csv"):
            raise SandboxBug(f"source of {self.dataset_id}: format must be parquet or csv")
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
