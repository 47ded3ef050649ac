"""Errors of ``gateway.auth``.

    AuthError
    ├── TokenMissing          no bearer token was presented
    ├── TokenInvalid          a presented token was refused; ``reason`` is short and safe to show
    ├── KeySourceUnavailable  no trustworthy verification keys (JWKS down past its stale limit)
    ├── InvalidIdentity       a subject, department or role fails canonicalisation (a ValueError)
    └── IssuerKeyError        the local issuer's key file is missing, malformed, too open or exists

Messages never contain token content, key material or stack traces. ``TokenInvalid.reason`` is one
of a small fixed set of phrases (``"token expired"``, ``"untrusted signing key"``, …).
"""

from __future__ import annotations


class AuthError(Exception):
    """Base of every error raised by ``gateway.auth``."""


class TokenMissing(AuthError):
    """No bearer token was presented."""

    def __init__(self, message: str = "a bearer token is required") -> None:
        super().__init__(message)


class TokenInvalid(AuthError):
    """A presented token was refused. ``reason`` is generic and safe to show to the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeySourceUnavailable(AuthError):
    """Verification keys cannot be obtained (or are too stale to trust): fail closed."""


class InvalidIdentity(AuthError, ValueError):
    """A subject, department or role is not acceptable after canonicalisation."""


class IssuerKeyError(AuthError):
    """The local issuer's key file cannot be used (exists, missing, malformed, too permissive)."""
