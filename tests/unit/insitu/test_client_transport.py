"""The client's retries against a real HTTP server on loopback that answers from a script."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from insitu.client import BudgetExhausted, Client, Denied, InsituError, Unavailable
from insitu.client.transport import retry_after

PROBLEM = "application/problem+json"
Answer = tuple[int, dict[str, str], dict[str, object]]


class Scripted(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script: list[Answer] = []
        self.seen: list[str] = []


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_GET(self) -> None:
        self.server.seen.append(self.headers.get("Idempotency-Key", "") or self.path)
        status, headers, body = self.server.script.pop(0)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", PROBLEM if status >= 400 else "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def client_for(server: Scripted, waits: list[float]) -> Client:
    client = Client(f"http://127.0.0.1:{server.server_address[1]}", "token", retries=3)
    client._t.sleep = waits.append  # record the waits instead of sleeping them
    return client


def unavailable(**headers: str) -> Answer:
    body = {"type": "urn:insitu:problem:unavailable", "status": 503, "detail": "down"}
    return 503, headers, body


def test_503_is_retried_honouring_retry_after_then_exponential_backoff(server: Scripted) -> None:
    server.script = [unavailable(**{"Retry-After": "7"}), unavailable(), (200, {}, {"items": []})]
    waits: list[float] = []
    assert client_for(server, waits).catalogue().empty
    assert waits == [7.0, 1.0]  # what the server asked, then the second backoff step
    assert len(server.seen) == 3


def test_retries_give_up_with_the_typed_error(server: Scripted) -> None:
    server.script = [unavailable() for _ in range(4)]
    waits: list[float] = []
    with pytest.raises(Unavailable):
        client_for(server, waits).catalogue()
    assert waits == [0.5, 1.0, 2.0]


def test_an_exhausted_budget_is_not_retried(server: Scripted) -> None:
    body = {"type": "urn:insitu:problem:budget-exhausted", "status": 429, "detail": "spent"}
    server.script = [(429, {"Retry-After": "1"}, body)]
    waits: list[float] = []
    with pytest.raises(BudgetExhausted):
        client_for(server, waits).submit("t", {}, wait=False)
    assert waits == [] and len(server.seen) == 1


def test_a_retried_submission_carries_the_same_idempotency_key(server: Scripted) -> None:
    server.script = [unavailable(), (202, {}, {"id": "j1", "status": "accepted"})]
    assert client_for(server, []).submit("t", {}, wait=False) == "j1"
    assert len(server.seen) == 2 and server.seen[0] == server.seen[1] != ""


def test_a_denial_carries_its_rule_and_reason_code(server: Scripted) -> None:
    body = {
        "type": "urn:insitu:problem:forbidden",
        "status": 403,
        "detail": "no purpose",
        "rule": "p, analyst, *, job, submit",
        "reason_code": "missing_purpose",
    }
    server.script = [(403, {}, body)]
    with pytest.raises(Denied) as caught:
        client_for(server, []).catalogue()
    assert caught.value.reason_code == "missing_purpose" and caught.value.status == 403


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after("12") == 12.0
    assert retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30
    assert retry_after("soon") is None and retry_after(None) is None


def test_a_token_is_never_sent_in_clear_to_another_host() -> None:
    with pytest.raises(InsituError):
        Client("http://gateway.example", "token")
