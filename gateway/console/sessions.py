"""Console sign-in secrets and sessions (owns `console_links` and `console_sessions`).

    link ──(redeemed once, before it expires)──▶ session ──(expiry or sign-out)──▶ gone
    oidc ──(callback from the same browser, once)──▶ session

Only SHA-256 hashes of the secrets are stored: a copy of the tables signs nobody in. Redeeming
is one conditional UPDATE (`used_at IS NULL AND expires_at > now`), so two browsers racing with
one link cannot both win.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import sqlalchemy as sa

from gateway.auth.principal import Principal
from gateway.store import db, schema

LINK, OIDC = "link", "oidc"
links, sessions = schema.console_links, schema.console_sessions


def link_url(base: str, secret: str) -> str:
    return f"{base.rstrip('/')}/console/signin/link?{urlencode({'token': secret})}"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a link or an issuer's token names (canonical names, as a token's are)."""

    subject: str
    department: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Session:
    subject: str
    department: str
    roles: tuple[str, ...]
    csrf: str
    source: str
    expires_at: datetime

    def principal(self) -> Principal:
        """The caller the use cases see: the same `Principal` a token would give."""
        return Principal(self.subject, self.department, self.roles, None, self.expires_at)


def identity(subject: str, department: str, roles: list[str]) -> Identity:
    """Canonical names, or `InvalidIdentity` (the checks a token's claims get)."""
    p = Principal(subject, department, tuple(roles), None, datetime.now(UTC))
    if not p.roles:
        raise ValueError("name at least one role")
    return Identity(p.subject, p.department, p.roles)


def issue_link(conn: sa.Connection, who: Identity, *, ttl_s: int) -> str:
    secret = new_secret()
    now = datetime.now(UTC)
    conn.execute(
        links.insert().values(
            secret_hash=digest(secret),
            kind=LINK,
            subject=who.subject,
            department=who.department,
            roles=list(who.roles),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )
    return secret


class NoConsoleTables(LookupError):
    """The store predates the console's tables (run `insitu init` to migrate it)."""


def issue_link_at(database_url: str, who: Identity, *, ttl_s: int) -> str:
    """A link written straight into the store at `database_url` (`insitu console-link`)."""
    engine = db.create_engine(database_url)
    try:
        with engine.begin() as conn:
            return issue_link(conn, who, ttl_s=ttl_s)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        raise NoConsoleTables("the store has no console tables") from None
    finally:
        engine.dispose()


def _redeem(conn: sa.Connection, secret_hash: str, kind: str) -> sa.Row[object] | None:
    now = datetime.now(UTC)
    claimed = conn.execute(
        links.update()
        .where(
            links.c.secret_hash == secret_hash,
            links.c.kind == kind,
            links.c.used_at.is_(None),
            links.c.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        return None
    return conn.execute(sa.select(links).where(links.c.secret_hash == secret_hash)).first()


def redeem_link(conn: sa.Connection, secret: str) -> Identity | None:
    """The identity of an unused, unexpired link, which is used up; else None."""
    row = _redeem(conn, digest(secret), LINK)
    if row is None:
        return None
    return Identity(row.subject, row.department, tuple(row.roles))


def begin_oidc(conn: sa.Connection, *, state: str, verifier: str, browser: str, ttl_s: int) -> None:
    now = datetime.now(UTC)
    conn.execute(
        links.insert().values(
            secret_hash=digest(state),
            kind=OIDC,
            verifier=verifier,
            browser_hash=digest(browser),
            created_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
        )
    )


def finish_oidc(conn: sa.Connection, *, state: str, browser: str) -> str | None:
    """The PKCE verifier of a pending sign-in started by this browser (once); else None."""
    row = _redeem(conn, digest(state), OIDC)
    if row is None or not secrets.compare_digest(row.browser_hash or "", digest(browser)):
        return None
    return str(row.verifier)


def open_session(
    conn: sa.Connection, who: Identity, *, source: str, ttl_s: int
) -> tuple[str, Session]:
    now = datetime.now(UTC)
    conn.execute(sessions.delete().where(sessions.c.expires_at <= now))
    conn.execute(links.delete().where(links.c.expires_at <= now - timedelta(days=1)))
    secret = new_secret()
    session = Session(
        who.subject,
        who.department,
        who.roles,
        secrets.token_urlsafe(32),
        source,
        now + timedelta(seconds=ttl_s),
    )
    conn.execute(
        sessions.insert().values(
            secret_hash=digest(secret),
            subject=session.subject,
            department=session.department,
            roles=list(session.roles),
            csrf=session.csrf,
            source=source,
            created_at=now,
            expires_at=session.expires_at,
        )
    )
    return secret, session


def load_session(conn: sa.Connection, secret: str) -> Session | None:
    row = conn.execute(
        sa.select(sessions).where(
            sessions.c.secret_hash == digest(secret), sessions.c.expires_at > datetime.now(UTC)
        )
    ).first()
    if row is None:
        return None
    return Session(
        row.subject, row.department, tuple(row.roles), row.csrf, row.source, row.expires_at
    )


def close_session(conn: sa.Connection, secret: str) -> None:
    conn.execute(sessions.delete().where(sessions.c.secret_hash == digest(secret)))
