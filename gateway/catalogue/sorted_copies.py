"""Sorted copies of verify datasets: a key looked up, not every row scanned (issue 13).

A verify job compares the requester's keys with one column of a dataset (`CompiledQuery.
key_column`). Over a Parquet or CSV file that is a scan of every row per job: ~160 ms at
10M rows for one key. For a file of at least `verify_sorted_copy_min_bytes`, the gateway has
the sandbox make a copy of the file's rows ordered by that column (`sandbox.make_sorted_copy`:
a process of its own that may write below `<home>/cache/sorted` and nowhere else), and runs
the dataset's verify jobs on the copy once it exists: one key then reads one row group of
16k rows (~6 ms at 10M rows), and the answers are the file's (the copy holds the same rows;
tests hold both to the same answers).

- A copy is named after the file's identity — path, device, inode, size, modification and
  change times — and the column. A file changed in any way is another identity, so no job
  reads a copy of other rows: until the copy of the new file is made, jobs read the file.
- Copies are made by one background thread, one at a time, never on a job's path. After a
  build the file's identity is looked at again; a file that changed meanwhile gets no copy.
  The copies of a dataset's older identities are deleted once a newer one is in place.
- A copy that could not be made is not tried again for that identity by this process
  (logged; the jobs read the file as before).
- Copies are derived data: not in backups, safe to delete (they are made again).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from stat import S_ISREG

from sandbox import SandboxError, TableSource, make_sorted_copy

log = logging.getLogger("insitu.sorted_copies")
BUILD_TIMEOUT_S = 1800.0
_READABLE = ("parquet", "csv")
_SUFFIX = re.compile(r"\.[0-9a-f]{32}\.duckdb")


def _identity(source: TableSource) -> tuple[int, ...] | None:
    """(device, inode, size, mtime_ns, ctime_ns) of the source's regular file; None if none."""
    try:
        stat = source.file.stat()
    except OSError:
        return None
    if not S_ISREG(stat.st_mode):
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


class SortedCopies:
    """The sorted copies of one gateway's verify datasets (see the module docstring)."""

    def __init__(self, directory: Path, *, min_bytes: int, memory_limit: str, threads: int) -> None:
        self.directory = directory
        self._min_bytes = min_bytes
        self._memory_limit = memory_limit
        self._threads = threads
        self._asked: set[Path] = set()  # queued, being made, or failed: not asked again
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[TableSource, str, tuple[int, ...], Path] | None]
        self._queue = queue.Queue()
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
        if identity is None or identity[2] < self._min_bytes:
            return found
        path = self._path(source, column, identity)
        if path.is_file():
            found[dataset] = TableSource(dataset, "sorted", path)
        else:
            self._ask(source, column, identity, path)
        return found

    def wait_idle(self, timeout: float) -> bool:
        """Whether every copy asked for was made or given up within `timeout` (for tests and
        benchmarks)."""
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

    def _path(self, source: TableSource, column: str, identity: tuple[int, ...]) -> Path:
        text = "\n".join(
            ["sorted-copy/1", str(source.file), source.format, column, *map(str, identity)]
        )
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        return self.directory / f"{source.dataset_id}.{column}.{digest}.duckdb"

    def _ask(self, source: TableSource, column: str, identity: tuple[int, ...], path: Path) -> None:
        with self._lock:
            if path in self._asked:
                return
            self._asked.add(path)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="insitu-sorted-copies", daemon=True
                )
                self._thread.start()
        self._queue.put((source, column, identity, path))

    def _run(self) -> None:
        while (task := self._queue.get()) is not None:
            try:
                self._make(*task)
            except Exception:  # a copy is an optimisation: the jobs read the file instead
                log.exception("a sorted copy of %s could not be made", task[0].dataset_id)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _make(
        self, source: TableSource, column: str, identity: tuple[int, ...], path: Path
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            make_sorted_copy(
                source,
                column,
                path,
                memory_limit=self._memory_limit,
                threads=self._threads,
                timeout_s=BUILD_TIMEOUT_S,
            )
        except SandboxError as exc:
            log.warning("a sorted copy of %s failed: %s", source.dataset_id, exc)
            return
        if _identity(source) != identity:  # changed while it was read: not a copy of it
            path.unlink(missing_ok=True)
            with self._lock:
                self._asked.discard(path)
            return
        self.made += 1
        log.info("sorted copy of %s by %s made", source.dataset_id, column)
        prefix = f"{source.dataset_id}.{column}"
        for other in self.directory.iterdir():
            name = other.name
            if other != path and name.startswith(prefix) and _SUFFIX.fullmatch(name[len(prefix) :]):
                other.unlink(missing_ok=True)  # an older identity's copy
