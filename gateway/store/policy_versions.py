"""Policy versions in the database, and the live `PolicyEngine` built from the newest one.

A version is immutable once written; a change is a new version, written only by an approved
proposal (`gateway.policy.admin`). Writing is compare-and-set: a writer names the version it
based its rules on, and the write fails with `Conflict` unless that is still the newest one. The
version number is the primary key, so two writers racing on the same base cannot both win, and
a worker holding an old engine can never write its rules back over a newer version.

Replicas and workers re-read the newest version number at most every `refresh_s` seconds
(`INSITU_POLICY_REFRESH_S`, 2 s by default), so a change made anywhere is live everywhere
within that interval; the writer's own worker sees it at once (`invalidate`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from gateway.errors import Conflict, NotFound, Unavailable
from gateway.store import schema
from policies import PolicyEngine, Rule, format_rules, parse_rules

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredVersion:
    version: int
    rules: list[Rule]
    created_by: str
    created_at: datetime
    note: str
    base_version: int | None
    proposal_id: str | None
    approved_by: str | None


def newest_version(conn: sa.Connection) -> int | None:
    value = conn.execute(sa.select(sa.func.max(schema.policy_versions.c.version))).scalar()
    return None if value is None else int(value)


def save_version(
    conn: sa.Connection,
    rules: Sequence[Rule],
    *,
    created_by: str,
    note: str,
    base_version: int | None = None,
    proposal_id: str | None = None,
    approved_by: str | None = None,
) -> int:
    """Write `rules` as the next version. With `base_version`, only if that is the newest one."""
    head = newest_version(conn)
    if base_version is not None and head != base_version:
        raise Conflict(
            f"the policy changed since version {base_version} (it is at version {head}); "
            "propose the change again on the current version",
            policy_version=head,
        )
    version = (head or 0) + 1
    try:
        conn.execute(
            schema.policy_versions.insert().values(
                version=version,
                rules=format_rules(rules),
                created_by=created_by,
                created_at=datetime.now(UTC),
                note=note,
                base_version=base_version,
                proposal_id=proposal_id,
                approved_by=approved_by,
            )
        )
    except sa.exc.IntegrityError:  # the caller's transaction rolls back with the Conflict
        raise Conflict(
            f"another writer stored policy version {version} first; propose the change again",
            policy_version=version,
        ) from None
    return version


def load_version(conn: sa.Connection, version: int) -> StoredVersion:
    row = conn.execute(
        sa.select(schema.policy_versions).where(schema.policy_versions.c.version == version)
    ).first()
    if row is None:
        raise NotFound(f"no policy version {version}")
    return StoredVersion(
        version=int(row.version),
        rules=parse_rules(row.rules),
        created_by=row.created_by,
        created_at=row.created_at,
        note=row.note,
        base_version=row.base_version,
        proposal_id=row.proposal_id,
        approved_by=row.approved_by,
    )


def load_engine(conn: sa.Connection, version: int) -> PolicyEngine:
    return PolicyEngine.from_rules(load_version(conn, version).rules, version=version)


class LivePolicy:
    """The engine of the newest policy version, refreshed when another writer adds one.

    Only reads: nothing here writes a policy. While one thread re-reads the version number, the
    others keep deciding with the current engine; once a newer version is known, they wait for
    its engine (seconds at 100,000 rules) instead of deciding under the older policy, so a
    revocation is never served past the refresh interval. A failed rebuild is retried by the
    next caller, and a store that cannot be read fails the request (closed).
    """

    def __init__(self, engine: sa.Engine, *, refresh_s: float = 2.0) -> None:
        self._db = engine
        self._refresh_s = refresh_s
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._newer: int | None = None  # a newer version known to exist, not yet built
        with engine.connect() as conn:
            version = newest_version(conn)
            if version is None:
                raise Unavailable("the store has no policy; run `insitu init`")
            self._engine = load_engine(conn, version)

    @property
    def refresh_s(self) -> float:
        return self._refresh_s

    def age_s(self) -> float:
        """Seconds since the newest version number was last read from the store."""
        return max(0.0, time.monotonic() - self._checked)

    def invalidate(self) -> None:
        """Re-read the newest version on the next call (after this worker wrote one)."""
        self._checked = float("-inf")

    def current(self) -> PolicyEngine:
        now = time.monotonic()
        if now - self._checked < self._refresh_s:
            return self._engine
        if not self._lock.acquire(blocking=self._newer is not None):
            return self._engine  # another thread is re-reading; no newer version known yet
        try:
            if self._newer is not None or time.monotonic() - self._checked >= self._refresh_s:
                with self._db.connect() as conn:
                    version = newest_version(conn)
                    if version is not None and version != self._engine.version:
                        self._newer = version
                        self._engine = load_engine(conn, version)
                        _log.info("policy version %d is live on this worker", version)
                    self._newer = None
                self._checked = now
        finally:
            self._lock.release()
        return self._engine
