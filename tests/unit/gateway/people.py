"""Principals for use-case tests without HTTP (no token: the use cases take the principal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.auth.principal import Principal


def person(subject: str, department: str, *roles: str) -> Principal:
    return Principal(
        subject=subject,
        department=department,
        roles=roles,
        token_id=None,
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
    )
