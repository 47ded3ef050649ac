"""Authentication: who is calling, proven by a signed access token (JWT, via joserfc).

Framework-free: the API layer wraps `TokenVerifier.verify` and maps `AuthError` to problems.
See DESIGN.md in this directory.

The names below load on first use (PEP 562): `gateway.auth.discovery` is imported by the CLI's
HTTP client, which must not pay for joserfc and authlib at start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.auth.errors import (
        AuthError,
        InvalidIdentity,
        IssuerKeyError,
        KeySourceUnavailable,
        TokenInvalid,
        TokenMissing,
    )
    from gateway.auth.issuer import LocalIssuer
    from gateway.auth.keys import IssuerKeys
    from gateway.auth.keysource import KeySource, RemoteJwks, StaticKeySource, import_public_jwks
    from gateway.auth.localsource import LocalKeySource
    from gateway.auth.principal import (
        Principal,
        canonical_department,
        canonical_role,
        canonical_roles,
        canonical_subject,
    )
    from gateway.auth.verifier import TokenVerifier, parse_bearer

_WHERE = {
    "AuthError": "gateway.auth.errors",
    "InvalidIdentity": "gateway.auth.errors",
    "IssuerKeyError": "gateway.auth.errors",
    "IssuerKeys": "gateway.auth.keys",
    "KeySource": "gateway.auth.keysource",
    "KeySourceUnavailable": "gateway.auth.errors",
    "LocalIssuer": "gateway.auth.issuer",
    "LocalKeySource": "gateway.auth.localsource",
    "Principal": "gateway.auth.principal",
    "RemoteJwks": "gateway.auth.keysource",
    "StaticKeySource": "gateway.auth.keysource",
    "TokenInvalid": "gateway.auth.errors",
    "TokenMissing": "gateway.auth.errors",
    "TokenVerifier": "gateway.auth.verifier",
    "canonical_department": "gateway.auth.principal",
    "canonical_role": "gateway.auth.principal",
    "canonical_roles": "gateway.auth.principal",
    "canonical_subject": "gateway.auth.principal",
    "import_public_jwks": "gateway.auth.keysource",
    "parse_bearer": "gateway.auth.verifier",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AuthError",
    "InvalidIdentity",
    "IssuerKeyError",
    "IssuerKeys",
    "KeySource",
    "KeySourceUnavailable",
    "LocalIssuer",
    "LocalKeySource",
    "Principal",
    "RemoteJwks",
    "StaticKeySource",
    "TokenInvalid",
    "TokenMissing",
    "TokenVerifier",
    "canonical_department",
    "canonical_role",
    "canonical_roles",
    "canonical_subject",
    "import_public_jwks",
    "parse_bearer",
]
