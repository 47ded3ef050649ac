"""Serving the app with uvicorn, bounded against slow and greedy clients (issue 15).

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) and answers 503 past
``limit_concurrency``, but it waits forever for a request that arrives one byte at a time,
and one client address may open as many connections as it likes. ``GuardedH11Protocol``
(uvicorn's h11 protocol with three additions) closes the connection when:

- the request's headers are not complete ``http_header_timeout_s`` after the connection was
  opened, or after the first byte of a later request on a keep-alive connection — the
  deadline is not extended by further bytes, so dripping does not help;
- a request body pauses longer than ``http_body_timeout_s`` between two reads;
- the client address already holds ``http_max_connections_per_client`` connections (the new
  one is closed at once).

The time the application takes to answer is not limited here (jobs have their own limits).
Behind a reverse proxy every connection comes from the proxy's address: set the per-client
limit there (``deploy/proxy/nginx.conf``) and raise it here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class ServeLimits:
    header_timeout_s: float
    body_timeout_s: float
    max_connections_per_client: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ServeLimits:
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            max_connections_per_client=settings.http_max_connections_per_client,
        )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline, a body pause limit and a per-client
    connection limit. ``guarded(limits)`` makes the subclass a server uses."""

    limits: ClassVar[ServeLimits]
    open_per_client: ClassVar[Counter[str]]

    _guard: asyncio.TimerHandle | None = None
    _counted: bool = False
    _header_armed: bool = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        if self.open_per_client[address] >= self.limits.max_connections_per_client:
            transport.abort()  # too many from this address: refused before reading anything
            return
        self.open_per_client[address] += 1
        self._counted = True
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        if self._counted:
            address = self.client[0] if self.client else ""
            self.open_per_client[address] -= 1
            if self.open_per_client[address] <= 0:
                del self.open_per_client[address]
            self._counted = False
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:  # part of a request's headers: the deadline runs, not extended
            self._arm_header_deadline()
        elif state is h11.SEND_BODY:  # reading a body: a fresh pause limit per read
            self._header_armed = False
            self._cancel()
            self._guard = self.loop.call_later(self.limits.body_timeout_s, self._cut)
        else:  # the request is read (or the connection is done): the app's turn
            self._header_armed = False
            self._cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer until the next byte
        self._header_armed = False
        self._cancel()

    def _arm_header_deadline(self) -> None:
        if self._header_armed:
            return
        self._cancel()
        self._header_armed = True
        self._guard = self.loop.call_later(self.limits.header_timeout_s, self._cut)

    def _cancel(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _cut(self) -> None:
        self._guard = None
        if self.flow.read_paused:  # the app has not taken the body yet: not the client's pause
            self._guard = self.loop.call_later(self.limits.body_timeout_s, self._cut)
            return
        if not self.transport.is_closing():
            self.transport.abort()


def guarded(limits: ServeLimits) -> type[GuardedH11Protocol]:
    """A protocol class bound to ``limits``, with its own per-client connection counts."""
    return type(
        "BoundGuardedH11Protocol",
        (GuardedH11Protocol,),
        {"limits": limits, "open_per_client": Counter()},
    )


def config(app: Any, settings: Settings, *, host: str, port: int, **extra: Any) -> uvicorn.Config:
    """The uvicorn configuration of ``insitu serve`` (and of the background server)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded(ServeLimits.from_settings(settings)),
        timeout_keep_alive=settings.http_keep_alive_s,
        limit_concurrency=settings.http_max_connections,
        log_level="warning",
        **extra,
    )
