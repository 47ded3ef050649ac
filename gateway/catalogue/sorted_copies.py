"""Sorted copies of verify datasets: a key looked up, not every row scanned (issue 13).

A verify job compares the requester's keys with one column of a dataset (`CompiledQuery.
key_column`). Over a Parquet or CSV file that is a scan of every row per job: ~160 ms at
10M rows for one key. For a file of at least `verify_sorted_copy_min_bytes`, the gateway has
the sandbox make a copy of the file's rows ordered by that column (`sandbox.make_sorted_copy`:
a process of its own that may write in its own build directory and nowhere else), and runs
the dataset's verify jobs on the copy once it exists: one key then reads one row group of
4,096 rows (~2 ms at 1M or 10M rows in DuckDB, against ~30 ms and ~160 ms for a scan), and
the answers are the file's (the copy holds the same rows; tests hold both to the same
answers).

- A copy is named after the dataset, the column and the file's identity: inode, size,
  modification and change times (not its path or device, so replicas that mount one home at
  different places name it alike). A file changed in any way is another identity, so no job
  reads a copy of other rows: until the copy of the new file is made, jobs read the file, and
  the copies of the dataset's older identities are deleted as soon as a job sees the change.
- Copies are made by one background thread, one at a time, never on a job's path. The file
  is looked at again before a build (a version already replaced is not built) and after it
  (a file that changed meanwhile gets no copy). A build needs free disk of three times the
  file plus 1 GiB, and spills at most twice the file's size.
- A copy with a DuckDB log (`.wal`) beside it is not used (a log would be replayed into a
  read-only copy): it is deleted. So is a copy a job could not read (`discard`); its job
  runs again on the file. A copy that could not be made, or was discarded, is not made again
  for that identity by this process (logged; jobs read the file as before).
- `sweep` (at start-up) deletes every copy that is not of a registered dataset's file as it
  is now, and build directories a gateway killed mid-build left behind.
- Copies are derived data: not in backups, safe to delete (they are made again).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from stat import S_ISREG

from sandbox import SandboxError, TableSource, make_sorted_copy, stale_sorted_builds

log = logging.getLogger("insitu.sorted_copies")
BUILD_TIMEOUT_S = 1800.0
FREE_DISK_RESERVE = 2**30  # bytes a build leaves free on the home's disk, beyond its own
_READABLE = ("parquet", "csv")
_NAME = re.compile(
    r"(?P<dataset>[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.(?P<column>[A-Za-z_][A-Za-z0-9_]*)\.[0-9a-f]{32}\.duckdb"
)
_SIDE_FILES = (".wal", ".wal.checkpoint", ".wal.recovery")
Identity = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns
Task = tuple[TableSource, str, Identity, Path] | Callable[[], None] | None


def _identity(source: TableSource) -> Identity | None:
    """The identity of the source's regular file; None if there is none."""
    try:
        stat = source.file.stat()
    except OSError:
        return None
    if not S_ISREG(stat.st_mode):
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def _delete(copy: Path) -> None:
    for path in (copy, *(copy.with_name(copy.name + s) for s in _SIDE_FILES)):
        path.unlink(missing_ok=True)


