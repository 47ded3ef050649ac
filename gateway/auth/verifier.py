"""Verify-or-raise for bearer tokens: header policy first, then signature, then claims.

Order matters: the header is read (size-bounded) before any key is touched, so ``alg`` outside
the allow-list (``none`` and every ``HS*`` always), ``crit``, ``b64`` and a wrong ``typ`` are
refused without a key lookup. ``jwk``/``jku``/``x5u``/``x5c`` headers are ignored: the key comes
only from the `KeySource`, chosen by ``kid`` and checked against ``alg``. Every failure becomes
`TokenInvalid` with a short fixed reason; `KeySourceUnavailable` passes through (fail closed).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet, OKPKey
from joserfc.jws import (  # type: ignore[attr-defined]  # public, not in __all__
    JWSAlgModel,
    JWSRegistry,
)

from gateway.auth.errors import InvalidIdentity, TokenInvalid, TokenMissing
from gateway.auth.keysource import ALGORITHM_KEYS, KeySource
from gateway.auth.principal import (
    MAX_ROLES,
    Principal,
    canonical_department,
    canonical_role,
    canonical_subject,
)

#: Names that sign with the same Ed25519 key: RFC 8037 "EdDSA" and RFC 9864 "Ed25519". A JWK
#: published with either ``alg`` verifies tokens under either name.
_SAME_KEY_ALGS = {"EdDSA": ("EdDSA", "Ed25519"), "Ed25519": ("Ed25519", "EdDSA")}


class _EdDSAEd25519(JWSAlgModel):
    """RFC 8037 ``EdDSA`` restricted to Ed25519 keys.

    joserfc's own ``EdDSA`` also takes Ed448 keys and warns on every use (RFC 9864 deprecates
    the name); providers still sign with it, so it is verified here, quietly and Ed25519 only.
    """

    name = "EdDSA"
    description = "EdDSA with Ed25519 keys (RFC 8037)"
    key_type = "OKP"

    def sign(self, msg: bytes, key: Any) -> bytes:  # pragma: no cover - verification only
        raise TokenInvalid("this gateway does not sign EdDSA tokens")

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        public = key.get_op_key("verify")
        if not isinstance(public, Ed25519PublicKey):
            return False
        try:
            public.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


class _Registry(JWSRegistry):
    algorithms = {**JWSRegistry.algorithms, "EdDSA": _EdDSAEd25519()}  # noqa: RUF012


MAX_TOKEN_BYTES = 8 * 1024
MAX_LEEWAY_S = 300
_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_CLAIM_REASONS = {
    "iss": "wrong issuer",
    "aud": "wrong audience",
    "nbf": "token not yet valid",
    "iat": "token issued in the future",
    "exp": "invalid expiry",
    "sub": "invalid subject",
}


def parse_bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value, or `TokenMissing`."""
    if not authorization or not authorization.strip():
        raise TokenMissing()
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid("expected a bearer token")
    return token.strip()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


class _StrictJSON(json.JSONDecoder):
    """Refuses duplicate members: a payload must not say two things about one claim."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["object_pairs_hook"] = _no_duplicates
        super().__init__(**kwargs)


def _read_header(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts):
        raise TokenInvalid("malformed token")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw, object_pairs_hook=_no_duplicates)
    except (binascii.Error, ValueError, RecursionError):
        raise TokenInvalid("malformed token") from None
    if not isinstance(header, dict):
        raise TokenInvalid("malformed token")
    return header


def _media_type(value: str) -> str:
    """A ``typ`` value compared the RFC 7515 way: case-insensitive, ``application/`` optional."""
    return value.strip().lower().removeprefix("application/")


def parse_token_types(value: str | Sequence[str] | None) -> frozenset[str]:
    """Accepted ``typ`` values from a comma-separated string or a list; ``JWT`` is refused."""
    if value is None:
        return frozenset()
    names = value.split(",") if isinstance(value, str) else list(value)
    types = frozenset(_media_type(name) for name in names if name.strip())
    if "jwt" in types:
        raise ValueError("typ 'JWT' is what ID tokens carry: it cannot mark access tokens")
    return types


def parse_type_claim(value: str | None) -> tuple[str, str] | None:
    """``"typ=Bearer"`` -> ("typ", "Bearer"): a claim that must hold exactly that value."""
    if value is None or not value.strip():
        return None
    name, sep, required = value.strip().partition("=")
    if not sep or not name or not required:
        raise ValueError("token_type_claim must be written claim=value, e.g. typ=Bearer")
    return name, required


def _claim(claims: dict[str, Any], path: str) -> object:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``).

    A token holding both a top-level claim literally named ``path`` and the nested one is
    refused: which of the two names the department must never be a guess.
    """
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            value = None
            break
        value = value[part]
    if path in claims:
        if "." in path and value is not None:
            raise TokenInvalid("ambiguous claim")
        return claims[path]
    return value


