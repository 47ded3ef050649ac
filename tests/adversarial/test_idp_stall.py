"""A hanging or dripping identity provider must not stall sign-ins (issue 15, weak spot 4).

The provider is a real HTTP server on loopback that hangs (reads the request, never answers
until the test lets it) or drips its body one byte at a time. The verifier is the real
`TokenVerifier` over the real `RemoteJwks`; time is a fake clock the test moves, and progress is
observed through the server's and the key source's events, never through wall-clock
measurements. Each test fails with the refresh back on the request path (a caller holding the
lock across the fetch) or without the total time limit.
"""

from __future__ import annotations

import json
import secrets
import select
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import OKPKey

from gateway.auth import IssuerKeys, LocalIssuer, RemoteJwks, TokenInvalid, TokenVerifier
from tests.unit.gateway.auth.auth_testkit import (
    AUDIENCE,
    ISSUER,
    FakeClock,
    claims,
    craft,
    ed25519_signer,
)

SAFETY_S = 15.0  # how long a test waits for an event before it calls the defence broken
READ_TIMEOUT_S = 30.0  # per read and total: far beyond SAFETY_S, so only the design can pass


class Provider:
    """A JWKS endpoint on 127.0.0.1 that answers, hangs or drips, as the test says."""

    def __init__(self) -> None:
        self.mode = "good"
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        self.arrived = threading.Event()  # a hanging or dripping request is being held
        self.release = threading.Event()  # let a hanging request answer
        self.client_gone = threading.Event()  # the client closed a held connection
        self._holding = 0
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with provider._lock:
                    provider.hits += 1
                    mode, body = provider.mode, json.dumps(provider.jwks).encode()
                if mode == "hang":
                    provider._hold(self.connection, body, self)
                elif mode == "drip":
                    provider._drip(self.connection, self)
                else:
                    self._send(body)

            def _send(self, body: bytes) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/jwks.json"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    @property
    def holding(self) -> bool:
        with self._lock:
            return self._holding > 0

    def _closed(self, conn: socket.socket) -> bool:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""

    def _hold(self, conn: socket.socket, body: bytes, handler: Any) -> None:
        with self._lock:
            self._holding += 1
        self.arrived.set()
        try:
            while not self.release.wait(0.02):
                if self._closed(conn):
                    self.client_gone.set()
                    return
            handler._send(body)  # late: the old keys, after the test moved on
        finally:
            with self._lock:
                self._holding -= 1

    def _drip(self, conn: socket.socket, handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        handler.wfile.flush()
        self.arrived.set()
        try:
            for _ in range(100000):
                conn.sendall(b" ")
                time.sleep(0.02)
        except OSError:
            self.client_gone.set()

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._flags: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> None:
        with self._lock:
            self.seen.append(name)
            self._flags.setdefault(name, threading.Event()).set()

    def wait(self, name: str) -> bool:
        with self._lock:
            flag = self._flags.setdefault(name, threading.Event())
        return flag.wait(SAFETY_S)


@pytest.fixture
def provider() -> Iterator[Provider]:
    server = Provider()
    yield server
    server.stop()


@pytest.fixture
def keys(tmp_path: Path) -> IssuerKeys:
    return IssuerKeys.generate(tmp_path / "issuer.jwks.json")


def _token(keys: IssuerKeys, subject: str = "li.na") -> str:
    return LocalIssuer(keys, issuer=ISSUER, audience=AUDIENCE).issue(
        subject=subject, department="market", roles=["analyst"]
    )


def _stranger() -> str:
    """An anonymous token whose kid the provider never published."""
    key = OKPKey.generate_key("Ed25519")
    header = {"alg": "Ed25519", "kid": secrets.token_hex(8), "typ": "at+jwt"}
    return craft(header, claims(), ed25519_signer(key))


def _source(provider: Provider, clock: FakeClock, events: Events) -> RemoteJwks:
    return RemoteJwks(
        provider.url,
        timeout_s=READ_TIMEOUT_S,
        total_timeout_s=READ_TIMEOUT_S,
        min_refresh_interval_s=30,
        cache_ttl_s=300,
        max_stale_s=3600,
        clock=clock,
        on_event=events,
    )


def test_valid_tokens_pass_while_the_jwks_refresh_hangs_and_the_hang_is_abandoned(
    provider: Provider, keys: IssuerKeys, tmp_path: Path
) -> None:
    clock, events = FakeClock(), Events()
    provider.jwks = keys.public_jwks()
    with _source(provider, clock, events) as source:
        verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
        assert verifier.verify(_token(keys)).subject == "li.na"  # first keys fetched

        provider.mode = "hang"
        clock.advance(301)  # the cache is due, and a stranger's kid asks for a refresh
        with pytest.raises(TokenInvalid, match="untrusted signing key"):
            verifier.verify(_stranger())
        assert provider.arrived.wait(SAFETY_S)
        # The refresh is stuck at the provider; a known key still answers right away.
        assert verifier.verify(_token(keys, "wang.fang")).subject == "wang.fang"
        for _ in range(50):
            with pytest.raises(TokenInvalid):
                verifier.verify(_stranger())
        assert provider.holding, "a verification waited until the stuck refresh gave up"
        assert provider.hits == 2  # the strangers were coalesced into the one refresh

        # Past the total time limit the stuck refresh is abandoned and a new one may start:
        # the provider is back with a rotated key, which becomes usable.
        rotated = keys.rotate(tmp_path / "issuer.jwks.json")
        provider.jwks, provider.mode = rotated.public_jwks(), "good"
        clock.advance(READ_TIMEOUT_S + 1)
        new_token = _token(rotated, "zhao.lei")
        with pytest.raises(TokenInvalid, match="untrusted signing key"):
            verifier.verify(new_token)  # refused now, fetched in the background
        assert events.wait("refresh.abandoned")
        assert source.settle(SAFETY_S)
        assert verifier.verify(new_token).subject == "zhao.lei"

        # The abandoned request finally answers with the old key set: it is discarded.
        provider.jwks = keys.public_jwks()
        provider.release.set()
        assert events.wait("refresh.discarded")
        assert verifier.verify(new_token).subject == "zhao.lei"


def test_a_dripping_jwks_is_cut_off_at_the_total_time_limit(
    provider: Provider, keys: IssuerKeys
) -> None:
    clock, events = FakeClock(), Events()
    provider.jwks = keys.public_jwks()
    with _source(provider, clock, events) as source:
        verifier = TokenVerifier(source, issuer=ISSUER, audience=AUDIENCE)
        verifier.verify(_token(keys))
        provider.mode = "drip"
        clock.advance(301)
        assert verifier.verify(_token(keys, "wang.fang")).subject == "wang.fang"
        assert provider.arrived.wait(SAFETY_S)
        assert "refresh.failed" not in events.seen  # still dripping: each read is quick
        clock.advance(READ_TIMEOUT_S + 1)  # past the refresh's total time limit
        assert events.wait("refresh.failed"), "the drip went on past the total time limit"
        assert provider.client_gone.wait(SAFETY_S)  # the connection was dropped
        assert verifier.verify(_token(keys, "zhao.lei")).subject == "zhao.lei"
