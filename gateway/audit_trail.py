"""Writes the gateway's decisions and state changes into the audit log.

Every use case calls `AuditTrail.record` inside the same transaction as its state change, so a
state change without its audit entry (or the reverse) cannot be committed. Parameter values and
results go in as keyed fingerprints, never as values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from audit import Actor, Event, SqlAuditLog, fingerprint
from gateway.auth.principal import Principal

SYSTEM = Actor(subject="insitu", department="insitu", roles=("system",))


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

    def fingerprint(self, value: object) -> str:
        """A keyed hash of any JSON value a request may carry (floats included)."""
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return fingerprint(self._key, text)

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
        event = Event(
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
        return self.log.append(conn, event).index
