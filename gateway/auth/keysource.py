"""Where verification keys come from: a fixed JWKS, or a remote JWKS URL with a careful cache.

Only public signing keys of kty OKP/EC/RSA are accepted. Private members, ``x5c``/``x5u`` and
other extras are dropped; keys with ``use`` other than ``sig``, ``key_ops`` without ``verify``,
RSA moduli under 2048 bits or curves outside the table below are ignored.

`RemoteJwks` refreshes at most once per ``min_refresh_interval_s`` whatever callers ask for
(random ``kid`` floods cannot amplify into requests to the identity provider), refreshes
anyway once the cache is older than ``cache_ttl_s``, keeps the last good keys for
``max_stale_s`` after the last successful fetch when the endpoint fails or answers garbage,
then fails closed with `KeySourceUnavailable`. Refreshes run in the background with a hard
total time limit, so a provider that hangs or drips bytes never delays a verification whose
key is cached (see `RemoteJwks`).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

from gateway.auth.discovery import check_url, discover_jwks_uri, fetch_json
from gateway.auth.errors import KeySourceUnavailable

log = logging.getLogger(__name__)

#: JWS algorithm -> (kty, required curve or None). Symmetric and "none" are never here.
ALGORITHM_KEYS: Mapping[str, tuple[str, str | None]] = {
    "Ed25519": ("OKP", "Ed25519"),
    "EdDSA": ("OKP", "Ed25519"),  # RFC 8037's name; only Ed25519 keys (never Ed448) here
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
}
_PUBLIC_MEMBERS = {"OKP": ("crv", "x"), "EC": ("crv", "x", "y"), "RSA": ("n", "e")}
_CURVES = {"OKP": {"Ed25519"}, "EC": {"P-256", "P-384", "P-521"}}
MIN_RSA_BITS = 2048
MAX_KEYS = 64


class KeySource(Protocol):
    """Supplies the keys a token may be verified with; ``kid`` is a hint for refreshing."""

    def get_key_set(self, kid: str | None) -> KeySet: ...


def _public_members(entry: object) -> dict[str, str | list[str]] | None:
    """The public members of an acceptable signing JWK, or None."""
    if not isinstance(entry, dict) or entry.get("kty") not in _PUBLIC_MEMBERS:
        return None
    kty: str = entry["kty"]
    key_ops = entry.get("key_ops")
    usable = entry.get("use", "sig") == "sig" and (
        key_ops is None or (isinstance(key_ops, list) and "verify" in key_ops)
    )
    if not usable or (kty in _CURVES and entry.get("crv") not in _CURVES[kty]):
        return None
    if any(m in entry and not isinstance(entry[m], str) for m in ("kid", "alg")):
        return None  # an unreadable alg must not make the key good for every algorithm
    clean: dict[str, str | list[str]] = {"kty": kty}
    for member in _PUBLIC_MEMBERS[kty]:
        value = entry.get(member)
        if not isinstance(value, str):
            return None
        clean[member] = value
    clean |= {m: entry[m] for m in ("kid", "alg") if isinstance(entry.get(m), str)}
    return clean


def _public_key(entry: object) -> Key | None:
    """The public signing key in a JWK dict, or None when it is not acceptable."""
    clean = _public_members(entry)
    if clean is None:
        return None
    try:
        if clean["kty"] == "RSA":
            n = str(clean["n"])
            modulus = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
            if int.from_bytes(modulus, "big").bit_length() < MIN_RSA_BITS:
                return None
            return RSAKey.import_key(clean)
        if clean["kty"] == "EC":
            return ECKey.import_key(clean)
        return OKPKey.import_key(clean)
    except (JoseError, ValueError, TypeError, KeyError):
        return None


def import_public_jwks(data: object) -> KeySet:
    """A KeySet of the acceptable public signing keys in a JWKS document (possibly empty)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys = [key for key in map(_public_key, data["keys"][:MAX_KEYS]) if key is not None]
    return KeySet(keys)


class StaticKeySource:
    """A fixed JWKS (for example the local issuer's ``public_jwks()``)."""

    def __init__(self, jwks: Mapping[str, object]) -> None:
        self._keys = import_public_jwks(jwks)
        if not self._keys.keys:
            raise ValueError("the JWKS holds no acceptable public signing key")

    def get_key_set(self, kid: str | None) -> KeySet:
        return self._keys


@dataclass(slots=True)
class _Refresh:
    """One refresh in flight: its number, when it must be over, and who waits for it."""

    generation: int
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)


