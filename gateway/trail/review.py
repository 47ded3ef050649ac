"""Review of the audit log: filtered queries and call statistics (调用次数).

Filters map to the log's review terms (`audit.terms`): time, actor (subject), department (the
using department), dataset, template, decision, event type, job, and the responsible parties —
provider (谁提供), manager (谁管理: departments whose owners approved the template) and user
(谁使用: the acting department).

Statistics count job submissions per UTC day × requesting department × dataset × template:
`job.accepted` is an allowed call, `job.denied` / `job.rejected` a refused one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from audit import SqlAuditLog, entries_table, term
from gateway.errors import InvalidInput

FILTERS = {
    "type": "type",
    "subject": "subject",
    "department": "department",
    "user": "department",
    "decision": "decision",
    "template": "template",
    "dataset": "dataset",
    "provider": "provider",
    "manager": "manager",
    "job": "job",
}
CALLS = {"job.accepted": True, "job.denied": False, "job.rejected": False}


def terms_for(filters: Mapping[str, str | None]) -> list[str]:
    """Review terms for the given filters (unknown names or bad decisions are refused)."""
    found = []
    for name, value in filters.items():
        if value is None or value == "":
            continue
        if name not in FILTERS:
            raise InvalidInput(f"unknown filter {name!r}; known: {', '.join(sorted(FILTERS))}")
        if name == "decision" and value not in {"allowed", "denied"}:
            raise InvalidInput("decision is allowed or denied")
        found.append(term(FILTERS[name], value))
    return found


def _call_events(
    conn: sa.Connection, since: datetime | None, until: datetime | None
) -> Iterator[dict[str, Any]]:
    e = entries_table.c
    after = -1
    while True:
        query = sa.select(e.idx, e.body).where(e.event_type.in_(list(CALLS)), e.idx > after)
        if since is not None:
            query = query.where(e.created_at >= since)
        if until is not None:
            query = query.where(e.created_at < until)
        rows = conn.execute(query.order_by(e.idx).limit(1000)).all()
        if not rows:
            return
        for row in rows:
            yield json.loads(bytes(row.body))
        after = int(rows[-1].idx)


def call_stats(
    log: SqlAuditLog,
    conn: sa.Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    department: str | None = None,
    dataset: str | None = None,
    template: str | None = None,
) -> list[dict[str, Any]]:
    """Rows {day, department, dataset, template, allowed, denied}, sorted."""
    del log  # the counts come from the entries themselves
    allowed: Counter[tuple[str, str, str, str]] = Counter()
    denied: Counter[tuple[str, str, str, str]] = Counter()
    for event in _call_events(conn, since, until):
        details = event["details"]
        dept = event["actor"]["department"]
        tmpl = str(details.get("template") or "-")
        datasets = details.get("datasets") or [details.get("dataset") or "-"]
        for ds in datasets:
            key = (event["time"][:10], dept, str(ds), tmpl)
            if (department and dept != department) or (dataset and ds != dataset):
                continue
            if template and tmpl != template:
                continue
            (allowed if CALLS[event["type"]] else denied)[key] += 1
    keys = sorted(set(allowed) | set(denied))
    return [
        {
            "day": day,
            "department": dept,
            "dataset": ds,
            "template": tmpl,
            "allowed": allowed[(day, dept, ds, tmpl)],
            "denied": denied[(day, dept, ds, tmpl)],
        }
        for day, dept, ds, tmpl in keys
    ]
