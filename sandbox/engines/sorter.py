"""Sorted copies for verify lookups, made in a process of their own.

``make_sorted_copy`` starts ``python -m sandbox.engines.sorter`` (minimal environment, in
``/``, a session of its own, killed with its parent, like a worker; call it from a
long-lived thread) and hands it one request on stdin. The process sets its OS limits on
itself — no core dumps, an address-space and a CPU-time limit, nice 10, and Landlock: it may
write below its build directory and nowhere else, nor open a TCP socket — before it imports
DuckDB, then writes the copy (``sandbox.engines.duckdb.sort_copy``) in that directory; the
parent moves the copy into place once it checked out. A copy is therefore whole or absent,
and a sorter can write no other copy. What comes back is a row count, the Landlock ABI, or
an error category, never the driver's text.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.engines import landlock, protocol
from sandbox.engines.oslimits import child_environment, default_address_space, die_with_parent
from sandbox.errors import ExecutionCategory, ExecutionError, QueryTimeout, SandboxBug
from sandbox.sources import TableSource

BUILD_PREFIX = ".build-"  # a build's own directory beside the copies (see `make_sorted_copy`)


def make_sorted_copy(
    source: TableSource,
    column: str,
    dest: Path,
    *,
    memory_limit: str,
    threads: int,
    timeout_s: float,
    spill_limit: str = "4GB",
) -> tuple[TableSource, int]:
    """Make ``dest`` (a new ``.duckdb`` file in an existing directory) a copy of ``source``'s
    rows ordered by ``column``, in a sorter process; the copy as a ``sorted`` source, and the
    Landlock ABI the sorter ran under (0: none, so its writes were not confined).

    The sorter works in a directory of its own (``.build-<random>`` beside ``dest``), the only
    place it may write: DuckDB's spill files (at most ``spill_limit``) and the copy, which the
    parent moves to ``dest`` once it checked out. A sorter that goes wrong can therefore touch
    no other copy. Raises ``QueryTimeout`` past ``timeout_s`` (the process is killed),
    ``ExecutionError`` when the copy could not be made; the build directory is removed either
    way (one left by a gateway killed mid-build is ``stale_builds``' to remove)."""
    directory = dest.parent
    if not directory.is_dir() or dest.suffix != ".duckdb":
        raise SandboxBug("a sorted copy is a new .duckdb file in an existing directory")
    build = directory / f"{BUILD_PREFIX}{secrets.token_hex(8)}"
    build.mkdir(mode=0o700)
    partial = build / "copy.duckdb"
    request = {
        "source": protocol.encode_source(source),
        "column": column,
        "dest": str(partial),
        "temp": str(build / "spill"),
        "memory_limit": memory_limit,
        "spill_limit": spill_limit,
        "threads": threads,
        "address_space": default_address_space(memory_limit),
        "cpu_s": int(timeout_s * threads) + 1,
    }
    env = child_environment()
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
        if any(partial.parent.glob(f"{partial.name}.wal*")):
            raise ExecutionError(ExecutionCategory.INTERNAL)  # a copy is whole, no log beside it
        os.replace(partial, dest)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return TableSource(source.dataset_id, "sorted", dest), int(reply.get("landlock", 0))


def stale_builds(directory: Path, older_than_s: float) -> int:
    """Remove build directories (``.build-*``) untouched for ``older_than_s`` seconds: what a
    gateway killed mid-build left (a live build, of this or another replica, is younger).
    Returns how many were removed."""
    removed = 0
    cutoff = time.time() - older_than_s
    for entry in directory.glob(f"{BUILD_PREFIX}*"):
        with contextlib.suppress(OSError):
            if entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry)
                removed += 1
    return removed


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


def _limit_self(request: dict[str, Any]) -> int:
    """OS limits and Landlock on this process; the Landlock ABI enforced (0: none)."""
    os.umask(0o077)  # the copy holds the dataset's rows: readable by this user only
    os.nice(10)  # a background build yields the cores to jobs
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    space = int(request["address_space"])
    resource.setrlimit(resource.RLIMIT_AS, (space, space))
    cpu = int(request.get("cpu_s", 3600))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    return landlock.restrict_writes(beneath=str(Path(request["dest"]).parent))


def main() -> int:
    if len(sys.argv) > 1:
        die_with_parent(int(sys.argv[1]))  # the thread that started it is long-lived
    request = json.loads(sys.stdin.buffer.read())
    abi = _limit_self(request)
    from sandbox.engines.duckdb import sort_copy  # noqa: PLC0415 - after the limits

    try:
        rows = sort_copy(
            protocol.decode_source(request["source"]),
            request["column"],
            Path(request["dest"]),
            memory_limit=request["memory_limit"],
            spill_limit=request["spill_limit"],
            threads=int(request["threads"]),
            temp=Path(request["temp"]),
        )
        reply: dict[str, Any] = {"ok": True, "rows": rows, "landlock": abi}
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
