"""The gateway's service object: the store, policy, audit trail, identity and engine, handed to
every use case. It is built once by `gateway.wiring.build_gateway(settings)`, the composition root;
the API, the worker pool and the CLI's local commands all use the same object.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.auth.keysource import KeySource, RemoteJwks
from gateway.auth.localsource import LocalKeySource
from gateway.auth.verifier import TokenVerifier
from gateway.errors import GatewayError
from gateway.settings import Settings
from gateway.store.policy_versions import LivePolicy
from gateway.trail.refusals import FailedAuthentications
from gateway.trail.writer import AuditTrail
from sandbox import Engine, TableSource


class Signal:
    """A wake-up without lost notifications: waiters name the generation they last saw."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, since: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._generation != since, timeout=timeout)


class ValueSets:
    """Public value sets of catalogue columns (`values_from`), cached per source file version."""

    def __init__(self, engine: Engine, *, max_values: int = 1000) -> None:
        self._engine = engine
        self._max = max_values
        self._cache: dict[tuple[str, str, int, int], tuple[str | int, ...]] = {}
        self._lock = threading.Lock()

    def get(self, source: TableSource, column: str) -> tuple[str | int, ...]:
        stat = source.path.stat()
        key = (str(source.path), column, stat.st_mtime_ns, stat.st_size)
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
    db: sa.Engine
    audit: AuditTrail
    policy: LivePolicy
    tokens: TokenVerifier
    key_source: KeySource
    issuer: LocalIssuer | None
    issuer_keys: IssuerKeys | None
    engine: Engine
    value_sets: ValueSets
    failed_auth: FailedAuthentications
    jobs_submitted: Signal = field(default_factory=Signal)
    jobs_finished: Signal = field(default_factory=Signal)
    local_keys: LocalKeySource | None = None  # the local issuer's key file, reloaded on rotation

    @property
    def data_root(self) -> Path:
        return self.settings.data_dir.resolve()

    def close(self) -> None:
        if isinstance(self.key_source, RemoteJwks):
            self.key_source.close()
        with contextlib.suppress(GatewayError):  # a log that cannot be written: shutting down
            self.failed_auth.close()
        self.audit.close()
        self.engine.close()
        self.db.dispose()
