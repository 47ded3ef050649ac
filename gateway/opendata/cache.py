"""Published results as ready-made response bodies, invalidated on publish.

The replica that publishes or unpublishes clears its cache at once; every replica also looks
at the tables' stamp (`model.stamp`) at most every `RECHECK_S` seconds, so a publication made
elsewhere is served within that time. Only published versions are ever put in here.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from gateway.context import Gateway
from gateway.opendata import model, render
from gateway.store import db

RECHECK_S = 1.0


@dataclass(frozen=True, slots=True)
class Entry:
    json: bytes
    csv: bytes
    open_class: str


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class OpenCache:
    def __init__(self, gw: Gateway, recheck_s: float = RECHECK_S) -> None:
        self._engine = gw.db
        self._recheck_s = recheck_s
        self._lock = threading.Lock()
        self._checked = 0.0
        self._stamp: tuple[int, str] | None = None
        self._entries: dict[tuple[str, int | None], Entry | None] = {}
        self._catalogue: bytes | None = None

    def invalidate(self) -> None:
        with self._lock:
            self._entries.clear()
            self._catalogue = None
            self._stamp = None
            self._checked = 0.0

    def _fresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self._recheck_s:
            return
        with db.reading(self._engine) as conn:
            stamp = model.stamp(conn)
        with self._lock:
            if stamp != self._stamp:
                self._entries.clear()
                self._catalogue = None
                self._stamp = stamp
            self._checked = now

    def entry(self, open_id: str, version: int | None) -> Entry | None:
        self._fresh()
        key = (open_id, version)
        with self._lock:
            if key in self._entries:
                return self._entries[key]
        with db.reading(self._engine) as conn:
            row = model.published_version(conn, open_id, version)
        found = None
        if row is not None:
            found = Entry(
                json=_dumps(render.document(row)),
                csv=render.csv_bytes(row.result),
                open_class=row.open_class,
            )
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = found
        return found

    def catalogue(self) -> bytes:
        self._fresh()
        with self._lock:
            if self._catalogue is not None:
                return self._catalogue
        with db.reading(self._engine) as conn:
            body = _dumps(render.dcat(model.published(conn)))
        with self._lock:
            self._catalogue = body
        return body
