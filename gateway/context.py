"""The wired-up gateway: one object holding the store, policy, audit trail, identity and engine.

Built once by `build_gateway(settings)`; the API, the worker pool and the CLI's local commands
all use the same object. Start-up fails fast on a bad store, policy or key.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from gateway import db
from gateway.audit_trail import AuditTrail
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.auth.keysource import KeySource, RemoteJwks
from gateway.auth.localsource import LocalKeySource
from gateway.auth.verifier import TokenVerifier
from gateway.auth_audit import FailedAuthentications
from gateway.errors import GatewayError
from gateway.home import ISSUER_KEYS, open_trail
from gateway.policy_store import LivePolicy
from gateway.settings import Settings
from sandbox import DuckDBEngine, Limits, TableSource
from sandbox.engine import Engine
from sandbox.oslimits import OsLimits, default_address_space, parse_size
from sandbox.process_engine import ProcessEngine


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


def build_gateway(settings: Settings) -> Gateway:
    engine = db.create_engine(settings.resolved_database_url)
    try:
        db.check_durability(engine)
    except BaseException:
        engine.dispose()
        raise
    issuer: LocalIssuer | None = None
    issuer_keys: IssuerKeys | None = None
    keys: KeySource
    local_keys: LocalKeySource | None = None
    if settings.oidc_issuer is None:
        local_keys = LocalKeySource(settings.keys_dir / ISSUER_KEYS)
        issuer_keys = local_keys.keys()
        issuer = LocalIssuer(
            issuer_keys, issuer=settings.local_issuer, audience=settings.oidc_audience
        )
        keys = local_keys
        issuer_name = settings.local_issuer
    else:
        # Without INSITU_OIDC_JWKS_URL: OpenID Connect discovery from the issuer's metadata.
        keys = RemoteJwks(
            settings.oidc_jwks_url,
            issuer=settings.oidc_issuer,
            min_refresh_interval_s=settings.jwks_refresh_interval_s,
            cache_ttl_s=settings.jwks_cache_ttl_s,
            max_stale_s=settings.jwks_max_stale_s,
        )
        issuer_name = settings.oidc_issuer
    verifier = TokenVerifier(
        keys,
        issuer=issuer_name,
        audience=settings.oidc_audience,
        algorithms=settings.token_algorithm_list,
        leeway_s=settings.token_leeway_s,
        token_type=settings.token_type,
        token_type_claim=settings.token_type_claim,
        department_claim=settings.oidc_department_claim,
        roles_claim=settings.oidc_roles_claim,
    )
    limits = Limits(
        timeout_s=settings.job_timeout_s,
        memory_limit=settings.job_memory_limit,
        threads=settings.job_threads,
        max_rows=settings.max_result_rows,
    )
    sandbox_engine = sandbox_engine_for(settings, limits)
    trail = open_trail(settings)
    trail.attach(engine)
    return Gateway(
        settings=settings,
        db=engine,
        audit=trail,
        policy=LivePolicy(engine, refresh_s=settings.policy_refresh_s),
        tokens=verifier,
        key_source=keys,
        issuer=issuer,
        issuer_keys=issuer_keys,
        engine=sandbox_engine,
        value_sets=ValueSets(sandbox_engine),
        failed_auth=FailedAuthentications(trail),
        local_keys=local_keys,
    )


def sandbox_engine_for(settings: Settings, limits: Limits) -> Engine:
    """Worker processes by default; in the gateway's process only when configured so."""
    if settings.sandbox_isolation == "inprocess":
        return DuckDBEngine(limits, spares=settings.workers)
    address_space = (
        parse_size(settings.sandbox_address_space)
        if settings.sandbox_address_space is not None
        else default_address_space(limits.memory_limit)
    )
    os_limits = OsLimits(
        address_space=address_space,
        cpu_s=limits.timeout_s * limits.threads + settings.sandbox_grace_s,
    )
    return ProcessEngine(
        limits,
        spares=settings.sandbox_spares,
        grace_s=settings.sandbox_grace_s,
        os_limits=os_limits,
    )
