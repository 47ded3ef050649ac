"""API keys for app developers: issued and revoked by a security officer, each with its own
rate limit. The secret is shown once; only its SHA-256 is stored. Lookups are cached for
`KEY_TTL_S` seconds, so a revocation reaches every replica within that time."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.context import Gateway
from gateway.errors import Conflict, NotFound
from gateway.store import db, schema

PREFIX = "isk_"
KEY_TTL_S = 2.0
K = schema.api_keys.c


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    holder: str
    per_minute: int


def issue(gw: Gateway, principal: Principal, holder: str, per_minute: int) -> dict[str, Any]:
    decision = require(gw, principal, "apikey", "admin", event="apikey.denied", target="apikeys")
    secret = PREFIX + secrets.token_urlsafe(32)
    key_id = str(uuid.uuid4())
    with gw.db.begin() as conn:
        conn.execute(
            schema.api_keys.insert().values(
                id=key_id,
                holder=holder,
                key_hash=digest(secret),
                per_minute=per_minute,
                status="active",
                created_by=principal.subject,
                created_at=datetime.now(UTC),
            )
        )
        gw.audit.record(
            conn,
            type="apikey.issued",
            principal=principal,
            action="admin",
            target=f"apikey:{key_id}",
            allowed=True,
            rule=decision.rule,
            details={"key": key_id, "holder": holder, "per_minute": per_minute},
        )
    return {"id": key_id, "holder": holder, "per_minute": per_minute, "key": secret}


def revoke(gw: Gateway, principal: Principal, key_id: str) -> dict[str, Any]:
    decision = require(
        gw, principal, "apikey", "admin", event="apikey.denied", target=f"apikey:{key_id}"
    )
    with gw.db.begin() as conn:
        row = conn.execute(sa.select(schema.api_keys).where(K.id == key_id)).first()
        if row is None:
            raise NotFound("no such API key")
        if row.status != "active":
            raise Conflict("the API key is already revoked")
        conn.execute(
            schema.api_keys.update()
            .where(K.id == key_id)
            .values(status="revoked", revoked_at=datetime.now(UTC))
        )
        gw.audit.record(
            conn,
            type="apikey.revoked",
            principal=principal,
            action="admin",
            target=f"apikey:{key_id}",
            allowed=True,
            rule=decision.rule,
            details={"key": key_id, "holder": row.holder},
        )
    return {"id": key_id, "status": "revoked"}


def list_keys(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    require(gw, principal, "apikey", "admin", event="apikey.denied", target="apikeys")
    with db.reading(gw.db) as conn:
        rows = conn.execute(
            sa.select(K.id, K.holder, K.per_minute, K.status, K.created_at).order_by(K.created_at)
        ).all()
    return [{**r._asdict(), "created_at": r.created_at.isoformat()} for r in rows]


class KeyCache:
    """Active keys by digest, each entry trusted for `KEY_TTL_S` seconds."""

    def __init__(self, engine: sa.Engine, ttl_s: float = KEY_TTL_S) -> None:
        self._engine = engine
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}

    def lookup(self, secret: str) -> ApiKey | None:
        if not secret.startswith(PREFIX) or len(secret) > 100:
            return None
        key = digest(secret)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        with db.reading(self._engine) as conn:
            row = conn.execute(
                sa.select(K.id, K.holder, K.per_minute).where(
                    K.key_hash == key, K.status == "active"
                )
            ).first()
        found = None if row is None else ApiKey(row.id, row.holder, int(row.per_minute))
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (now, found)
        return found

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()
