"""The local issuer's signing keys: a private JWKS file in the insitu home.

File format: ``{"keys": [current, previous, ...], "not_after": {"<kid>": <unix time>}}``. The
first key is the current Ed25519 signing key (private); the others are retired keys kept as public
keys only, so tokens they signed still verify during the rotation window. ``not_after`` gives the
end of each retired key's window: from then on the key is neither served at
``/.well-known/jwks.json`` nor trusted (a retired key without an entry stays until rotated out).
``kid`` is the RFC 7638 thumbprint and is checked on load.

The file is created with mode 0600 through ``os.open`` (never chmod-ed afterwards) and replaced
atomically on rotation; `IssuerKeys.rotate_file` holds an exclusive lock on a sibling ``.lock``
file so two rotations cannot lose a key. A file that group or others can read is refused on load.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from gateway.auth.errors import IssuerKeyError

ALGORITHM = "Ed25519"
MAX_KEY_FILE_BYTES = 64 * 1024
#: Default rotation window: the longest ttl `LocalIssuer` grants, so no valid token is cut off.
DEFAULT_OVERLAP_S = 86400


def _new_key() -> OKPKey:
    draft = OKPKey.generate_key("Ed25519")
    return OKPKey.import_key(draft.as_dict(private=True), parameters={"kid": draft.thumbprint()})


def _public_entry(key: OKPKey) -> dict[str, object]:
    return {**key.as_dict(private=False), "alg": ALGORITHM, "use": "sig"}


def _private_entry(key: OKPKey) -> dict[str, object]:
    return {**key.as_dict(private=True), "alg": ALGORITHM, "use": "sig"}


class IssuerKeys:
    """The current signing key and the retired public keys that still verify."""

    __slots__ = ("_current", "_not_after", "_retired")

    def __init__(
        self,
        current: OKPKey,
        retired: Sequence[OKPKey] = (),
        not_after: Mapping[str, int] | None = None,
    ) -> None:
        if not current.is_private:
            raise IssuerKeyError("the current issuer key must be a private key")
        self._current = current
        self._retired = tuple(retired)
        kids = {str(key.kid) for key in self._retired}
        self._not_after = {k: int(v) for k, v in (not_after or {}).items() if k in kids}

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
            not_after = data.get("not_after", {})
            if not isinstance(entries, list) or not entries or not isinstance(not_after, dict):
                raise malformed
            keys = [cls._parse_entry(entry) for entry in entries]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in not_after.values()):
                raise malformed
        except (ValueError, KeyError, TypeError, AttributeError, JoseError):
            raise malformed from None
        if len({key.kid for key in keys}) != len(keys) or not keys[0].is_private:
            raise malformed
        retired = [OKPKey.import_key(key.as_dict(private=False)) for key in keys[1:]]
        return cls(keys[0], retired, not_after)

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

    def rotate(
        self,
        path: Path,
        *,
        keep: int = 2,
        overlap_s: float = DEFAULT_OVERLAP_S,
        now: float | None = None,
    ) -> IssuerKeys:
        """Add a new current key; the previous one stays valid (public only) for ``overlap_s``.

        At most ``keep`` keys are kept (the newest); retired keys past their window are dropped;
        ``overlap_s=0`` drops every earlier key at once (after a suspected compromise). The file
        at ``path`` is replaced atomically (a 0600 temporary file, then rename). Use
        `rotate_file` when another process may rotate the same file.
        """
        if keep < 2:
            raise ValueError("keep must be at least 2 so tokens of the previous key still verify")
        if not (isinstance(overlap_s, int | float) and 0 <= overlap_s <= 366 * 86400):
            raise ValueError("overlap must be between 0 seconds and a year")
        now = time.time() if now is None else now
        previous = OKPKey.import_key(self._current.as_dict(private=False))
        candidates: list[OKPKey] = []
        if overlap_s > 0:  # 0: only the new key is valid from now on (a leaked key file)
            candidates = [previous]
            candidates += [key for key in self._retired if self.is_valid(str(key.kid), now)]
        not_after = {**self._not_after, str(previous.kid): math.ceil(now + overlap_s)}
        rotated = IssuerKeys(_new_key(), candidates[: keep - 1], not_after)
        rotated._write(path, replace=True)
        return rotated

    @classmethod
    def rotate_file(
        cls,
        path: Path,
        *,
        keep: int = 2,
        overlap_s: float = DEFAULT_OVERLAP_S,
        now: float | None = None,
    ) -> IssuerKeys:
        """Load, rotate and write ``path`` under an exclusive lock (see `rotate`)."""
        lock_path = path.with_name(f".{path.name}.lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise IssuerKeyError(f"cannot lock issuer key file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return cls.load(path).rotate(path, keep=keep, overlap_s=overlap_s, now=now)
        finally:
            os.close(fd)

    def is_valid(self, kid: str, now: float | None = None) -> bool:
        """Whether ``kid`` is the current key or a retired key inside its window."""
        if kid == self.kid:
            return True
        if kid not in {str(key.kid) for key in self._retired}:
            return False
        deadline = self._not_after.get(kid)
        return deadline is None or (time.time() if now is None else now) < deadline

    def not_after(self, kid: str) -> int | None:
        """End of a retired key's window (unix time), or None (current key, or no window)."""
        return self._not_after.get(kid)

    def public_jwks(self, now: float | None = None) -> dict[str, object]:
        """The public JWKS: current key first, then the retired keys still inside their window."""
        now = time.time() if now is None else now
        valid = [key for key in (self._current, *self._retired) if self.is_valid(str(key.kid), now)]
        return {"keys": [_public_entry(key) for key in valid]}

    def signing_key(self) -> OKPKey:
        """The current (private) signing key."""
        return self._current

    @property
    def kid(self) -> str:
        """Key id of the current signing key."""
        return str(self._current.kid)

    def _write(self, path: Path, *, replace: bool) -> None:
        entries = [_private_entry(self._current), *(_public_entry(k) for k in self._retired)]
        document: dict[str, object] = {"keys": entries}
        if self._not_after:
            document["not_after"] = self._not_after
        content = (json.dumps(document, indent=2) + "\n").encode()
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
