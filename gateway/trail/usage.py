"""Call counts for the open usage statistics (调用次数), from the first `size` entries of the
audit log: job calls (`job.accepted`, refused: `job.denied` / `job.rejected`) per UTC day ×
requesting department × dataset, and open reads (`open.reads_summary`) per day × caller ×
open dataset. Used by `gateway.opendata.usage`, which pins `size` to a signed checkpoint.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from audit import entries_table

JOB_CALLS = {"job.accepted": "calls", "job.denied": "refused", "job.rejected": "refused"}
OPEN_READS = "open.reads_summary"
Key = tuple[str, str, str, str]  # day, department, dataset, kind


def _events(conn: sa.Connection, size: int) -> Iterator[dict[str, Any]]:
    e = entries_table.c
    after = -1
    types = [*JOB_CALLS, OPEN_READS]
    while True:
        rows = conn.execute(
            sa.select(e.idx, e.body)
            .where(e.event_type.in_(types), e.idx > after, e.idx < size)
            .order_by(e.idx)
            .limit(1000)
        ).all()
        if not rows:
            return
        for row in rows:
            yield json.loads(bytes(row.body))
        after = int(rows[-1].idx)


def count(conn: sa.Connection, size: int) -> list[dict[str, Any]]:
    figures: dict[Key, Counter[str]] = {}
    for event in _events(conn, size):
        details = event["details"]
        if event["type"] == OPEN_READS:
            for c in details.get("counts", []):
                key = (c["day"], c["holder"], c["dataset"], "open")
                outcome = "calls" if c["outcome"] == "served" else "refused"
                figures.setdefault(key, Counter())[outcome] += int(c["calls"])
            continue
        datasets = details.get("datasets") or [details.get("dataset") or "-"]
        for ds in datasets:
            key = (event["time"][:10], event["actor"]["department"], str(ds), "job")
            figures.setdefault(key, Counter())[JOB_CALLS[event["type"]]] += 1
    return [
        {
            "day": day,
            "department": dept,
            "dataset": ds,
            "kind": kind,
            "calls": figures[(day, dept, ds, kind)]["calls"],
            "refused": figures[(day, dept, ds, kind)]["refused"],
            "tree_size": size,
        }
        for day, dept, ds, kind in sorted(figures)
    ]
