"""The local token issuer behind ``insitu token issue``: RFC 9068 access tokens signed Ed25519."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

from joserfc import jwt

from gateway.auth.keys import ALGORITHM, IssuerKeys
from gateway.auth.principal import canonical_department, canonical_roles, canonical_subject

TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT "typ" value, not a secret
CLIENT_ID = "insitu-local"


class LocalIssuer:
    """Issues access tokens with the current key of an `IssuerKeys`.

    Subject, department and roles go through the same canonicalisation as `Principal`, so a
    token this issuer signs always verifies into the same names. ``clock`` is for tests.
    """

    def __init__(
        self,
        keys: IssuerKeys,
        *,
        issuer: str,
        audience: str,
        max_ttl_s: int = 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience must be non-empty")
        if max_ttl_s < 1:
            raise ValueError("max_ttl_s must be at least 1 second")
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.max_ttl_s = max_ttl_s
        self._clock = clock

    def issue(
        self, *, subject: str, department: str, roles: Sequence[str], ttl_s: int = 3600
    ) -> str:
        """A signed access token; `InvalidIdentity` for bad names, `ValueError` for a bad ttl."""
        if (
            isinstance(ttl_s, bool)
            or not isinstance(ttl_s, int)
            or not 1 <= ttl_s <= self.max_ttl_s
        ):
            raise ValueError(f"ttl must be between 1 and {self.max_ttl_s} seconds")
        claims: dict[str, object] = {
            "sub": canonical_subject(subject),
            "department": canonical_department(department),
            "roles": list(canonical_roles(roles)),
        }
        now = int(self._clock())
        key = self._keys.signing_key()
        claims |= {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": secrets.token_urlsafe(16),
            "client_id": CLIENT_ID,
        }
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": TOKEN_TYPE}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM])
