"""Measure one snapshot of a dataset's source: profile it in the sandbox, check its rules.

`measure` returns a `Measured` (nothing stored); the callers — registration, a snapshot, a
job finding its file changed — store it with its audit entry, or refuse with `refusal` when
a `must` rule fails (422, naming each failing rule and column, never a value).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.catalogue.documents import DatasetSpec
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.quality import checks as quality_checks
from gateway.quality.checks import Check
from sandbox import DatasetProfile, TableSource


def fingerprint(source: TableSource) -> tuple[str, datetime]:
    """A digest naming this snapshot of the file (path, size, times, inode) and its mtime.
    A catalogue or JDBC table has no file to stat: it is named by what it is, as of now."""
    if source.path is None:
        text = f"{source.format}|{source.table}|{source.connection}"
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest(), datetime.now(UTC)
    st = source.path.stat()
    text = f"{source.path}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
    digest = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return digest, datetime.fromtimestamp(st.st_mtime, UTC)


@dataclass(frozen=True, slots=True)
class Measured:
    id: str
    dataset_id: str
    fingerprint: str
    snapshot_at: datetime
    profile: DatasetProfile
    checks: tuple[Check, ...]
    freshness: dict[str, Any]
    drift: dict[str, Any] | None

    @property
    def refused(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok and c.severity == "must")

    @property
    def alerts(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok and c.severity == "should")

    def row(self, trigger: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset_id": self.dataset_id,
            "fingerprint": self.fingerprint,
            "trigger": trigger,
            "status": "refused" if self.refused else "accepted",
            "snapshot_at": self.snapshot_at,
            "profile": self.profile.encode(),
            "checks": [c.view() for c in self.checks],
            "freshness": self.freshness,
            "drift": self.drift,
        }

    def audit_details(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset_id,
            "profile": self.id,
            "snapshot": self.fingerprint,
            "rows": self.profile.rows,
            "refused": [_named(c) for c in self.refused],
            "alerts": [_named(c) for c in self.alerts],
        }


def _named(check: Check) -> dict[str, Any]:
    return {"rule": check.rule, "columns": list(check.columns), "observed": check.observed}


def measure(
    gw: Gateway, spec: DatasetSpec, source: TableSource, previous: dict[str, Any] | None
) -> Measured:
    digest, snapshot_at = fingerprint(source)
    profile = gw.engine.profile(source, quality_checks.request_for(spec))
    age_hours = max(0.0, (datetime.now(UTC) - snapshot_at).total_seconds() / 3600)
    return Measured(
        id=str(uuid.uuid4()),
        dataset_id=spec.id,
        fingerprint=digest,
        snapshot_at=snapshot_at,
        profile=profile,
        checks=tuple(quality_checks.evaluate(spec, profile, age_hours=age_hours)),
        freshness=quality_checks.freshness(spec, age_hours),
        drift=quality_checks.drift(previous["profile"] if previous else None, profile),
    )


def refusal(measured: Measured, what: str) -> InvalidInput:
    """The 422 for a snapshot failing `must` rules: rule, columns and a count or rate."""
    first = measured.refused[0]
    cols = ", ".join(first.columns) or "the snapshot"
    return InvalidInput(
        f"{what} refused by data quality: must rule {first.rule} fails on {cols}",
        profile=measured.id,
        errors=[
            {
                "rule": c.rule,
                "column": ",".join(c.columns),
                "severity": c.severity,
                "observed": c.observed,
                "limit": c.limit,
            }
            for c in measured.refused
        ],
    )
