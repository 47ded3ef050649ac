"""A comparison (a `list` template with `findings:`) turns its rows into routed findings.

The rows never go to the requester as such: each becomes a finding for the provider of
`route_to`, and the requester's result is the count per type, district and state — with the
keys only when the requesting department provides one of the template's datasets holding
the key column (its own data holds them).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from gateway.findings.spec import LABELS, FindingsSpec
from gateway.jobs.model import JobStatus
from gateway.jobs.releases.base import Outcome, Run
from sandbox import ResultTable


def release_comparison(run: Run, table: ResultTable) -> Outcome:
    spec = run.stored.spec.findings
    assert spec is not None
    columns = [c.lower() for c in table.columns]
    if spec.key not in columns or (spec.district and spec.district not in columns):
        return Outcome(JobStatus.FAILED, None, "the comparison's key column is not in its output")
    key_at = columns.index(spec.key)
    district_at = columns.index(spec.district) if spec.district else None
    department = run.datasets[spec.route_to].provider
    findings = tuple(
        {
            "key": str(row[key_at]),
            "district": None if district_at is None else _text(row[district_at]),
            "type": spec.type,
            "department": department,
            "fields": list(spec.fields),
        }
        for row in table.rows
        if row[key_at] is not None
    )
    counts = Counter((f["type"], f["district"] or "-") for f in findings)
    result: dict[str, Any] = {
        "columns": ["finding", "district", "state", "findings"],
        "rows": [[t, d, "open", n] for (t, d), n in sorted(counts.items())],
        "withheld": [],
        "comparison": {
            "type": spec.type,
            "label": LABELS[spec.type],
            "routed_to": department,
            "fields": list(spec.fields),
            "findings": len(findings),
        },
    }
    if holds_keys(run, spec):
        result["keys"] = sorted({f["key"] for f in findings})
    return Outcome(JobStatus.RELEASED, result, None, findings=findings)


def holds_keys(run: Run, spec: FindingsSpec) -> bool:
    """Whether the requesting department provides a dataset of the template with the key."""
    department = run.job.department
    return any(
        ds.provider == department and any(c.name == spec.key for c in ds.columns)
        for ds in run.datasets.values()
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)[:200]
