"""The local issuer's keys as a running gateway sees them: the key file, reloaded on change.

`insitu token rotate-key` rewrites the key file from another process; `LocalKeySource` notices
the new file (inode, size, mtime, ctime, mode) on the next verification and from then on trusts
the new key and the previous one until its window ends, and serves both at
``/.well-known/jwks.json``. A retired key drops out when its window ends even if the file does
not change again.

A key file that becomes unreadable, too open or malformed fails closed
(`KeySourceUnavailable`, a 503), never back to keys the file no longer holds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from joserfc.jwk import KeySet

from gateway.auth.errors import IssuerKeyError, KeySourceUnavailable
from gateway.auth.keys import IssuerKeys
from gateway.auth.keysource import import_public_jwks

log = logging.getLogger(__name__)


class LocalKeySource:
    """A `KeySource` over the local issuer's key file; ``clock`` (unix time) is for tests."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._keys: IssuerKeys | None = None
        self._key_set: tuple[frozenset[str], KeySet] | None = None
        # Fail fast at start-up with the actionable `IssuerKeyError` (missing, 0644, malformed).
        self._keys = IssuerKeys.load(path)
        self._signature = self._stat()

    def _stat(self) -> tuple[int, ...]:
        try:
            info = os.stat(self.path, follow_symlinks=False)
        except OSError:
            raise KeySourceUnavailable("the local issuer key file is unavailable") from None
        return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_mode

    def keys(self) -> IssuerKeys:
        """The keys of the file as it is now (reloaded when it changed)."""
        with self._lock:
            signature = self._stat()
            if self._keys is None or signature != self._signature:
                try:
                    self._keys = IssuerKeys.load(self.path)
                except IssuerKeyError as exc:
                    self._keys = self._signature = self._key_set = None
                    log.error("local issuer key file refused: %s", exc)
                    raise KeySourceUnavailable("the local issuer key file is unusable") from None
                self._signature = signature
            return self._keys

    def public_jwks(self) -> dict[str, object]:
        """The keys valid now (current first), as served at ``/.well-known/jwks.json``."""
        return self.keys().public_jwks(self._clock())

    def get_key_set(self, kid: str | None) -> KeySet:
        jwks = self.public_jwks()
        kids = frozenset(str(entry["kid"]) for entry in jwks["keys"])  # type: ignore[attr-defined]
        cached = self._key_set
        if cached is not None and cached[0] == kids:
            return cached[1]
        key_set = import_public_jwks(jwks)
        self._key_set = (kids, key_set)
        return key_set
