"""Sorted copies for verify lookups, made in a process of their own.

``make_sorted_copy`` starts ``python -m sandbox.engines.sorter`` (minimal environment, in
``/``, a session of its own, killed with its parent, like a worker; call it from a
long-lived thread) and hands it one request on stdin. The process
sets its OS limits on itself — no core dumps, an address-space limit, and Landlock: it may
write below the copies' directory and nowhere else, nor open a TCP socket — before it
imports DuckDB, then writes the copy (``sandbox.engines.duckdb.sort_copy``) to a temporary
name, which the parent renames into place once the copy checked out. A copy is therefore
whole or absent. What comes back is a row count or an error category, never the driver's
text.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sandbox.engines import landlock, protocol
from sandbox.engines.oslimits import default_address_space, die_with_parent
from sandbox.errors import ExecutionCategory, ExecutionError, QueryTimeout, SandboxBug
from sandbox.sources import TableSource

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding `sandbox`


def make_sorted_copy(
    source: TableSource,
    column: str,
    dest: Path,
    *,
    memory_limit: str,
    threads: int,
    timeout_s: float,
) -> TableSource:
    """Make ``dest`` (a new ``.duckdb`` file in an existing directory) a copy of ``source``'s
    rows ordered by ``column``, in a sorter process; the copy as a ``sorted`` source.

    Raises ``QueryTimeout`` past ``timeout_s`` (the process is killed), ``ExecutionError``
    when the copy could not be made; nothing is left at ``dest`` or its temporary name."""
    directory = dest.parent
    if not directory.is_dir() or dest.suffix != ".duckdb":
        raise SandboxBug("a sorted copy is a new .duckdb file in an existing directory")
    partial = directory / f".{dest.name}.{os.getpid()}.partial"
    spill = directory / f".{dest.name}.{os.getpid()}.spill"  # DuckDB's, while it sorts
    spill.mkdir(mode=0o700, exist_ok=True)
    request = {
        "source": protocol.encode_source(source),
        "column": column,
        "dest": str(partial),
        "temp": str(spill),
        "memory_limit": memory_limit,
        "threads": threads,
        "address_space": default_address_space(memory_limit),
    }
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": _PACKAGE_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
    try:
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter, module, pid
                [sys.executable, "-s", "-m", "sandbox.engines.sorter", str(os.getpid())],
                input=json.dumps(request).encode(),
                capture_output=True,
                timeout=timeout_s,
                cwd="/",
                env=env,
                start_new_session=True,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise QueryTimeout(timeout_s) from None
        reply = _reply(done.stdout)
        if not reply.get("ok"):
            category = reply.get("category", ExecutionCategory.INTERNAL.value)
            raise ExecutionError(ExecutionCategory(category))
        os.replace(partial, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        for leftover in directory.glob(f"{partial.name}.*"):  # DuckDB's own side files
            leftover.unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)
    return TableSource(source.dataset_id, "sorted", dest)


def _reply(stdout: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(stdout.decode() or "{}")
    except ValueError:
        reply = {}
    if not isinstance(reply, dict) or reply.get("category") not in (
        None,
        *(c.value for c in ExecutionCategory),
    ):
        return {"ok": False}
    return reply


def _limit_self(request: dict[str, Any]) -> None:
    os.umask(0o077)  # the copy holds the dataset's rows: readable by this user only
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    space = int(request["address_space"])
    resource.setrlimit(resource.RLIMIT_AS, (space, space))
    landlock.restrict_writes(beneath=str(Path(request["dest"]).parent))


def main() -> int:
    if len(sys.argv) > 1:
        die_with_parent(int(sys.argv[1]))  # the thread that started it is long-lived
    request = json.loads(sys.stdin.buffer.read())
    _limit_self(request)
    from sandbox.engines.duckdb import sort_copy  # noqa: PLC0415 - after the limits

    try:
        rows = sort_copy(
            protocol.decode_source(request["source"]),
            request["column"],
            Path(request["dest"]),
            memory_limit=request["memory_limit"],
            threads=int(request["threads"]),
            temp=Path(request["temp"]),
        )
        reply: dict[str, Any] = {"ok": True, "rows": rows}
    except ExecutionError as exc:
        reply = {"ok": False, "category": exc.category.value}
    except MemoryError:
        reply = {"ok": False, "category": ExecutionCategory.OUT_OF_MEMORY.value}
    except Exception:  # the driver's text (values, paths) stays here
        reply = {"ok": False, "category": ExecutionCategory.INTERNAL.value}
    sys.stdout.write(json.dumps(reply))
    return 0


if __name__ == "__main__":
    sys.exit(main())
