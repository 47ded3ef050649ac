"""The gateway's service object: the store, policy, audit trail, identity and engine, handed to
every use case. It is built once by `gateway.wiring.build_gateway(settings)`, the composition root;
the API, the worker pool and the CLI's local commands all use the same object.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.auth.keysource import KeySource, RemoteJwks
from gateway.auth.localsource import LocalKeySource
from gateway.auth.verifier import TokenVerifier
from gateway.catalogue.cache import CatalogueCache
from gateway.catalogue.sorted_copies import SortedCopies
from gateway.errors import GatewayError
from gateway.jobs.idle import IdleWorkers
from gateway.jobs.model import Job, StoredResult
from gateway.jobs.releases.copies import PartitionCopies
from gateway.settings import Settings
from gateway.store.db import Engine as StoreEngine
from gateway.store.policy_versions import LivePolicy
from gateway.trail.refusals import FailedAuthentications
from gateway.trail.writer import AuditTrail
from sandbox import Engine, TableSource


class Signal:
    """A wake-up without lost notifications: a waiter reads the generation before it looks,
    and a notify since then (the generation moved) means it must look again.

    Listeners may name a *topic* (a job id): a notify about another topic passes them by, so a
    release wakes the waits on that job, not every wait open on the gateway; a notify without
    a topic (the pool stopping) wakes them all.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 0
        self._listeners: dict[str | None, set[Callable[[], None]]] = {}

    def generation(self) -> int:
        with self._lock:
            return self._generation

    def notify(self, topic: str | None = None) -> None:
        with self._lock:
            self._generation += 1
            if topic is None:
                listeners = [f for found in self._listeners.values() for f in found]
            else:
                listeners = [*self._listeners.get(topic, ()), *self._listeners.get(None, ())]
        for listener in listeners:
            listener()

    def listen(self, listener: Callable[[], None], topic: str | None = None) -> Callable[[], None]:
        """Call `listener` (from the notifying thread) on every notify about `topic` (every
        notify, without one) and on every notify without a topic; returns the undo. For
        asyncio waiters: a listener that sets an event with `call_soon_threadsafe`."""
        with self._lock:
            self._listeners.setdefault(topic, set()).add(listener)

        def forget() -> None:
            with self._lock:
                found = self._listeners.get(topic)
                if found is not None:
                    found.discard(listener)
                    if not found:
                        del self._listeners[topic]

        return forget

    def listening(self, topic: str) -> bool:
        """Whether a listener here names `topic`."""
        with self._lock:
            return bool(self._listeners.get(topic))


class Handoffs:
    """Jobs' ends handed from the worker thread that committed them to a wait in this process
    (`gateway.jobs.waits`): the ended job's row and its stored result as a read would give
    them, so the wait need not read back what was just committed. Kept only for a job a wait
    here listens for, taken once; the newest `most` are kept (a wait gone meanwhile leaves
    one behind). A wait that finds none reads the store, as for another replica's jobs.

    Also the jobs this replica's workers run (`started` … `stopped`): a wait for one of them
    needs no read to begin with, since its end will be handed over here. A job is listed
    from the moment it is handed to a worker (or the worker starts it) until just before its
    end is announced (`Gateway.jobs_finished`), so a wait that found it listed cannot miss
    the announcement. Only waits use the list: a plain read of a job reads the store."""

    def __init__(self, most: int = 64, ttl_s: float = 30.0) -> None:
        self._most = most
        self._ttl_s = ttl_s
        self._ends: OrderedDict[str, tuple[float, Job, StoredResult | None]] = OrderedDict()
        self._running: dict[str, Job] = {}
        self._lock = threading.Lock()

    def put(self, job: Job, stored: StoredResult | None) -> None:
        with self._lock:
            self._ends[job.id] = (time.monotonic(), job, stored)
            while len(self._ends) > self._most:
                self._ends.popitem(last=False)

    def take(self, job_id: str) -> tuple[Job, StoredResult | None] | None:
        """The end handed over for `job_id`, once, if at most `ttl_s` old."""
        with self._lock:
            found = self._ends.pop(job_id, None)
        if found is None or time.monotonic() - found[0] > self._ttl_s:
            return None
        return found[1], found[2]

    def started(self, job: Job) -> None:
        """A worker of this replica has `job` (as claimed or handed to it) and will end it."""
        with self._lock:
            self._running[job.id] = job

    def stopped(self, job_id: str) -> None:
        """The worker is done with the job: called before its end is announced."""
        with self._lock:
            self._running.pop(job_id, None)

    def running(self, job_id: str) -> Job | None:
        """The job as its worker here was given it, while it runs here; else None."""
        with self._lock:
            return self._running.get(job_id)


def now_minute() -> int:
    return int(time.time() // 60)


class ValueSets:
    """Public value sets of catalogue columns (`values_from`), cached per source file version."""

    def __init__(self, engine: Engine, *, max_values: int = 1000) -> None:
        self._engine = engine
        self._max = max_values
        self._cache: dict[tuple[str, str, int, int], tuple[str | int, ...]] = {}
        self._lock = threading.Lock()

    def get(self, source: TableSource, column: str) -> tuple[str | int, ...]:
        if source.is_file:
            stat = source.file.stat()
            key = (str(source.path), column, stat.st_mtime_ns, stat.st_size)
        else:  # a table elsewhere: no version to see from here, so at most a minute old
            key = (f"{source.format}:{source.connection}:{source.table}", column, 0, now_minute())
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = self._engine.distinct_values(source, column, limit=self._max)
            with self._lock:
                self._cache[key] = cached
        return cached


@dataclass
class Gateway:
    settings: Settings
    db: StoreEngine
    audit: AuditTrail
    policy: LivePolicy
    tokens: TokenVerifier
    key_source: KeySource
    issuer: LocalIssuer | None
    issuer_keys: IssuerKeys | None
    engine: Engine
    value_sets: ValueSets
    failed_auth: FailedAuthentications
    jobs_finished: Signal = field(default_factory=Signal)
    handoffs: Handoffs = field(default_factory=Handoffs)  # jobs' ends, to waits here
    idle_workers: IdleWorkers = field(default_factory=IdleWorkers)  # jobs handed at acceptance
    catalogue: CatalogueCache = field(default_factory=CatalogueCache)
    partitions: PartitionCopies = field(default_factory=PartitionCopies)  # the atom check's
    local_keys: LocalKeySource | None = None  # the local issuer's key file, reloaded on rotation
    sorted_copies: SortedCopies | None = None  # verify lookups (embedded engine only)
    # Called as (template kind, final status, seconds from claim) when a worker finishes a job
    # (the API's Prometheus metrics); a hook must not raise.
    job_hooks: list[Callable[[str, str, float], None]] = field(default_factory=list)

    @property
    def data_root(self) -> Path:
        return self.settings.data_dir.resolve()

    def close(self) -> None:
        if isinstance(self.key_source, RemoteJwks):
            self.key_source.close()
        with contextlib.suppress(GatewayError):  # a log that cannot be written: shutting down
            self.failed_auth.close()
        self.audit.close()
        if self.sorted_copies is not None:
            self.sorted_copies.close()
        self.engine.close()
        self.db.dispose()
