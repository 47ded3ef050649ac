"""The process boundary: every job runs in a sandbox worker process, not in the gateway.

``ProcessEngine`` has the engine interface (``run``, ``run_with_auxiliary``,
``distinct_values``, ``infer_schema``, ``close``, ``limits``) and hands each call to a worker
process (``python -m sandbox.engines.worker``) over pipes (``sandbox.engines.protocol``). Workers:

- start with a minimal environment (no ``INSITU_*`` settings or secrets), in ``/``, in a
  session of their own, with OS limits set on themselves before DuckDB is imported;
- are kept ready (``spares``) so a job does not wait for a start (~0.3 s: Python + DuckDB);
- run one job at a time, each on a locked-down DuckDB connection no other job used;
- are watched: a reply not back within the job's time limit plus ``grace_s`` gets the worker
  killed (SIGKILL) and the job fails with a timeout; a worker that dies mid-job (killed, out
  of memory, CPU limit) fails its job with ``worker_lost``. Either way that worker is gone and
  the next job gets another;
- are retired after ``max_jobs`` jobs, so nothing accumulates in a long-lived process. A
  worker ``HANDOVER_JOBS`` jobs short of that has its successor started ahead, with the
  locked database over the sources of its last job made there (``prepare``), so the job after
  the retirement finds one instead of making it on its path;
- yield to short jobs: a call still running after ``long_job_s`` has every thread of its
  worker reniced to ``LONG_JOB_NICE`` (CPU weight ~1/10), so one department's heavy jobs
  cannot halve the CPU of another's small ones on the same cores. After the call its
  priority is raised back where the gateway may (CAP_SYS_NICE); where it may not, that
  worker is retired (a fresh one is started) rather than left slow;
- never number more than ``max_workers`` (idle, busy and starting): a call waits for one;
- die with the gateway: each asks the kernel for SIGKILL when its parent goes
  (``PR_SET_PDEATHSIG``). The kernel sends it when the *thread* that started the worker ends,
  so every worker is started by one long-lived spawner thread, never by a caller's thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sandbox.compile.auxiliary import AuxiliaryQuery
from sandbox.compile.query import CompiledQuery
from sandbox.dp import snapshot as dp_snapshot
from sandbox.dp.snapshot import DpOutcome, DpRun
from sandbox.engines import protocol
from sandbox.engines.oslimits import OsLimits, child_environment
from sandbox.errors import (
    ExecutionCategory,
    ExecutionError,
    QueryTimeout,
    SandboxBug,
    SandboxError,
)
from sandbox.quality.profile import DatasetProfile, ProfileRequest
from sandbox.results import ResultTable
from sandbox.sources import DEFAULT_LIMITS, Limits, TableSource

START_TIMEOUT_S = 60.0
HANDOVER_JOBS = 8  # a worker this many jobs short of retiring has its successor prepared
LONG_JOB_NICE = 10  # a nice-10 thread gets ~1/10 of the CPU a nice-0 thread gets beside it


class _Lost(Exception):
    """The worker died, hung up or sent garbage."""


def _table(encoded: dict[str, Any], blobs: Sequence[bytes] = ()) -> ResultTable:
    """A worker's table; one that does not decode fails the job as the engine's own error."""
    try:
        return protocol.decode_table(encoded, blobs)
    except protocol.ProtocolError:
        raise ExecutionError(ExecutionCategory.INTERNAL) from None


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, limits: Limits, os_limits: OsLimits) -> None:
        env = child_environment()
        parent = str(os.getpid())
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter, module, pid
            [sys.executable, "-s", "-m", "sandbox.engines.worker", parent],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        self.jobs = 0
        self.demoted = False  # reniced as a long job: restored or retired after the call
        # The sources of its last job: its engine keeps a database over them for the next
        # job over the same (a hint for `ProcessEngine._take`, never a check).
        self.sources: tuple[tuple[str, str, str], ...] | None = None
        self.mounted: list[Any] | None = None  # the same, as that job's message mounted them
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin.fileno()
        self._out = self.process.stdout.fileno()
        os.set_blocking(self._out, False)
        init = {
            "op": "init",
            "limits": protocol.encode_limits(limits),
            "os": {
                "address_space": os_limits.address_space,
                "open_files": os_limits.open_files,
                "cpu_s": os_limits.cpu_s,
                "no_writes": os_limits.no_writes,
            },
        }
        reply = self.call(init, time.monotonic() + START_TIMEOUT_S)
        if not reply.get("ok"):
            self.kill()
            raise SandboxBug("a sandbox worker did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def call(
        self, message: dict[str, Any], deadline: float, demote_at: float | None = None
    ) -> dict[str, Any]:
        """Send ``message``; the reply, or _Lost / TimeoutError (the worker is then killed).
        Still waiting at ``demote_at``: the worker is demoted (``demote``)."""
        try:
            protocol.write_all(self._in, protocol.frame(message))
        except OSError:
            self.kill()
            raise _Lost from None
        try:
            header = self._read(4, deadline, demote_at)
            size = int.from_bytes(header, "big")
            if size > protocol.MAX_FRAME:
                raise _Lost
            return protocol.decode(self._read(size, deadline, demote_at))
        except (_Lost, protocol.ProtocolError, TimeoutError):
            self.kill()
            raise

    def demote(self) -> None:
        """Renice every thread of the worker to ``LONG_JOB_NICE`` (on Linux a nice value is
        per thread: DuckDB's threads each need it; threads they start later inherit it)."""
        self.demoted = True
        for _ in range(2):  # a thread started while the first pass ran
            for tid in self._threads():
                with contextlib.suppress(OSError):
                    if os.getpriority(os.PRIO_PROCESS, tid) < LONG_JOB_NICE:
                        os.setpriority(os.PRIO_PROCESS, tid, LONG_JOB_NICE)

    def restore(self) -> bool:
        """Back to the normal priority after a demoted call; False when that needs a privilege
        this process lacks (then the worker is retired instead)."""
        normal = os.getpriority(os.PRIO_PROCESS, 0)
        try:
            for tid in self._threads():
                with contextlib.suppress(ProcessLookupError):
                    os.setpriority(os.PRIO_PROCESS, tid, normal)
        except OSError:  # PermissionError: lowering a nice value needs CAP_SYS_NICE
            return False
        self.demoted = False
        return True

    def _threads(self) -> list[int]:
        """The worker's thread ids (nice values are per thread on Linux); without /proc, the
        process's main thread at least."""
        try:
            return [int(t) for t in os.listdir(f"/proc/{self.pid}/task")]
        except OSError:
            return [self.pid]

    def _read(self, size: int, deadline: float, demote_at: float | None) -> bytes:
        chunks: list[bytes] = []
        while size:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                raise TimeoutError
            if demote_at is not None and not self.demoted:
                if now >= demote_at:
                    self.demote()
                else:
                    remaining = min(remaining, demote_at - now)
            ready, _, _ = select.select([self._out], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(self._out, min(size, 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise _Lost
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def stop(self) -> None:
        """Ask the worker to exit (close its input), kill it if it does not."""
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()


class ProcessEngine:
    """The engine interface, with every call run in a sandbox worker process."""

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        spares: int = 1,
        grace_s: float = 5.0,
        os_limits: OsLimits | None = None,
        max_jobs: int = 200,
        max_workers: int = 64,
        long_job_s: float | None = 0.5,
    ) -> None:
        if type(spares) is not int or not 0 <= spares <= 64:
            raise SandboxBug("spares must be an integer from 0 to 64")
        if type(max_workers) is not int or not max(1, spares) <= max_workers <= 256:
            raise SandboxBug("max_workers must be an integer from max(1, spares) to 256")
        if not 0 < grace_s <= 600 or type(max_jobs) is not int or max_jobs < 1:
            raise SandboxBug("grace_s must be in (0, 600] and max_jobs at least 1")
        if long_job_s is not None and not 0 < long_job_s <= 3600:
            raise SandboxBug("long_job_s must be None or in (0, 3600]")
        self.limits = limits
        self.grace_s = grace_s
        self.long_job_s = long_job_s
        self.os_limits = os_limits or OsLimits(cpu_s=limits.timeout_s * limits.threads + grace_s)
        self._spares = spares
        self._max_jobs = max_jobs
        self._max_workers = max_workers
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        # One long-lived thread starts every worker (see PR_SET_PDEATHSIG in the docstring).
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        self._lock = threading.Lock()
        self._wanted = threading.Condition(self._lock)
        self._closed = False
        # Sources of workers about to retire (mounted, affinity), for the filler to prepare a
        # successor over (the newest two at most: a successor is a worker process).
        self._handovers: list[tuple[list[Any], tuple[tuple[str, str, str], ...]]] = []
        self._filler: threading.Thread | None = None
        if spares:
            self._filler = threading.Thread(
                target=self._fill, name="sandbox-worker-spares", daemon=True
            )
            self._filler.start()

    # --- the engine interface ---------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """The most worker processes this engine has at once (idle, busy and starting)."""
        return self._max_workers

    def run(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
    ) -> ResultTable:
        message = self._run_message(query, sources, params, (), {})
        reply = self._call(message, affinity=_affinity(message))
        return _table(reply["table"])

    def run_with_auxiliary(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
        auxiliary: Sequence[AuxiliaryQuery],
        extra_params: Mapping[str, object] | None = None,
    ) -> tuple[ResultTable, tuple[ResultTable, ...]]:
        message = self._run_message(query, sources, params, auxiliary, extra_params or {})
        reply = self._call(message, affinity=_affinity(message))
        blobs = reply.get(protocol.BLOBS, [])
        tables = tuple(_table(t, blobs) for t in reply["auxiliary"])
        if len(tables) != len(auxiliary):
            raise ExecutionError(ExecutionCategory.INTERNAL)
        return _table(reply["table"]), tables

    def run_dp(
        self, request: DpRun, sources: Mapping[str, TableSource], params: Mapping[str, object]
    ) -> DpOutcome:
        """A dp plan run by ``sandbox.dp.snapshot.run_dp`` in the worker, which reads the
        files and so is where their snapshot is fingerprinted."""
        message = self._run_message(request.full, sources, params, (), {})
        message["op"] = "dp_run"
        message["dp"] = dp_snapshot.encode_run(request)
        return dp_snapshot.decode_outcome(self._call(message))

    def distinct_values(
        self, source: TableSource, column: str, limit: int = 1000
    ) -> tuple[str | int, ...]:
        message = {
            "op": "distinct_values",
            "source": protocol.encode_source(source),
            "column": column,
            "limit": limit,
        }
        values = self._call(message)["values"]
        return tuple(v for v in values if isinstance(v, str | int) and not isinstance(v, bool))

    def infer_schema(self, source: TableSource) -> tuple[tuple[str, str], ...]:
        message = {"op": "infer_schema", "source": protocol.encode_source(source)}
        return tuple((str(c[0]), str(c[1])) for c in self._call(message)["columns"])

    def profile(self, source: TableSource, request: ProfileRequest) -> DatasetProfile:
        """A data-quality profile computed by a worker next to the data (counts only)."""
        message = {
            "op": "profile",
            "source": protocol.encode_source(source),
            "request": request.encode(),
        }
        return request.screened(DatasetProfile.decode(self._call(message)["profile"]))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._wanted.notify_all()
        # A spare being started is not waited for (~0.3 s): the filler kills it once it is up.
        # An idle worker holds nothing to finish: killed at once (waiting for each interpreter
        # to exit took ~0.3 s a worker). A busy one is asked to exit when its call returns.
        for worker in idle:
            worker.kill()
        for worker in busy:
            worker.stop()
        self._spawner.shutdown(wait=False, cancel_futures=True)

    def ready(self) -> bool:
        """Can a job get a worker? True if one is idle and alive, else if one can be started
        now (it is kept as a spare); False at the worker cap with none idle, or on failure."""
        with self._lock:
            if self._closed:
                return False
            if any(w.alive() for w in self._idle):
                return True
            if self._count() >= self._max_workers:
                return bool(self._busy)  # all busy: jobs are running, the pool is working
            self._starting += 1
        try:
            worker = self._start()
        except (OSError, SandboxError, _Lost, TimeoutError, protocol.ProtocolError):
            self._started(None)
            return False
        if not self._started(worker):
            worker.stop()
        return True

    # --- for tests and benchmarks -----------------------------------------------------

    def worker_pids(self) -> tuple[int, ...]:
        """Process ids of the workers (idle and busy)."""
        with self._lock:
            return tuple(w.pid for w in (*self._idle, *self._busy))

    def busy_pids(self) -> tuple[int, ...]:
        with self._lock:
            return tuple(w.pid for w in self._busy)

    def worker_limits(self) -> dict[str, Any]:
        """The OS limits a worker runs under, as it reports them."""
        limits: dict[str, Any] = self._call({"op": "limits"}, count=False)["limits"]
        return limits

    # --- internals --------------------------------------------------------------------

    def _run_message(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
        auxiliary: Sequence[AuxiliaryQuery],
        extra: Mapping[str, object],
    ) -> dict[str, Any]:
        mounted = []
        for table in query.tables:
            source = sources.get(table)
            if source is None or source.dataset_id != table:
                raise SandboxBug(f"no source given for dataset {table}")
            mounted.append(protocol.encode_source(source))
        return {
            "op": "run",
            "query": protocol.encode_query(query),
            "sources": mounted,
            "params": protocol.encode_params(dict(params)),
            "auxiliary": [protocol.encode_auxiliary(a) for a in auxiliary],
            "extra": protocol.encode_params(dict(extra)),
        }

    def _call(
        self,
        message: dict[str, Any],
        *,
        count: bool = True,
        affinity: tuple[tuple[str, str, str], ...] | None = None,
    ) -> dict[str, Any]:
        """Send ``message`` to a worker; ``affinity``: the job's sources, to prefer an idle
        worker whose last job read the same (its locked database is still kept for them)."""
        worker = self._take(affinity)
        started = time.monotonic()
        deadline = started + self.limits.timeout_s + self.grace_s
        demote_at = None if self.long_job_s is None else started + self.long_job_s
        try:
            reply = worker.call(message, deadline, demote_at)
        except TimeoutError:
            self._drop(worker)
            raise QueryTimeout(self.limits.timeout_s) from None
        except _Lost:
            self._drop(worker)
            raise ExecutionError(ExecutionCategory.WORKER_LOST) from None
        except BaseException:
            worker.kill()
            self._drop(worker)
            raise
        worker.jobs += int(count)
        if affinity is not None:
            worker.sources, worker.mounted = affinity, message.get("sources")
        self._give_back(worker)
        if reply.get("ok") is True:
            return reply
        error = reply.get("error")
        failure: SandboxError = protocol.decode_error(error if isinstance(error, dict) else {})
        raise failure

    def _count(self) -> int:
        """Workers idle, busy or being started (under the lock)."""
        return len(self._idle) + len(self._busy) + self._starting

    def _start(self) -> _Worker:
        """A new worker, started by the spawner thread."""
        return self._spawner.submit(_Worker, self.limits, self.os_limits).result()

    def _take(self, affinity: tuple[tuple[str, str, str], ...] | None = None) -> _Worker:
        deadline = time.monotonic() + self.limits.timeout_s + self.grace_s
        with self._lock:
            while True:
                if self._closed:
                    raise SandboxBug("the engine is closed")
                while self._idle:
                    worker = self._idle.pop(self._preferred(affinity))
                    if worker.alive():
                        self._busy.add(worker)
                        self._wanted.notify_all()
                        return worker
                    worker.kill()
                if self._count() < self._max_workers:
                    break
                # At the cap: a busy worker comes back (or is killed) within its deadline.
                if not self._wanted.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise QueryTimeout(self.limits.timeout_s)
            self._starting += 1
            self._wanted.notify_all()
        try:
            worker = self._start()  # none ready: start one now
        except BaseException:
            self._started(None)
            raise
        with self._lock:  # busy in the step that ends its start: the count never dips
            self._starting -= 1
            self._busy.add(worker)
        return worker

    def _preferred(self, affinity: tuple[tuple[str, str, str], ...] | None) -> int:
        """Which idle worker a job takes (under the lock): the last returned whose last job
        read the same sources, else the last returned. Two kinds of job alternating on a
        pool would otherwise each find the other's database and make a new one."""
        if affinity is not None:
            for index in range(len(self._idle) - 1, -1, -1):
                if self._idle[index].sources == affinity:
                    return index
        return len(self._idle) - 1

    def _give_back(self, worker: _Worker) -> None:
        if worker.demoted and worker.alive():
            worker.restore()  # kept if it could be; else retired below (a fresh one is started)
        with self._lock:
            self._busy.discard(worker)
            keep = (
                not self._closed
                and worker.alive()
                and worker.jobs < self._max_jobs
                and not worker.demoted
            )
            if keep:
                self._idle.append(worker)
                if (
                    self._filler is not None
                    and worker.jobs == self._max_jobs - HANDOVER_JOBS
                    and worker.sources is not None
                    and worker.mounted is not None
                ):
                    self._handovers = [*self._handovers[-1:], (worker.mounted, worker.sources)]
            self._wanted.notify_all()
        if not keep:
            worker.kill()  # between jobs it holds nothing to finish; no wait on the job's path

    def _drop(self, worker: _Worker) -> None:
        with self._lock:
            self._busy.discard(worker)
            self._wanted.notify_all()

    def _fill(self) -> None:
        """Keep ``spares`` idle workers started ahead of jobs, and start the prepared successor
        of each worker about to retire (``HANDOVER_JOBS``)."""
        while True:
            with self._lock:
                self._wanted.wait_for(
                    lambda: (
                        self._closed
                        or (
                            (len(self._idle) < self._spares or self._handovers)
                            and self._count() < self._max_workers
                        )
                    )
                )
                if self._closed:
                    return
                handover = self._handovers.pop() if self._handovers else None
                self._starting += 1
            try:
                worker: _Worker | None = self._start()
            except (OSError, SandboxError, _Lost, TimeoutError, protocol.ProtocolError):
                self._started(None)
                time.sleep(1.0)  # could not start one; jobs start their own meanwhile
                continue
            except RuntimeError:  # the spawner was shut down: closing
                self._started(None)
                return
            if handover is not None and worker is not None and not self._prepare(worker, *handover):
                worker = None  # lost while preparing (killed)
            # A successor goes first in line, the last an idle worker is taken from: the worker
            # it succeeds is still preferred for its sources until it retires.
            if not self._started(worker, first=handover is not None) and worker is not None:
                worker.kill()  # started as the engine closed
                return

    def _prepare(
        self, worker: _Worker, mounted: list[Any], sources: tuple[tuple[str, str, str], ...]
    ) -> bool:
        """Have a new worker (not yet idle: no job can take it) make the database over
        ``sources``; False if it was lost meanwhile. A database it could not make (a source
        gone) is only not there: the job that needs one makes it, and meets the error."""
        deadline = time.monotonic() + self.limits.timeout_s + self.grace_s
        try:
            reply = worker.call({"op": "prepare", "sources": mounted}, deadline)
        except (_Lost, TimeoutError, protocol.ProtocolError):
            return False
        if reply.get("ok") is True:
            worker.sources, worker.mounted = sources, mounted
        return True

    def _started(self, worker: _Worker | None, *, first: bool = False) -> bool:
        """A start counted in ``_starting`` is over: ``worker`` (None: it failed) becomes
        idle in the same step, so the count never dips below the workers there are. False
        if it is not kept (none, or the engine closed). ``first``: at the head of the idle
        line (taken last), not at its end."""
        with self._lock:
            self._starting -= 1
            self._wanted.notify_all()
            if worker is None or self._closed:
                return False
            self._idle.insert(0 if first else len(self._idle), worker)
            return True


def _affinity(message: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...] | None:
    """The sources a run message mounts, as a worker remembers them (`_Worker.sources`)."""
    try:
        return tuple(
            sorted(
                (str(m["dataset_id"]), str(m["format"]), str(m["path"])) for m in message["sources"]
            )
        )
    except (KeyError, TypeError):
        return None