def _overlapping(a: str, b: str) -> bool:
    """Whether two claim paths name the same claim or one lies inside the other."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


class TokenVerifier:
    """Turns a bearer token into a `Principal`, or raises `TokenInvalid` / `TokenMissing`."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str] = ("Ed25519", "EdDSA", "ES256", "RS256"),
        leeway_s: int = 30,
        token_type: str | Sequence[str] | None = "at+jwt",  # noqa: S107 - a "typ" value
        token_type_claim: str | None = None,
        department_claim: str = "department",
        roles_claim: str = "roles",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(algorithms, str) or not algorithms:
            raise ValueError("algorithms must be a non-empty sequence of names")
        refused = [alg for alg in algorithms if alg not in ALGORITHM_KEYS]
        if refused:
            raise ValueError(f"algorithms not allowed for public-key verification: {refused}")
        if not 0 <= leeway_s <= MAX_LEEWAY_S:
            raise ValueError(f"leeway_s must be between 0 and {MAX_LEEWAY_S}")
        if not issuer or not audience or not department_claim or not roles_claim:
            raise ValueError("issuer, audience and claim names must be non-empty")
        if _overlapping(department_claim, roles_claim):
            raise ValueError("the department and roles claims must be different claims")
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway_s = leeway_s
        self.token_types = parse_token_types(token_type)
        self.token_type_claim = parse_type_claim(token_type_claim)
        if not self.token_types and self.token_type_claim is None:
            raise ValueError(
                "a token type check is required (a typ header value or a claim=value) "
                "so that ID tokens are never accepted as access tokens"
            )
        self.department_claim = department_claim
        self.roles_claim = roles_claim
        self._clock = clock

    def verify(self, token: str) -> Principal:
        """The principal the token names, after every check passes."""
        if not token:
            raise TokenMissing()
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            raise TokenInvalid("token too large" if isinstance(token, str) else "malformed token")
        header = _read_header(token)
        alg = self._check_header(header)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenInvalid("malformed token")
        key = self._select_key(self._keys.get_key_set(kid), kid, alg)
        claims = self._decode(token, key, alg)
        self._validate_claims(claims)
        return self._principal(claims)

    def _check_header(self, header: dict[str, Any]) -> str:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise TokenInvalid("unsupported algorithm")
        if "crit" in header:
            raise TokenInvalid("unsupported critical header")
        if "b64" in header:
            raise TokenInvalid("unsupported header")
        if self.token_types:
            typ = header.get("typ")
            if not isinstance(typ, str) or _media_type(typ) not in self.token_types:
                raise TokenInvalid("wrong token type")
        return alg

    @staticmethod
    def _select_key(key_set: KeySet, kid: str | None, alg: str) -> Key:
        kty, crv = ALGORITHM_KEYS[alg]
        candidates = [
            key
            for key in key_set.keys
            if (kid is None or key.kid == kid)
            and key.key_type == kty
            and (crv is None or key.get("crv") == crv)
            and key.alg in (None, *_SAME_KEY_ALGS.get(alg, (alg,)))
        ]
        # Without a kid, only an unambiguous key is used.
        if len(candidates) != 1:
            raise TokenInvalid("untrusted signing key")
        return candidates[0]

    def _decode(self, token: str, key: Key, alg: str) -> dict[str, Any]:
        if key.alg is not None and key.alg != alg:  # the other name of the same Ed25519 key
            key = OKPKey.import_key(
                {k: v for k, v in key.as_dict(private=False).items() if k != "alg"}
            )
        registry = _Registry(algorithms=[alg], strict_check_header=False)
        registry.max_header_length = registry.max_payload_length = MAX_TOKEN_BYTES
        try:
            decoded = jwt.decode(token, key, registry=registry, decoder_cls=_StrictJSON)
        except BadSignatureError:
            raise TokenInvalid("invalid signature") from None
        except (JoseError, ValueError, KeyError, TypeError, RecursionError):
            raise TokenInvalid("malformed token") from None
        return decoded.claims

    def _validate_claims(self, claims: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=self.leeway_s,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        if self.token_type_claim is not None:
            name, value = self.token_type_claim
            if _claim(claims, name) != value:
                raise TokenInvalid("wrong token type")
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise TokenInvalid("token expired") from None
        except MissingClaimError:
            raise TokenInvalid("missing required claim") from None
        except InvalidClaimError as exc:
            raise TokenInvalid(_CLAIM_REASONS.get(exc.claim, "invalid claim")) from None
        except (JoseError, ValueError, KeyError, TypeError, OverflowError):
            raise TokenInvalid("invalid claim") from None

    def _principal(self, claims: dict[str, Any]) -> Principal:
        try:
            subject = canonical_subject(claims["sub"])
        except InvalidIdentity:
            raise TokenInvalid("invalid subject") from None
        department = _claim(claims, self.department_claim)
        if isinstance(department, list) and len(department) == 1:
            department = department[0]
        if department is None:
            raise TokenInvalid("missing department claim")
        try:
            department = canonical_department(department)
        except InvalidIdentity:
            raise TokenInvalid("invalid department claim") from None
        jti = claims.get("jti")
        try:
            expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        except (OverflowError, OSError, ValueError):
            raise TokenInvalid("invalid expiry") from None
        return Principal(
            subject=subject,
            department=department,
            roles=self._roles(_claim(claims, self.roles_claim)),
            token_id=jti if isinstance(jti, str) else None,
            expires_at=expires_at,
        )

    @staticmethod
    def _roles(value: object) -> tuple[str, ...]:
        """Roles from a list or a space-separated string; names outside our syntax are dropped.

        Dropping (not refusing) lets identity providers add their own roles (Keycloak's
        ``default-roles-<realm>``): an unknown role can only ever grant less.
        """
        if value is None:
            return ()
        if isinstance(value, str):
            value = value.split()
        if not isinstance(value, list) or not all(isinstance(role, str) for role in value):
            raise TokenInvalid("invalid roles claim")
        if len(value) > MAX_ROLES:
            raise TokenInvalid("invalid roles claim")
        roles: set[str] = set()
        for role in value:
            try:
                roles.add(canonical_role(role))
            except InvalidIdentity:
                continue
        return tuple(sorted(roles))
