"""The C2SP tlog-witness HTTP protocol: the add-checkpoint request body, the witness's answer,
and a small stdlib server for `Witness`.

    POST <prefix>/add-checkpoint
        old <size>\\n                     the size the client believes the witness last cosigned
        <base64 hash>\\n ...              0 to 63 consistency proof lines
        \\n
        <the signed checkpoint note>
    200  cosignature line(s)             text/plain; charset=utf-8
    400 / 403 / 404 / 422                a short text reason
    409  <last cosigned size>\\n          text/x.tlog.size
    GET  <prefix>/<hex SHA-256 of origin>/checkpoint   the last cosigned note (404 before)

`STATUS` is the one table from a refusal's kind to its HTTP status. Bodies over
`MAX_BODY` bytes are refused (413) before they are read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from audit.checkpoint import split_note
from audit.errors import AuditError
from audit.witness import Witness, WitnessRefusal

__all__ = [
    "MAX_BODY",
    "STATUS",
    "AddCheckpoint",
    "WitnessServer",
    "format_add_checkpoint",
    "parse_add_checkpoint",
    "parse_cosignatures",
]

MAX_BODY: Final = 64 * 1024
MAX_PROOF: Final = 63
SIZE_TYPE: Final = "text/x.tlog.size"
STATUS: Final = {
    "bad-request": 400,
    "unauthorized": 403,
    "unknown-origin": 404,
    "conflict": 409,
    "unprocessable": 422,
}
_OLD = re.compile(r"old (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: str


def _bad(message: str) -> WitnessRefusal:
    return WitnessRefusal(message, kind="bad-request")


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """The parts of an add-checkpoint body, or WitnessRefusal(kind="bad-request")."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the request is not UTF-8") from None
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise _bad("the request needs an empty line before the checkpoint")
    lines = head.split("\n")
    match = _OLD.fullmatch(lines[0])
    if match is None:
        raise _bad("the first line reads 'old <size>'")
    if len(lines) - 1 > MAX_PROOF:
        raise _bad(f"at most {MAX_PROOF} consistency proof lines")
    proof = []
    for line in lines[1:]:
        try:
            raw = base64.b64decode(line.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise _bad("a proof line is one base64 hash") from None
        if len(raw) != 32 or base64.b64encode(raw).decode("ascii") != line:
            raise _bad("a proof line is one base64 hash")
        proof.append(raw)
    old_size = int(match.group(1))
    if old_size >= 2**63:
        raise _bad("old size is too large")
    try:
        split_note(note)
    except AuditError:
        raise _bad("the checkpoint is not a signed note") from None
    return AddCheckpoint(old_size, tuple(proof), note)


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """The add-checkpoint request body."""
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode("ascii") + "\n" for h in proof)]
    return ("".join(lines) + "\n" + note).encode("utf-8")


def parse_cosignatures(body: bytes) -> list[str]:
    """The signature lines of a witness's 200 answer (each kept with its newline)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the witness answer is not UTF-8") from None
    if not text.endswith("\n") or not text.startswith("\u2014 "):
        raise _bad("the witness answer is note signature lines")
    return [line + "\n" for line in text[:-1].split("\n")]


class _Handler(BaseHTTPRequestHandler):
    server: WitnessServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds per socket read: a client that drips its request is dropped

    def do_POST(self) -> None:
        if self.path != f"{self.server.prefix}/add-checkpoint":
            self._answer(404, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._answer(411, "text/plain; charset=utf-8", b"length required\n")
            return
        if not 0 <= length <= MAX_BODY:
            self._answer(413, "text/plain; charset=utf-8", b"request too large\n")
            return
        body = self.rfile.read(length)
        try:
            request = parse_add_checkpoint(body)
            line = self.server.witness.add_checkpoint(request.old_size, request.proof, request.note)
        except WitnessRefusal as exc:
            if exc.kind == "conflict":
                self._answer(409, SIZE_TYPE, f"{exc.size}\n".encode())
            else:
                reason = f"{exc}\n".encode()
                self._answer(STATUS.get(exc.kind, 422), "text/plain; charset=utf-8", reason)
            return
        except AuditError:
            self._answer(500, "text/plain; charset=utf-8", b"the witness state is unusable\n")
            return
        self._answer(200, "text/plain; charset=utf-8", line.encode("utf-8"))

    def do_GET(self) -> None:
        origin_hash = hashlib.sha256(self.server.witness.origin.encode()).hexdigest()
        note = None
        if self.path == f"{self.server.prefix}/{origin_hash}/checkpoint":
            note = self.server.witness.last_note()
        if note is None:
            self._answer(404, "text/plain; charset=utf-8", b"not found\n")
        else:
            self._answer(200, "text/plain; charset=utf-8", note.encode("utf-8"))

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # requests are not logged to stderr


class WitnessServer(ThreadingHTTPServer):
    """`Witness` served over the C2SP tlog-witness protocol (`serve_forever`, `shutdown`)."""

    daemon_threads = True

    def __init__(self, witness: Witness, host: str = "127.0.0.1", port: int = 0, prefix: str = ""):
        super().__init__((host, port), _Handler)
        self.witness = witness
        self.prefix = prefix.rstrip("/")
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"

    def start(self) -> WitnessServer:
        """Serve in a daemon thread (for tests and embedding); `shutdown()` stops it."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self
