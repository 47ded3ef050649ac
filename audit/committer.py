"""Group commit: one writer thread appends queued events in batches, one transaction each.

    caller ─ append(events) ─▶ queue ─▶ writer: BEGIN; append_prepared(all queued); [checkpoint];
    caller ◀─ indexes (durable) ◀──────────────  COMMIT (one fsync for the whole batch)

`append` returns only after the transaction holding the events has committed, so what it returns
is durable; if the transaction fails, every caller in the batch gets `StoreError` and nothing of
the batch is in the log (fail closed). Concurrent callers share one commit, so throughput grows
with concurrency instead of collapsing on fsync. The writer keeps the tree's right edge from its
last commit (`append_prepared` re-reads it only if another writer appended in between).

Checkpoints follow a cadence instead of one per read: `nudge()` asks for one soon without
waiting (the gateway nudges when a job finishes; the writer then waits up to `NUDGE_WAIT_S`
for an append to sign with, such as the read of the result just released, so the two share
one transaction instead of taking two), a caller may ask for a checkpoint covering the
first `covering` entries (`append(..., covering=n)`, `checkpoint(n)`), and the writer signs at
most one per batch, only when the newest checkpoint it signed does not cover what was asked
(`SqlAuditLog.checkpoint` stores one note per size). The committer knows nothing of SQL:
`begin()` must return a context manager yielding a connection in a transaction that commits on
exit and rolls back on error.

When no append has arrived for `IDLE_S`, the writer extends the review index (`index_terms`,
short transactions; also one step between batches once it is `MAX_INDEX_LAG` behind): the terms
auditors search by are derived data, kept off the append path.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from audit.errors import AuditError, StoreError
from audit.events import Event
from audit.prepared import PreparedEvent, prepare
from audit.tree import CompactRange

__all__ = ["Committed", "GroupCommitter"]

INDEX_STEP: Final = 256  # entries per review-index transaction (short: an append may arrive)
IDLE_S: Final = 0.05  # the writer extends the review index after this long without an append
MAX_INDEX_LAG: Final = 50_000  # beyond this, index a step between batches even under load
NUDGE_WAIT_S: Final = 0.02  # a nudge alone waits this long for appends to sign with

log = logging.getLogger("audit.committer")


class _Log(Protocol):
    def append_prepared(
        self, conn: Any, entries: Sequence[PreparedEvent], tail: CompactRange | None
    ) -> tuple[Sequence[Any], CompactRange]: ...

    def sign_head(self, conn: Any) -> Any: ...  # a `SignedHead`: .size and .note

    def index_terms(self, conn: Any, limit: int) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Committed:
    """What a committed request got: the indexes of its events and, if asked, a signed
    checkpoint note of `checkpoint_size` >= the `covering` asked for."""

    indexes: tuple[int, ...]
    checkpoint: str | None
    checkpoint_size: int


@dataclass(slots=True)
class _Request:
    events: Sequence[Event]
    covering: int | None
    done: threading.Event = field(default_factory=threading.Event)
    result: Committed | None = None
    error: AuditError | None = None


class GroupCommitter:
    """Batches appends from many threads into few transactions (see the module docstring)."""

    def __init__(
        self,
        log: _Log,
        begin: Callable[[], AbstractContextManager[Any]],
        *,
        max_batch: int = 1024,
        timeout_s: float = 30.0,
        on_signed: Callable[[int, str], None] | None = None,
    ) -> None:
        """`on_signed(size, note)` is called with each newer checkpoint once its transaction
        has committed and before any caller is given it (the gateway remembers it outside the
        store); if it raises, the batch's callers get `StoreError`."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._log = log
        self._begin = begin
        self._max_batch = max_batch
        self._timeout_s = timeout_s
        self._on_signed = on_signed
        self._queue: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._nudged = False
        self._head: tuple[int, str] | None = None  # the newest checkpoint this writer signed
        self._tail: CompactRange | None = None  # the tree's right edge after our last commit
        self._index_lag = 1  # entries not yet in the review index, as last seen (1: unknown)
        self.batches = 0  # transactions committed (for metrics and benchmarks)

    # -- the callers' side --------------------------------------------------------------------

    def append(self, events: Sequence[Event], *, covering: int | None = None) -> Committed:
        """Append `events` (in order, contiguously) and return once they are durable; with
        `covering`, also return a checkpoint of at least that many entries."""
        for event in events:
            if not isinstance(event, Event):
                raise StoreError("only audit events can be appended")
        return self._submit(_Request(list(events), covering))

    def checkpoint(self, covering: int = 0) -> Committed:
        """A signed checkpoint of at least `covering` entries (signing one if needed)."""
        return self._submit(_Request([], covering))

    def nudge(self) -> None:
        """Ask for a checkpoint soon, without waiting for it."""
        with self._cond:
            self._nudged = True
            self._ensure_thread()
            self._cond.notify()

    def _submit(self, request: _Request) -> Committed:
        with self._cond:
            if self._stopping:
                raise StoreError("the audit writer is stopped; nothing was recorded")
            self._queue.append(request)
            self._ensure_thread()
            self._cond.notify()
        if not request.done.wait(self._timeout_s):
            raise StoreError("the audit log did not confirm the write in time")
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    # -- the writer ---------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="audit-group-commit", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued, then stop the writer (a later append restarts it)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self._timeout_s)
        with self._cond:
            self._thread = None
            self._stopping = False

    def _take(self) -> tuple[list[_Request], bool] | None:
        """The next batch and whether a checkpoint was asked for; ([], False) after `IDLE_S`
        without work while the review index is behind; None once stopping with nothing left."""
        with self._cond:
            while not self._queue and not self._nudged:
                if self._stopping:
                    return None
                if self._index_lag <= 0:
                    self._cond.wait()
                elif not self._cond.wait(IDLE_S) and not self._queue and not self._nudged:
                    return [], False
            if not self._queue and not self._stopping:  # a nudge alone: not urgent
                self._cond.wait_for(lambda: self._queue or self._stopping, NUDGE_WAIT_S)
            batch: list[_Request] = []
            count = 0
            while self._queue and (
                not batch or count + len(self._queue[0].events) <= self._max_batch
            ):
                request = self._queue.popleft()
                batch.append(request)
                count += len(request.events)
            nudged, self._nudged = self._nudged, False
            return batch, nudged

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            batch, nudged = taken
            if not batch and not nudged:
                self._index_step()  # idle
                continue
            try:
                self._commit(batch, nudged)
            except Exception as exc:  # fail closed: nobody in the batch is told "durable"
                if not isinstance(exc, AuditError):
                    log.error("the audit batch could not be committed", exc_info=exc)
                error = StoreError(
                    "the audit log cannot be written; nothing in this batch was recorded"
                )
                for request in batch:
                    request.error = error
                    request.done.set()
                continue
            for request in batch:
                request.done.set()
            # A checkpoint-only batch also counts: entries appended in callers' own transactions
            # (`SqlAuditLog.append`) reach the index only through the writer's idle steps.
            self._index_lag += max(1, sum(len(request.events) for request in batch))
            if self._index_lag >= MAX_INDEX_LAG:  # under sustained load: a step between batches
                self._index_step()

    def _index_step(self) -> None:
        """Extend the review index by one short transaction. A failure only delays the index
        (queries read what is not indexed yet); it is tried again after the next batch."""
        try:
            with self._begin() as conn:
                done, self._index_lag = self._log.index_terms(conn, INDEX_STEP)
        except Exception as exc:
            log.warning("the audit review index could not be extended", exc_info=exc)
            self._index_lag = 0  # wait for the next batch instead of retrying while idle
            return
        if not done:
            self._index_lag = 0  # nothing indexable (e.g. a gap another writer will fill)

    def _commit(self, batch: list[_Request], nudged: bool) -> None:
        # Encoding happens here, not in the callers' threads: under the GIL every caller made
        # runnable competes with this thread for each reacquisition after a database call, so
        # the less callers do once woken, the sooner the batch commits (measured: faster).
        events = [prepare(event) for request in batch for event in request.events]
        signed = self._head[0] if self._head is not None else -1
        asked = max((r.covering for r in batch if r.covering is not None), default=-1)
        head, tail = self._head, self._tail  # both kept only once the transaction has committed
        appended: list[Any] = []
        with self._begin() as conn:
            if events:
                placed, tail = self._log.append_prepared(conn, events, self._tail)
                appended = list(placed)
            if nudged or asked > signed:
                # One read of the size, under the lock, for both the note and its size: a size
                # read outside it could be overtaken by an append committed in between.
                signed_head = self._log.sign_head(conn)
                head = (int(signed_head.size), str(signed_head.note))
        if head is not None and head != self._head and self._on_signed is not None:
            self._on_signed(*head)
        self._head, self._tail = head, tail
        self.batches += 1
        position = 0
        for request in batch:
            count = len(request.events)
            indexes = tuple(int(a.index) for a in appended[position : position + count])
            position += count
            if request.covering is None:
                request.result = Committed(indexes, None, 0)
            elif head is None or head[0] < request.covering:
                request.error = StoreError(f"the log holds fewer than {request.covering} entries")
            else:
                request.result = Committed(indexes, head[1], head[0])
