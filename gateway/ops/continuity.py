"""Audit continuity: the newest checkpoint this gateway published, remembered outside the store.

    <home>/audit/last-checkpoint    the newest signed checkpoint note the gateway handed out
                                    (written, fsynced and renamed before anyone is given it)
    <home>/audit/rollbacks.jsonl    rollbacks an operator acknowledged (one JSON object a line)

A store restored from a backup (or rolled back any other way) holds a log whose head is
behind that checkpoint, or a different tree at its size. At start-up `check` compares the
two and refuses to serve (`RollbackDetected`) until an operator records the loss with
`insitu audit acknowledge-rollback`: an audited entry `audit.rollback_acknowledged` in the
log, a line in `rollbacks.jsonl`, and the remembered checkpoint moved to the new head.
Receipts for entries that were lost are then reported as lost (`lost_in`), never silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit import AuditError, Checkpoint, NoteVerifier, open_checkpoint
from gateway.errors import Unavailable
from gateway.settings import Settings
from gateway.store import db
from gateway.trail.writer import AuditTrail

LAST_CHECKPOINT = "last-checkpoint"
ROLLBACKS = "rollbacks.jsonl"


class RollbackDetected(Unavailable):
    """The store's log is behind, or not an extension of, the newest checkpoint published."""


def audit_dir(settings: Settings) -> Path:
    return settings.home / "audit"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    temp.replace(path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class Remembered:
    """Keeps `last-checkpoint` at the largest checkpoint signed (the committer's hook)."""

    def __init__(self, settings: Settings) -> None:
        self.path = audit_dir(settings) / LAST_CHECKPOINT
        self._size = -1

    def __call__(self, size: int, note: str) -> None:
        if size > self._size:
            _write_atomic(self.path, note)
            self._size = size


def remembered(settings: Settings, verifiers: Sequence[NoteVerifier], origin: str) -> Checkpoint:
    """The remembered checkpoint, opened with the log's keys (None-safe callers check first)."""
    note = (audit_dir(settings) / LAST_CHECKPOINT).read_text(encoding="utf-8")
    return open_checkpoint(note, verifiers, origin)


@dataclass(frozen=True, slots=True)
class Gap:
    """What the store's log lacks against the remembered checkpoint."""

    remembered: Checkpoint
    head_size: int
    consistent: bool  # False: the log has the size, but a different tree (another history)

    def message(self) -> str:
        if self.consistent:
            what = f"its head ({self.head_size} entries) is behind"
        else:
            what = f"its first {self.remembered.size} entries differ from"
        return (
            f"the audit log was rolled back: {what} the checkpoint of "
            f"{self.remembered.size} entries this gateway published. Receipts handed out for "
            "the entries since are not in this log. Record the loss with `insitu audit "
            "acknowledge-rollback` before serving (it is audited)."
        )


def find_gap(settings: Settings, engine: db.Engine, trail: AuditTrail) -> Gap | None:
    """Compare the store's log with the remembered checkpoint (None: no file, or consistent)."""
    if not (audit_dir(settings) / LAST_CHECKPOINT).is_file():
        return None
    try:
        cp = remembered(settings, trail.log.verifiers, trail.log.origin)
    except (OSError, AuditError):
        raise Unavailable("the remembered audit checkpoint cannot be read or verified") from None
    with db.reading(engine) as conn:
        size = trail.log.size(conn)
        if size < cp.size:
            return Gap(cp, size, consistent=True)
        if trail.log.root(conn, cp.size) != cp.root:
            return Gap(cp, size, consistent=False)
    return None


def check(settings: Settings, engine: db.Engine, trail: AuditTrail) -> None:
    """Refuse to serve a log behind or inconsistent with the remembered checkpoint."""
    gap = find_gap(settings, engine, trail)
    if gap is not None:
        raise RollbackDetected(gap.message())


def acknowledge(
    settings: Settings, engine: db.Engine, trail: AuditTrail, *, by: str
) -> dict[str, Any]:
    """Record the loss: an audited entry, a line in `rollbacks.jsonl`, and the remembered
    checkpoint moved to the log's new head. Returns the record."""
    gap = find_gap(settings, engine, trail)
    if gap is None:
        raise Unavailable(
            "the audit log is not behind the remembered checkpoint; nothing to record"
        )
    cp = gap.remembered
    record: dict[str, Any] = {
        "acknowledged_at": datetime.now(UTC).isoformat(),
        "by": by,
        "remembered_size": cp.size,
        "remembered_root": cp.root.hex(),
        "restored_size": gap.head_size,
        "consistent": gap.consistent,
    }
    with engine.begin() as conn:
        index = trail.record(
            conn,
            type="audit.rollback_acknowledged",
            principal=None,
            action="acknowledge",
            target="audit:log",
            allowed=True,
            details={**record, "operator": by},
        )
        head = trail.log.sign_head(conn)
    record["audit_index"] = index
    path = audit_dir(settings) / ROLLBACKS
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")
        out.flush()
        os.fsync(out.fileno())
    _write_atomic(audit_dir(settings) / LAST_CHECKPOINT, head.note)
    return record


def rollbacks(settings: Settings) -> list[dict[str, Any]]:
    path = audit_dir(settings) / ROLLBACKS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def lost_in(settings: Settings, index: int, tree_size: int) -> dict[str, Any] | None:
    """The acknowledged rollback that lost entry `index` of a tree of `tree_size`, if any: the
    rollback kept the first `restored_size` entries of a log that had `remembered_size`."""
    for record in rollbacks(settings):
        if record["restored_size"] <= index and tree_size <= record["remembered_size"]:
            return record
        if not record["consistent"] and tree_size <= record["remembered_size"]:
            return record
    return None
