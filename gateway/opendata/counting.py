"""Open reads in the call statistics (调用次数) without one audit entry per anonymous read.

Reads are counted per UTC day × caller (an API key's holder, or `anonymous`) × open dataset
× outcome, and written as one `open.reads_summary` audit entry per window of `WINDOW_S`
seconds: at the first read after the window ends, when usage is asked for, or at shutdown.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.trail.refusals import UNAUTHENTICATED
from gateway.trail.writer import AuditTrail

WINDOW_S = 60
Key = tuple[str, str, str, str]  # day, holder, dataset, outcome (served | limited)


class OpenReads:
    def __init__(
        self, trail: AuditTrail, *, window_s: int = WINDOW_S, clock: Callable[[], float] = time.time
    ) -> None:
        self._trail = trail
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window = int(clock() // window_s)
        self._counts: Counter[Key] = Counter()

    def note(self, holder: str, dataset: str, outcome: str = "served") -> None:
        now = self._clock()
        window = int(now // self._window_s)
        day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
        with self._lock:
            ended = self._take() if window != self._window else None
            self._window = window
            self._counts[(day, holder, dataset, outcome)] += 1
        if ended:
            self._write(*ended)

    def flush(self, *, force: bool = False) -> None:
        """Write the summary of an ended window (or, with `force`, of the current one)."""
        window = int(self._clock() // self._window_s)
        with self._lock:
            ended = self._take() if (force or window != self._window) else None
            self._window = window
        if ended:
            self._write(*ended)

    def close(self) -> None:
        self.flush(force=True)

    def _take(self) -> tuple[int, Counter[Key]] | None:
        counts, window = self._counts, self._window
        self._counts = Counter()
        return (window, counts) if counts else None

    def _write(self, window: int, counts: Counter[Key]) -> None:
        start = datetime.fromtimestamp(window * self._window_s, UTC)
        self._trail.record_durable(
            type="open.reads_summary",
            principal=UNAUTHENTICATED,
            action="read",
            target="open",
            allowed=True,
            details={
                "window": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "window_s": self._window_s,
                "counts": [
                    {"day": d, "holder": h, "dataset": ds, "outcome": o, "calls": n}
                    for (d, h, ds, o), n in sorted(counts.items())
                ],
            },
        )
