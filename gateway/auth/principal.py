"""The authenticated caller, and the one canonical form of its names.

Every name is NFKC-normalised, case-folded and normalised again, so full-width, compatibility
and case variants cannot pose as a different name (``ＭＡＲＫＥＴ`` and ``Market`` are ``market``,
``Ａｌｉｃｅ`` is ``alice``). The result must then be plain ASCII: departments and roles
``[a-z][a-z0-9_]{0,63}``, subjects ``[a-z0-9._@:+-]{1,128}``. Look-alikes from other scripts
(Cyrillic ``а`` in ``mаrket``), combining marks, zero-width and control characters are refused,
never "cleaned up", so two different spellings can never reach a policy decision as one name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from gateway.auth.errors import InvalidIdentity

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SUBJECT = re.compile(r"[a-z0-9._@:+\-]{1,128}")
MAX_ROLES = 64


def _fold(value: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())


def canonical_subject(value: object) -> str:
    """The subject in canonical form (NFKC, case-folded), or `InvalidIdentity`."""
    if isinstance(value, str) and len(value) <= 4 * 128:
        subject = _fold(value)
        if _SUBJECT.fullmatch(subject):
            return subject
    raise InvalidIdentity(
        "subject must be 1-128 characters of ASCII letters, digits and . _ @ : + -"
    )


def _canonical_name(value: object, what: str) -> str:
    if isinstance(value, str) and len(value) <= 4 * 64:
        name = _fold(value)
        if _NAME.fullmatch(name):
            return name
    raise InvalidIdentity(
        f"{what} must start with a letter and contain only a-z, 0-9 and _ (at most 64 characters)"
    )


def canonical_department(value: object) -> str:
    """The department in canonical form (NFKC, case-folded), or `InvalidIdentity`."""
    return _canonical_name(value, "department")


def canonical_role(value: object) -> str:
    """One role in canonical form (NFKC, case-folded), or `InvalidIdentity`."""
    return _canonical_name(value, "role")


def canonical_roles(values: Iterable[object]) -> tuple[str, ...]:
    """Roles canonicalised, de-duplicated and sorted; any bad role refuses them all."""
    if isinstance(values, str):
        raise InvalidIdentity("roles must be a sequence of role names, not one string")
    roles = sorted({canonical_role(value) for value in values})
    if len(roles) > MAX_ROLES:
        raise InvalidIdentity(f"at most {MAX_ROLES} roles are allowed")
    return tuple(roles)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: built only from verified token claims (or by the local issuer's tests).

    Construction canonicalises ``subject``, ``department`` and ``roles``; an unacceptable value
    raises `InvalidIdentity`. ``expires_at`` must be timezone-aware.
    """

    subject: str
    department: str
    roles: tuple[str, ...]
    token_id: str | None
    expires_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", canonical_subject(self.subject))
        object.__setattr__(self, "department", canonical_department(self.department))
        object.__setattr__(self, "roles", canonical_roles(self.roles))
        if self.token_id is not None and not isinstance(self.token_id, str):
            raise InvalidIdentity("token_id must be a string or None")
        if not isinstance(self.expires_at, datetime) or self.expires_at.utcoffset() is None:
            raise InvalidIdentity("expires_at must be a timezone-aware datetime")

    def has_role(self, role: str) -> bool:
        """Whether the principal holds ``role`` (compared in canonical form)."""
        try:
            return canonical_role(role) in self.roles
        except InvalidIdentity:
            return False


def same_person(a: str, b: str) -> bool:
    """Subjects that differ only in case or Unicode form are one person (four-eyes checks:
    never both sides of one approval)."""
    return (
        unicodedata.normalize("NFKC", a).casefold() == unicodedata.normalize("NFKC", b).casefold()
    )
