"""Authentication: who is calling, proven by a signed access token (JWT, via joserfc).

Framework-free: the API layer wraps `TokenVerifier.verify` and maps `AuthError` to problems.
See DESIGN.md in this directory.
"""

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
