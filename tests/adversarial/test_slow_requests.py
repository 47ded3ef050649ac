"""Slow requests (issue 15, item 6): clients that drip their request, or open too many
connections, against the gateway served as `insitu serve` serves it, over real sockets.

320 connections dripping a request stayed open. Now the headers must be complete within
`INSITU_HTTP_HEADER_TIMEOUT_S` of connecting (dripping does not extend it), a body may not
pause longer than `INSITU_HTTP_BODY_TIMEOUT_S`, and one address holds at most
`INSITU_HTTP_MAX_CONNECTIONS_PER_CLIENT` connections. Each test drips for far longer than
the limit allows and asserts the server hung up first and answered nothing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import home
from gateway.api import create_app
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings

DRIP_S = 0.1
DRIPS = 100  # 10 s of dripping, twenty times the limits below


def serve(tmp_path: Path, **limits: float) -> Iterator[tuple[str, int]]:
    settings = Settings(home=tmp_path / "home", **limits)  # type: ignore[arg-type]
    home.init_home(settings)
    with BackgroundServer(create_app(settings), settings=settings) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    yield from serve(tmp_path, http_header_timeout_s=0.5, http_body_timeout_s=0.5)


def closed(sock: socket.socket) -> bool:
    """Whether the server has hung up (and sent nothing before it did)."""
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    assert data == b"", "the server answered a request that was never complete"
    return True


def drip(sock: socket.socket, piece: bytes) -> bool:
    """Send ``piece`` a byte at a time; True once the server has hung up."""
    sock.settimeout(DRIP_S)
    for i in range(DRIPS):
        try:
            sock.send(piece[i % len(piece) : i % len(piece) + 1])
        except (ConnectionResetError, BrokenPipeError):
            return True
        if closed(sock):
            return True
    return False


@pytest.mark.slow
def test_headers_dripped_byte_by_byte_are_cut_off(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: insitu\r\n")
        assert drip(sock, b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaa\r\n")


@pytest.mark.slow
def test_a_connection_that_sends_nothing_is_cut_off(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.settimeout(DRIP_S)
        assert any(closed(sock) for _ in range(DRIPS))


@pytest.mark.slow
def test_a_body_dripped_byte_by_byte_is_cut_off(server: tuple[str, int]) -> None:
    with socket.create_connection(server) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: insitu\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000\r\n\r\n"
        )
        sock.settimeout(DRIP_S)
        cut = False
        for _ in range(DRIPS):
            time.sleep(0.6)  # longer than the body pause allows
            try:
                sock.send(b"{")
            except (ConnectionResetError, BrokenPipeError):
                cut = True
                break
            if closed(sock):
                cut = True
                break
        assert cut


@pytest.mark.slow
def test_one_address_may_hold_only_so_many_connections(tmp_path: Path) -> None:
    for address in serve(tmp_path, http_max_connections_per_client=4):
        held = [socket.create_connection(address) for _ in range(4)]
        try:
            with socket.create_connection(address) as extra:
                extra.settimeout(5)
                assert closed(extra)  # the fifth is closed before it can send anything
            # the four it holds are still served
            held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: insitu\r\n\r\n")
            held[0].settimeout(10)
            assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
            held[1].close()  # one closes: a new one is accepted again
            time.sleep(0.2)
            with socket.create_connection(address) as again:
                again.sendall(b"GET /healthz HTTP/1.1\r\nHost: insitu\r\n\r\n")
                again.settimeout(10)
                assert again.recv(4096).startswith(b"HTTP/1.1 200")
        finally:
            for sock in held:
                sock.close()
