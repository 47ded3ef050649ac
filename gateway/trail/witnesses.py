"""insitu as a client of C2SP tlog-witnesses: ask each configured witness to cosign the newest
checkpoint and keep the cosignatures it returns.

    for each witness URL (INSITU_AUDIT_WITNESS_URLS, submission prefixes):
        POST <url>/add-checkpoint  "old <n>", consistency proof n → size, the signed note
        200  → signature lines; those by known witness keys (INSITU_AUDIT_WITNESSES) that verify
               are stored with the checkpoint (`SqlAuditLog.add_cosignature`)
        409  → the witness last cosigned size n: one retry from n (a larger n than our log is
               a rollback or a fork on our side, reported, never "fixed")
        else → reported as that witness's failure; the others are still asked

The witness is asked from size 0 first (the protocol allows it), then from what its 409 says.
Only URLs from settings are contacted, with a bounded timeout and response size.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from audit import (
    AuditError,
    format_add_checkpoint,
    parse_cosignatures,
    witness_key,
)
from gateway.context import Gateway
from gateway.store import db

TIMEOUT_S = 10.0
MAX_ANSWER = 64 * 1024


@dataclass(frozen=True, slots=True)
class WitnessOutcome:
    url: str
    size: int
    stored: int
    error: str | None = None


def request_cosignatures(gw: Gateway, client: httpx.Client | None = None) -> list[WitnessOutcome]:
    """Ask every configured witness to cosign a checkpoint covering the whole log."""
    if client is None:
        with httpx.Client(follow_redirects=False) as own:
            return request_cosignatures(gw, own)
    urls = gw.settings.audit_witness_urls.split()
    keys = [witness_key(v) for v in gw.settings.audit_witnesses.split()]
    log = gw.audit.log
    with db.reading(gw.db) as conn:
        size = log.size(conn)
    committed = gw.audit.committer.checkpoint(size)
    note, size = committed.checkpoint, committed.checkpoint_size
    if note is None:  # pragma: no cover - checkpoint() always signs one
        raise AuditError("no signed checkpoint covers the log")
    outcomes = []
    for url in urls:
        try:
            lines = _add_checkpoint(gw, client, url, note, size)
            with gw.db.begin() as conn:
                stored = log.add_cosignature(conn, note + "".join(lines), keys)
            outcomes.append(WitnessOutcome(url, size, stored))
        except (AuditError, httpx.HTTPError, _Refused) as exc:
            outcomes.append(WitnessOutcome(url, size, 0, _reason(exc)))
    return outcomes


class _Refused(Exception):
    """The witness answered with a status other than 200 (or 409 twice)."""


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPError):
        return "the witness could not be reached"
    if isinstance(exc, AuditError):
        return f"the witness's answer was refused: {exc}"
    return str(exc)


def _post(client: httpx.Client, url: str, body: bytes) -> tuple[int, bytes]:
    """POST `body`; the status and at most MAX_ANSWER bytes of the answer (more is refused)."""
    with client.stream("POST", url, content=body, timeout=TIMEOUT_S) as answer:
        data = bytearray()
        for chunk in answer.iter_bytes():
            data += chunk
            if len(data) > MAX_ANSWER:
                raise _Refused("the witness's answer is too large")
        return answer.status_code, bytes(data)


def _add_checkpoint(gw: Gateway, client: httpx.Client, url: str, note: str, size: int) -> list[str]:
    old = 0
    for _ in range(2):
        proof: list[bytes] = []
        if 0 < old < size:
            with db.reading(gw.db) as conn:
                proof = gw.audit.log.consistency_proof(conn, old, size)
        status, body = _post(
            client, url.rstrip("/") + "/add-checkpoint", format_add_checkpoint(old, proof, note)
        )
        if status == 200:
            return parse_cosignatures(body)
        if status != 409:
            raise _Refused(f"the witness answered {status}")
        try:
            old = int(body.decode("ascii").strip())
        except ValueError:
            raise _Refused("the witness's 409 answer is not a size") from None
        if not 0 <= old <= size:
            raise _Refused(
                f"the witness has cosigned size {old}, beyond this log's {size}: "
                "the log was rolled back or forked"
            )
    raise _Refused("the witness's size kept changing")
