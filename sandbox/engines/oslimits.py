"""Operating-system limits of a sandbox worker process (``resource.setrlimit``).

Set by the worker on itself before it imports DuckDB or reads any data, so they bind
everything the process does afterwards: the address space (a memory bomb DuckDB's own
``memory_limit`` misses fails an allocation instead of exhausting the host), open files,
no core dumps (a crash never writes the process memory — data — to disk), and a CPU-time
limit that the worker raises per job to "used so far + this job's budget" (``SIGXCPU``
kills a job that spins past it; the parent fails the job and starts a fresh worker).
"""

from __future__ import annotations

import os
import re
import resource
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.engines import landlock
from sandbox.errors import SandboxBug


@dataclass(frozen=True, slots=True)
class OsLimits:
    """``address_space`` in bytes (None: unlimited), ``open_files``, ``cpu_s`` per job, and
    ``no_writes``: forbid every file write and TCP socket with Landlock where the kernel has
    it (``sandbox.engines.landlock``)."""

    address_space: int | None = None
    open_files: int = 256
    cpu_s: float = 120.0
    no_writes: bool = True

    def __post_init__(self) -> None:
        if self.address_space is not None and (
            type(self.address_space) is not int or self.address_space < 256 * 2**20
        ):
            raise SandboxBug("OsLimits.address_space must be at least 256 MiB (or None)")
        if type(self.open_files) is not int or not 16 <= self.open_files <= 65536:
            raise SandboxBug("OsLimits.open_files must be an integer from 16 to 65536")
        if not 0 < self.cpu_s <= 86_400:
            raise SandboxBug("OsLimits.cpu_s must be in (0, 86400] seconds")


def apply(limits: OsLimits) -> int:
    """Limit this process (call once, early, in the worker); the Landlock ABI enforced."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    if limits.address_space is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limits.address_space, limits.address_space))
    return landlock.restrict_writes() if limits.no_writes else 0


def cpu_budget(seconds: float) -> None:
    """Allow this process ``seconds`` more CPU time from now (the soft limit)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def current() -> dict[str, tuple[int, int]]:
    """The limits in force (for tests and diagnostics)."""
    return {
        "as": resource.getrlimit(resource.RLIMIT_AS),
        "core": resource.getrlimit(resource.RLIMIT_CORE),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "cpu": resource.getrlimit(resource.RLIMIT_CPU),
    }


_SIZE = re.compile(r"(\d{1,6}(?:\.\d{1,3})?)\s?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def parse_size(text: str) -> int:
    """Bytes in a size such as '2GB' or '512MiB' (DuckDB's units)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise SandboxBug("a size must look like '512MB' or '2GiB'")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def default_address_space(memory_limit: str) -> int:
    """Twice DuckDB's memory limit plus 2 GiB for the interpreter, DuckDB and thread stacks
    (a worker's address space is ~0.8 GiB before its first query)."""
    return 2 * parse_size(memory_limit) + 2 * 2**30


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when the gateway that started it dies (Linux `prctl`); exit now
    if it died already (before the request took effect)."""
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415 - Linux only

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def child_environment() -> dict[str, str]:
    """The whole environment of a sandbox child process (a worker, the sorter): no
    ``INSITU_*`` settings or secrets, just enough to run this package's modules."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),  # the directory of `sandbox`
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }
