"""Writes the gateway's decisions and state changes into the audit log.

Two ways in:

- `record(conn, …)` appends inside the caller's transaction, so a state change and its audit
  entry commit together or not at all (job accepted, started, released; approvals; denials).
- `record_durable(…)` goes through the group committer (`audit.GroupCommitter`): entries with
  no state change of their own (reads) share one transaction with concurrent callers and the
  call returns only once the entry is durable.

A store that cannot write becomes `Unavailable` (503): nothing is released without its entry.
Parameter values and results go in as keyed fingerprints, never as values.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from audit import (
    Actor,
    AuditError,
    Committed,
    Event,
    GroupCommitter,
    SqlAuditLog,
    fingerprint,
    leaf_hash,
)
from gateway.auth.principal import Principal
from gateway.errors import Unavailable
from gateway.store import db

SYSTEM = Actor(subject="insitu", department="insitu", roles=("system",))
UNWRITABLE = "the audit log cannot be written; nothing was released"


def actor_of(principal: Principal | Actor | None) -> Actor:
    if principal is None:
        return SYSTEM
    if isinstance(principal, Actor):
        return principal
    return Actor(subject=principal.subject, department=principal.department, roles=principal.roles)


class AuditTrail:
    def __init__(self, log: SqlAuditLog, fingerprint_key: bytes) -> None:
        self.log = log
        self._key = fingerprint_key
        self._engine: sa.Engine | None = None
        self._committer: GroupCommitter | None = None

    def attach(
        self,
        engine: sa.Engine,
        *,
        max_batch: int = 1024,
        on_signed: Callable[[int, str], None] | None = None,
    ) -> None:
        """Enable `record_durable` and checkpoints on `engine` (a group-commit writer);
        `on_signed(size, note)` sees every newer checkpoint before anyone is handed it.
        The log keeps the tree's right edge of every append committed through `engine`."""
        self._engine = engine
        self.log.follow_commits(engine)
        self._committer = GroupCommitter(
            self.log, engine.begin, max_batch=max_batch, on_signed=on_signed
        )

    def close(self) -> None:
        if self._committer is not None:
            self._committer.stop()

    @property
    def committer(self) -> GroupCommitter:
        if self._committer is None:
            raise RuntimeError("AuditTrail.attach(engine) first")
        return self._committer

    def fingerprint(self, value: object) -> str:
        """A keyed hash of any JSON value a request may carry (floats included)."""
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return fingerprint(self._key, text)

    def event(
        self,
        *,
        type: str,
        principal: Principal | Actor | None,
        action: str,
        target: str,
        allowed: bool,
        rule: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Event:
        return Event(
            type=type,
            time=datetime.now(UTC),
            actor=actor_of(principal),
            action=action,
            target=target,
            allowed=allowed,
            rule=rule,
            reason=reason,
            details=dict(details or {}),
        )

    def record(
        self,
        conn: sa.Connection,
        *,
        type: str,
        principal: Principal | Actor | None,
        action: str,
        target: str,
        allowed: bool,
        rule: str | None = None,
        reason: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append in the caller's transaction; durable when the caller commits."""
        event = self.event(
            type=type,
            principal=principal,
            action=action,
            target=target,
            allowed=allowed,
            rule=rule,
            reason=reason,
            details=details,
        )
        try:
            return self.log.append(conn, event).index
        except (sa.exc.OperationalError, sa.exc.InternalError):
            raise Unavailable(UNWRITABLE) from None

    def record_many(self, conn: sa.Connection, events: Sequence[Mapping[str, Any]]) -> list[int]:
        """`record` of each of `events` (its keyword arguments), in order, as one append."""
        built = [self.event(**fields) for fields in events]
        try:
            return [found.index for found in self.log.append_many(conn, built)]
        except (sa.exc.OperationalError, sa.exc.InternalError):
            raise Unavailable(UNWRITABLE) from None

    def record_durable(self, *, covering: int | None = None, **fields: Any) -> Committed:
        """Append one event through the group committer; return once it is durable (with a
        checkpoint of at least `covering` entries when asked)."""
        event = self.event(**fields)
        try:
            return self.committer.append([event], covering=covering)
        except AuditError:
            raise Unavailable(UNWRITABLE) from None

    def nudge(self) -> None:
        """Ask for a checkpoint soon (after a release), without waiting."""
        if self._committer is not None:
            self._committer.nudge()

    def receipt(self, index: int, *, note: str, size: int) -> dict[str, Any]:
        """Index, entry, leaf hash and inclusion proof of entry `index` under the checkpoint
        `note` of `size` entries: a requester can check it alone (`insitu audit receipt`)."""
        if self._engine is None:
            raise RuntimeError("AuditTrail.attach(engine) first")
        with db.reading(self._engine) as conn:
            body, proof = self.log.entry_and_proof(conn, index, size)
        return {
            "audit_index": index,
            "tree_size": size,
            "leaf_hash": leaf_hash(body).hex(),
            "inclusion_proof": [p.hex() for p in proof],
            "checkpoint": note,
            "entry": base64.b64encode(body).decode("ascii"),
        }