class RemoteJwks:
    """A JWKS fetched over HTTPS (plain HTTP only on loopback), cached and refreshed carefully.

    Give either the JWKS ``url`` or, through `RemoteJwks.discover`, the ``issuer`` whose
    metadata names it; discovery then runs inside the first refresh (and again on later
    refreshes until it succeeds), under the same rate limit, so a provider that is down at
    start-up delays nothing and a wrong ``issuer`` in its metadata fails closed.

    Refreshes run off the request path, in a background thread: a caller never holds a lock
    across I/O. While keys are cached, `get_key_set` answers with them at once (a due refresh
    or an unknown ``kid`` only starts one, at most one in flight and one per
    ``min_refresh_interval_s``); only when no usable keys are cached (before the first, or past
    ``max_stale_s``) does a caller wait, and then no longer than ``total_timeout_s``. A
    refresh still running when its total time is up is abandoned: its answer is discarded if
    it ever comes, a new one may start (at most ``MAX_REFRESH_THREADS`` threads alive), and
    each read inside it is still bounded by ``timeout_s``. ``on_event`` hears
    "refresh.started", "refresh.succeeded", "refresh.failed", "refresh.abandoned" and
    "refresh.discarded".
    """

    MAX_REFRESH_THREADS = 2

    def __init__(
        self,
        url: str | None,
        *,
        issuer: str | None = None,
        http_client: httpx.Client | None = None,
        timeout_s: float = 3.0,
        total_timeout_s: float | None = None,
        min_refresh_interval_s: float = 30.0,
        cache_ttl_s: float = 300.0,
        max_stale_s: float = 3600.0,
        max_response_bytes: int = 256 * 1024,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if url is not None:
            check_url(url, "JWKS URL")
        elif issuer is None:
            raise ValueError("give the JWKS URL or the issuer to discover it from")
        else:
            check_url(issuer, "OIDC issuer")
        if not 0 <= min_refresh_interval_s <= cache_ttl_s <= max_stale_s:
            raise ValueError("need 0 <= min_refresh_interval_s <= cache_ttl_s <= max_stale_s")
        total = timeout_s if total_timeout_s is None else total_timeout_s
        if not 0 < timeout_s <= total <= 60:
            raise ValueError("need 0 < timeout_s <= total_timeout_s <= 60")
        self.url = url
        self.issuer = issuer
        self._owns_client = http_client is None
        self._client = http_client if http_client is not None else httpx.Client()
        self._timeout_s = timeout_s
        self._total_s = total
        self._min_interval = min_refresh_interval_s
        self._cache_ttl = cache_ttl_s
        self._max_stale = max_stale_s
        self._max_bytes = max_response_bytes
        self._clock = clock
        self._on_event = on_event
        self._lock = threading.Lock()  # guards the fields below; never held across I/O
        self._keys: KeySet | None = None
        self._kids: frozenset[str | None] = frozenset()
        self._fetched_at = 0.0
        self._attempted_at: float | None = None
        self._inflight: _Refresh | None = None
        self._generation = 0
        self._threads = 0

    @classmethod
    def discover(cls, issuer: str, **kwargs: Any) -> RemoteJwks:
        """A JWKS found through the issuer's OpenID Connect metadata (its ``jwks_uri``)."""
        return cls(None, issuer=issuer, **kwargs)

    def get_key_set(self, kid: str | None) -> KeySet:
        """The cached keys at once (a refresh, if due, starts in the background); before the
        first keys (or once they are past ``max_stale_s``), waits for the refresh (bounded);
        `KeySourceUnavailable` when no keys are fresh enough."""
        with self._lock:
            now = self._clock()
            self._abandon_overdue(now)
            due = (
                self._keys is None
                or now - self._fetched_at >= self._cache_ttl
                or (kid is not None and kid not in self._kids)
            )
            if due:
                self._start_refresh(now)
            usable, waiting = self._usable(now), self._inflight
        if usable is None and waiting is not None:
            waiting.done.wait(self._total_s)  # nothing to answer with until it is over
            with self._lock:
                self._abandon_overdue(self._clock())
        with self._lock:
            usable = self._usable(self._clock())
        if usable is None:
            raise KeySourceUnavailable("verification keys are unavailable")
        return usable

    def _usable(self, now: float) -> KeySet | None:
        if self._keys is None or now - self._fetched_at > self._max_stale:
            return None
        return self._keys

    def settle(self, timeout_s: float = 10.0) -> bool:
        """Wait until no refresh is in flight (True) or `timeout_s` of real time passed."""
        with self._lock:
            waiting = self._inflight
        return waiting is None or waiting.done.wait(timeout_s)

    def _emit(self, event: str) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _abandon_overdue(self, now: float) -> None:
        refresh = self._inflight
        if refresh is not None and now >= refresh.deadline:
            self._inflight = None
            refresh.done.set()
            log.warning("JWKS refresh took longer than %.1f s; abandoned", self._total_s)
            self._emit("refresh.abandoned")

    def _start_refresh(self, now: float) -> None:
        if self._inflight is not None or self._threads >= self.MAX_REFRESH_THREADS:
            return  # coalesced with the one in flight (or too many stuck ones)
        if self._attempted_at is not None and now - self._attempted_at < self._min_interval:
            return
        self._attempted_at = now
        self._generation += 1
        refresh = _Refresh(self._generation, now + self._total_s)
        self._inflight = refresh
        self._threads += 1
        thread = threading.Thread(
            target=self._run, args=(refresh,), name="jwks-refresh", daemon=True
        )
        self._emit("refresh.started")
        thread.start()

    def _run(self, refresh: _Refresh) -> None:
        try:
            keys = self._fetch(refresh.deadline)
            with self._lock:
                if self._inflight is not refresh:
                    self._emit("refresh.discarded")  # abandoned meanwhile: too late to count
                    return
                self._inflight = None
                if keys is not None:
                    self._keys = keys
                    self._kids = frozenset(key.kid for key in keys.keys)
                    self._fetched_at = self._clock()
                self._emit("refresh.succeeded" if keys is not None else "refresh.failed")
        finally:
            with self._lock:
                self._threads -= 1
            refresh.done.set()

    def _fetch(self, deadline: float) -> KeySet | None:
        """The keys now published, or None (logged) when the endpoint fails or answers junk."""
        try:
            if self.url is None:
                assert self.issuer is not None  # checked in __init__
                self.url = check_url(
                    discover_jwks_uri(self._client, self.issuer, timeout_s=self._timeout_s),
                    "JWKS URL",
                )
            document = fetch_json(
                self._client,
                self.url,
                timeout_s=self._timeout_s,
                max_bytes=self._max_bytes,
                deadline=deadline,
                clock=self._clock,
            )
            keys = import_public_jwks(document)
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            log.warning("JWKS refresh failed (%s); keeping the last good keys", type(exc).__name__)
            return None
        if not keys.keys:
            log.warning("JWKS refresh returned no acceptable keys; keeping the last good keys")
            return None
        return keys

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> RemoteJwks:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
