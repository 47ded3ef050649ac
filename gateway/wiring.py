"""The composition root: build the one `Gateway` from `Settings`.

Start-up fails fast on a bad store, policy or key. Nothing else constructs the store, the token
verifier or the sandbox engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.auth.keysource import KeySource, RemoteJwks
from gateway.auth.localsource import LocalKeySource
from gateway.auth.verifier import TokenVerifier
from gateway.catalogue.sorted_copies import SortedCopies
from gateway.context import Gateway, ValueSets
from gateway.home import ISSUER_KEYS, open_trail
from gateway.ops import continuity
from gateway.settings import Settings
from gateway.store import db
from gateway.store.policy_versions import LivePolicy
from gateway.trail.refusals import FailedAuthentications
from sandbox import (
    DuckDBEngine,
    Engine,
    JdbcConnection,
    Limits,
    OsLimits,
    ProcessEngine,
    SandboxError,
    default_address_space,
    parse_size,
)


def build_gateway(
    settings: Settings, *, jwks_clock: Callable[[], float] = time.monotonic
) -> Gateway:
    """`jwks_clock` times the remote JWKS cache (refresh interval, TTL, grace period)."""
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
            clock=jwks_clock,
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
    # Audit continuity: refuse a log behind the newest checkpoint handed out, and remember
    # each newer checkpoint outside the store before anyone is given it.
    try:
        continuity.check(settings, engine, trail)
    except BaseException:
        engine.dispose()
        raise
    trail.attach(engine, on_signed=continuity.Remembered(settings))
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
        sorted_copies=sorted_copies_for(settings),
    )


def sorted_copies_for(settings: Settings) -> SortedCopies | None:
    """Sorted copies for verify lookups: the embedded engine's, unless turned off."""
    if settings.engine != "duckdb" or settings.verify_sorted_copy_min_bytes < 0:
        return None
    return SortedCopies(
        settings.sorted_copies_dir,
        min_bytes=settings.verify_sorted_copy_min_bytes,
        memory_limit=settings.job_memory_limit,
        threads=settings.job_threads,
    )


def sandbox_engine_for(settings: Settings, limits: Limits) -> Engine:
    """Worker processes by default; in the gateway's process only when configured so. On
    Spark the gateway is a Spark Connect client: the queries run on the cluster."""
    if settings.engine == "spark":
        assert settings.spark_remote is not None  # Settings refuses spark without it
        # pyspark (the `spark` extra) loads only for a gateway that uses it
        from sandbox import SparkEngine  # noqa: PLC0415

        return SparkEngine(settings.spark_remote, limits, connections=jdbc_connections(settings))
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
        max_workers=max(settings.sandbox_max_workers, settings.sandbox_spares, 1),
        long_job_s=settings.sandbox_long_job_s or None,
    )


def jdbc_connections(settings: Settings) -> dict[str, JdbcConnection]:
    """The JDBC connections `jdbc` sources may name, from the settings' file (never from a
    dataset document): `{"name": {"url": "jdbc:postgresql://…", "user": …, "password": …}}`."""
    path = settings.resolved_jdbc_connections_file
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError("the JDBC connections file cannot be read as JSON") from None
    if not isinstance(raw, dict):
        raise ValueError("the JDBC connections file holds an object of connections")
    out = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or set(entry) - {"url", "user", "password", "driver"}:
            raise ValueError(f"JDBC connection {name!r}: url, user, password (and driver) only")
        try:
            out[str(name)] = JdbcConnection(**entry)
        except (TypeError, SandboxError):
            raise ValueError(f"JDBC connection {name!r} is not valid") from None
    return out
