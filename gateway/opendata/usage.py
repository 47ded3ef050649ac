"""Usage statistics as open data (调用次数), each figure computed at a signed checkpoint.

Figures are counted from the audit log's first `tree_size` entries, where `tree_size` is the
size of the newest signed checkpoint, which the answer carries: anyone with the log's public
key (`/open/v1/audit/keys`) checks its signature, and later asks for a consistency proof from
that size to any newer checkpoint to check the log behind the figures was not rewritten.
Job calls count per day × requesting department × dataset; open reads per day × caller (an
API key's holder, or `anonymous`) × open dataset.
"""

from __future__ import annotations

import threading
from typing import Any

from gateway.context import Gateway
from gateway.store import db
from gateway.trail.usage import count


class Usage:
    """The figures at the newest signed checkpoint, computed once per checkpoint."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw
        self._lock = threading.Lock()
        self._cached: tuple[int, dict[str, Any]] | None = None

    def current(self) -> dict[str, Any]:
        gw = self._gw
        with db.reading(gw.db) as conn:
            head = gw.audit.log.latest_head(conn)
        if head is None:
            committed = gw.audit.committer.checkpoint(0)
            assert committed.checkpoint is not None
            size, note = committed.checkpoint_size, committed.checkpoint
        else:
            size, note = head.size, head.note
        with self._lock:
            if self._cached is not None and self._cached[0] == size:
                return self._cached[1]
        with db.reading(gw.db) as conn:
            items = count(conn, size)
        body = {
            "tree_size": size,
            "checkpoint": note,
            "origin": gw.audit.log.origin,
            "items": items,
        }
        with self._lock:
            self._cached = (size, body)
        return body
