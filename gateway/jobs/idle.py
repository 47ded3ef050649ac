"""This replica's idle worker threads, to which a submission may hand its job directly.

A worker that finds nothing to claim waits here (`IdleWorkers.wait`). A submission that finds
an idle worker, no job waiting in the queue and its department under the running cap inserts
its job already claimed by that worker, in the transaction that accepts it (`job.accepted` and
`job.started` together), and hands it over once committed (`gateway.jobs.submit`): the job
needs no claim transaction of its own, and no worker is woken to look for it. Nothing about a
job lives only here: the row is the job's record as for a claimed one (status, lease, worker),
so a gateway that dies after the commit leaves a leased job that any replica reclaims once the
lease expires, as after any claim.

A slot goes idle → taken (a submission is deciding, in its transaction) → given (the job) or
returned (the submission queued its job, was refused, or failed). A taken worker waits for
the outcome: the submission always ends it (`give` or `put_back`, in a `finally`).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from gateway.jobs.model import Claimed

TAKEN_WAIT_S = 60.0  # longest a worker waits on a submission's transaction before giving up


class _State(enum.Enum):
    IDLE = "idle"
    TAKEN = "taken"
    GIVEN = "given"
    RETURNED = "returned"
    GONE = "gone"  # the worker stopped waiting on a taken slot (a transaction that hung)


@dataclass(eq=False, slots=True)
class Slot:
    """One idle worker, as a submission holds it while deciding."""

    worker_id: str
    state: _State = _State.IDLE
    claimed: Claimed | None = None


class IdleWorkers:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._idle: dict[str, Slot] = {}  # longest idle first
        self._generation = 0

    def generation(self) -> int:
        """Read before a worker looks at the queue, passed to `wait` (no lost wake-up)."""
        with self._cond:
            return self._generation

    def wake(self) -> None:
        """A job was queued (or the pool stops): every idle worker looks at the queue."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def idle(self) -> int:
        with self._cond:
            return len(self._idle)

    def wait(self, worker_id: str, since: int, timeout: float) -> Claimed | None:
        """Worker `worker_id`, having found nothing to claim since `since`: wait up to
        `timeout` to be handed a job (returned already leased to this worker, with the
        catalogue's version its submission's transaction read); None when woken to look at
        the queue, or when the time is up."""
        slot = Slot(worker_id)
        with self._cond:
            if self._generation != since:
                return None
            self._idle[worker_id] = slot
            self._cond.wait_for(
                lambda: slot.state is not _State.IDLE or self._generation != since, timeout
            )
            if slot.state is _State.IDLE:
                del self._idle[worker_id]
                return None
            self._cond.wait_for(lambda: slot.state is not _State.TAKEN, TAKEN_WAIT_S)
            if slot.state is _State.TAKEN:
                slot.state = _State.GONE
            return slot.claimed if slot.state is _State.GIVEN else None

    def take(self) -> Slot | None:
        """A submission: the worker idle longest, taken while the submission decides."""
        with self._cond:
            if not self._idle:
                return None
            worker_id = next(iter(self._idle))
            slot = self._idle.pop(worker_id)
            slot.state = _State.TAKEN
            self._cond.notify_all()  # its wait for the outcome starts now
            return slot

    def give(self, slot: Slot, claimed: Claimed) -> bool:
        """Hand the committed job (leased to `slot.worker_id`) to its worker; False when the
        worker stopped waiting (the job then runs once its lease expires)."""
        with self._cond:
            if slot.state is not _State.TAKEN:
                return False
            slot.state, slot.claimed = _State.GIVEN, claimed
            self._cond.notify_all()
            return True

    def put_back(self, slot: Slot) -> None:
        """The submission did not hand its job to this worker: it looks at the queue again."""
        with self._cond:
            if slot.state is _State.TAKEN:
                slot.state = _State.RETURNED
                self._cond.notify_all()
