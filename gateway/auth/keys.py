"""The local issuer's signing keys: a private JWKS file in the insitu home.

File format: ``{"keys": [current, previous, ...]}``. The first key is the current Ed25519 signing
key (private); the others are retired keys kept as public keys only, so tokens they signed still
verify until they expire. ``kid`` is the RFC 7638 thumbprint and is checked on load.

The file is created with mode 0600 through ``os.open`` (never chmod-ed afterwards) and replaced
atomically on rotation. A file that group or others can read is refused on load.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Sequence
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from gateway.auth.errors import IssuerKeyError

ALGORITHM = "Ed25519"
MAX_KEY_FILE_BYTES = 64 * 1024


def _new_key() -> OKPKey:
    draft = OKPKey.generate_key("Ed25519")
    return OKPKey.import_key(draft.as_dict(private=True), parameters={"kid": draft.thumbprint()})


def _public_entry(key: OKPKey) -> dict[str, object]:
    return {**key.as_dict(private=False), "alg": ALGORITHM, "use": "sig"}


def _private_entry(key: OKPKey) -> dict[str, object]:
    return {**key.as_dict(private=True), "alg": ALGORITHM, "use": "sig"}


class IssuerKeys:
    """The current signing key and the retired public keys that still verify."""

    __slots__ = ("_current", "_retired")

    def __init__(self, current: OKPKey, retired: Sequence[OKPKey] = ()) -> None:
        if not current.is_private:
            raise IssuerKeyError("the current issuer key must be a private key")
        self._current = current
        self._retired = tuple(retired)

    @classmethod
    def generate(cls, path: Path) -> IssuerKeys:
        """Create a new key file at ``path`` (mode 0600); refuse to overwrite an existing one."""
        keys = cls(_new_key())
        keys._write(path, replace=False)
        return keys

    @classmethod
    def load(cls, path: Path) -> IssuerKeys:
        """Read a key file; refuse one that group/others can access, or that is malformed."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise IssuerKeyError(f"issuer key file not found: {path}") from None
        except OSError as exc:
            raise IssuerKeyError(f"cannot open issuer key file {path}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise IssuerKeyError(f"issuer key file is not a regular file: {path}")
            if info.st_mode & 0o077:
                raise IssuerKeyError(
                    f"issuer key file {path} is accessible by group or others "
                    f"(mode {stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
                )
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
        if len(raw) > MAX_KEY_FILE_BYTES:
            raise IssuerKeyError(f"issuer key file is too large: {path}")
        return cls._parse(raw, path)

    @classmethod
    def _parse(cls, raw: bytes, path: Path) -> IssuerKeys:
        malformed = IssuerKeyError(f"issuer key file is malformed: {path}")
        try:
            data = json.loads(raw)
            entries = data["keys"]
            if not isinstance(entries, list) or not entries:
                raise malformed
            keys = [cls._parse_entry(entry) for entry in entries]
        except (ValueError, KeyError, TypeError, JoseError):
            raise malformed from None
        if len({key.kid for key in keys}) != len(keys) or not keys[0].is_private:
            raise malformed
        retired = [OKPKey.import_key(key.as_dict(private=False)) for key in keys[1:]]
        return cls(keys[0], retired)

    @staticmethod
    def _parse_entry(entry: object) -> OKPKey:
        if (
            not isinstance(entry, dict)
            or entry.get("kty") != "OKP"
            or entry.get("crv") != "Ed25519"
        ):
            raise ValueError("not an Ed25519 key")
        if entry.get("alg", ALGORITHM) != ALGORITHM or entry.get("use", "sig") != "sig":
            raise ValueError("not an Ed25519 signing key")
        key = OKPKey.import_key(entry)
        if key.kid != key.thumbprint():
            raise ValueError("kid is not the key's thumbprint")
        return key

    def rotate(self, path: Path, *, keep: int = 2) -> IssuerKeys:
        """Add a new current key; keep the newest ``keep - 1`` earlier keys as public keys.

        The file at ``path`` is replaced atomically (a 0600 temporary file, then rename).
        """
        if keep < 2:
            raise ValueError("keep must be at least 2 so tokens of the previous key still verify")
        previous = OKPKey.import_key(self._current.as_dict(private=False))
        rotated = IssuerKeys(_new_key(), (previous, *self._retired)[: keep - 1])
        rotated._write(path, replace=True)
        return rotated

    def public_jwks(self) -> dict[str, object]:
        """The public JWKS: current key first, then the retired keys."""
        return {"keys": [_public_entry(key) for key in (self._current, *self._retired)]}

    def signing_key(self) -> OKPKey:
        """The current (private) signing key."""
        return self._current

    @property
    def kid(self) -> str:
        """Key id of the current signing key."""
        return str(self._current.kid)

    def _write(self, path: Path, *, replace: bool) -> None:
        entries = [_private_entry(self._current), *(_public_entry(k) for k in self._retired)]
        content = (json.dumps({"keys": entries}, indent=2) + "\n").encode()
        target = path if not replace else path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(target, flags, 0o600)
        except FileExistsError:
            raise IssuerKeyError(f"refusing to overwrite existing key file: {target}") from None
        except OSError as exc:
            raise IssuerKeyError(f"cannot write issuer key file {target}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            if replace:
                os.replace(target, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
