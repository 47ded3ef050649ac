"""Failed authentications in the audit log, in bounded space however many arrive.

A refused token is a denied decision and belongs in the log; but anyone can send refused
tokens, and one entry each would let an anonymous flood grow the log without bound. So per
window of `WINDOW_S` seconds:

- the first failure of each reason is written at once, durably, before the 401 is answered
  (`auth.denied`: the reason and a keyed fingerprint of the client address, never the token);
- later failures in the window are only counted, and written as one `auth.denied_summary`
  entry (failures per reason, distinct client fingerprints) once the window is over: at the
  next failure after it, or when the gateway stops.

So each window adds at most one entry per reason plus one summary. Reasons are the verifier's
fixed phrases (`TokenInvalid.reason`), never text from the request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from audit import Actor
from gateway.trail.writer import AuditTrail

__all__ = ["UNAUTHENTICATED", "WINDOW_S", "FailedAuthentications"]

WINDOW_S = 60
UNAUTHENTICATED = Actor(subject="unauthenticated", department="none", roles=())


def _window_start(window: int, window_s: int) -> str:
    return datetime.fromtimestamp(window * window_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FailedAuthentications:
    """Counts refused authentications per window and records them as described above."""

    def __init__(
        self,
        trail: AuditTrail,
        *,
        window_s: int = WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window_s < 1:
            raise ValueError("window_s must be at least 1")
        self._trail = trail
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window = -1
        self._failures: Counter[str] = Counter()
        self._clients: set[str] = set()

    def note(self, reason: str, client: str | None) -> None:
        """Record one refused authentication (durably if it is the first of its reason in the
        window); raises `Unavailable` if the audit log cannot be written."""
        window = int(self._clock() // self._window_s)
        fingerprint = self._trail.fingerprint(client or "unknown")
        with self._lock:
            ended = self._take() if window != self._window else None
            self._window = window
            first = reason not in self._failures
            self._failures[reason] += 1
            self._clients.add(fingerprint)
        if ended is not None:
            self._summarise(*ended)
        if first:
            self._trail.record_durable(
                type="auth.denied",
                principal=UNAUTHENTICATED,
                action="authenticate",
                target="gateway",
                allowed=False,
                reason=reason,
                details={"client": fingerprint, "window": _window_start(window, self._window_s)},
            )

    def close(self) -> None:
        """Write the current window's summary (the gateway is stopping)."""
        with self._lock:
            ended = self._take()
        if ended is not None:
            self._summarise(*ended)

    def _take(self) -> tuple[int, Counter[str], int] | None:
        """The ending window's counts if some failure in it has no entry yet; resets."""
        failures, clients, window = self._failures, len(self._clients), self._window
        self._failures, self._clients = Counter(), set()
        if sum(failures.values()) <= len(failures):  # each was the first of its reason
            return None
        return window, failures, clients

    def _summarise(self, window: int, failures: Counter[str], clients: int) -> None:
        self._trail.record_durable(
            type="auth.denied_summary",
            principal=UNAUTHENTICATED,
            action="authenticate",
            target="gateway",
            allowed=False,
            reason="refused authentications in one window",
            details={
                "window": _window_start(window, self._window_s),
                "window_s": self._window_s,
                "failures": dict(sorted(failures.items())),
                "clients": clients,
            },
        )
