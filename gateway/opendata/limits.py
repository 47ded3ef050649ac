"""Per-caller rate limits of the open API: a token bucket per API key (its own limit) and per
anonymous client address (a lower one). In memory, per replica."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

MAX_BUCKETS = 100_000


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last refill)

    def take(self, name: str, per_minute: int) -> float:
        """0 when the call may go ahead, else the seconds to wait (Retry-After)."""
        now = self._clock()
        rate = per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(name, (float(per_minute), now))
            tokens = min(float(per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return 0.0
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
            self._buckets[name] = (tokens, now)
        return max(1.0, math.ceil((1.0 - tokens) / rate))