class SortedCopies:
    """The sorted copies of one gateway's verify datasets (see the module docstring)."""

    def __init__(self, directory: Path, *, min_bytes: int, memory_limit: str, threads: int) -> None:
        self.directory = directory
        self._min_bytes = min_bytes
        self._memory_limit = memory_limit
        self._threads = threads
        self._asked: set[Path] = set()  # queued, being made, failed or discarded: not again
        self._seen: dict[tuple[str, str], Path] = {}  # the copy each lookup wanted last
        self._lock = threading.Lock()
        self._queue: queue.Queue[Task] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.made = 0  # copies made by this process (for tests and metrics)

    def sources_for(
        self, sources: Mapping[str, TableSource], key_column: tuple[str, str] | None
    ) -> dict[str, TableSource]:
        """`sources`, with the key's dataset read from its sorted copy when the copy of the
        file as it is now exists; otherwise unchanged (and the copy is asked for)."""
        found = dict(sources)
        if key_column is None or self._min_bytes < 0:
            return found
        dataset, column = key_column
        source = sources.get(dataset)
        if source is None or source.format not in _READABLE:
            return found
        identity = _identity(source)
        if identity is None:
            return found
        path = self._path(source, column, identity)
        with self._lock:
            changed = self._seen.get((dataset, column)) != path
            self._seen[(dataset, column)] = path
        if changed:  # a new file (or the first look): no older copy of this key may stay
            self._delete_others(dataset, column, keep=path)
        if identity[1] < self._min_bytes:
            return found
        if path.is_file() and not any(path.with_name(path.name + s).exists() for s in _SIDE_FILES):
            found[dataset] = TableSource(dataset, "sorted", path)
        elif path.is_file():
            self.discard(TableSource(dataset, "sorted", path))
        else:
            self._ask(source, column, identity, path)
        return found

    def discard(self, copy: TableSource) -> None:
        """Delete a copy a job could not read (or that has a log beside it); it is not made
        again for that identity by this process."""
        log.warning(
            "the sorted copy of %s is discarded; verify jobs read the file", copy.dataset_id
        )
        with self._lock:
            self._asked.add(copy.file)
        _delete(copy.file)

    def sweep(self, current: Callable[[], Mapping[str, TableSource]]) -> None:
        """In the background, soon: delete every copy that is not of a registered dataset's
        file as it is now (`current`: the file sources by dataset id), and stale builds."""
        self._start()
        self._queue.put(lambda: self._sweep(current()))

    def wait_idle(self, timeout: float) -> bool:
        """Whether everything asked for was made, swept or given up within `timeout` (for
        tests and benchmarks)."""
        done = threading.Event()

        def watch() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=watch, daemon=True).start()
        return done.wait(timeout)

    def close(self) -> None:
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=5)

    def _path(self, source: TableSource, column: str, identity: Identity) -> Path:
        text = "\n".join(["sorted-copy/3", source.format, column, *map(str, identity)])
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self.directory / f"{source.dataset_id}.{column}.{digest}.duckdb"

    def _delete_others(self, dataset: str, column: str, *, keep: Path | None) -> None:
        if not self.directory.is_dir():
            return
        for other in self.directory.iterdir():
            named = _NAME.fullmatch(other.name)
            if named and (named["dataset"], named["column"]) == (dataset, column) and other != keep:
                _delete(other)

    def _sweep(self, sources: Mapping[str, TableSource]) -> None:
        if not self.directory.is_dir():
            return
        stale_sorted_builds(self.directory, 2 * BUILD_TIMEOUT_S)
        for copy in self.directory.iterdir():
            named = _NAME.fullmatch(copy.name)
            if named is None:
                continue
            source = sources.get(named["dataset"])
            identity = _identity(source) if source is not None else None
            if (
                identity is None
                or source is None
                or copy != self._path(source, named["column"], identity)
            ):
                _delete(copy)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="insitu-sorted-copies", daemon=True
                )
                self._thread.start()

    def _ask(self, source: TableSource, column: str, identity: Identity, path: Path) -> None:
        with self._lock:
            if path in self._asked:
                return
            self._asked.add(path)
        self._start()
        self._queue.put((source, column, identity, path))

    def _run(self) -> None:
        while (task := self._queue.get()) is not None:
            try:
                if callable(task):
                    task()
                else:
                    self._make(*task)
            except Exception:  # a copy is an optimisation: the jobs read the file instead
                log.exception("sorted copies: a background task failed")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _make(self, source: TableSource, column: str, identity: Identity, path: Path) -> None:
        if _identity(source) != identity:  # replaced while queued: its successor is asked for
            return
        self.directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.mkdir(exist_ok=True, mode=0o700)
        stale_sorted_builds(self.directory, 2 * BUILD_TIMEOUT_S)
        size = identity[1]
        if shutil.disk_usage(self.directory).free < 3 * size + FREE_DISK_RESERVE:
            log.warning("no sorted copy of %s: too little free disk", source.dataset_id)
            return
        try:
            _, landlock = make_sorted_copy(
                source,
                column,
                path,
                memory_limit=self._memory_limit,
                threads=self._threads,
                timeout_s=BUILD_TIMEOUT_S,
                spill_limit=f"{max(2 * size, 2**28) // 2**20}MiB",
            )
        except SandboxError as exc:
            log.warning("a sorted copy of %s failed: %s", source.dataset_id, exc)
            return
        if landlock == 0:
            log.warning("sorted copies are made without Landlock (this kernel has none)")
        if _identity(source) != identity:  # changed while it was read: not a copy of it
            _delete(path)
            with self._lock:
                self._asked.discard(path)
            return
        self.made += 1
        log.info("sorted copy of %s by %s made", source.dataset_id, column)
        self._delete_others(source.dataset_id, column, keep=path)
