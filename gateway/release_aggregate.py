"""`aggregate` templates: exact counts per group, released through disclosure control."""

from __future__ import annotations

from gateway.jobs import JobStatus
from gateway.releases import Outcome, Run
from sandbox import DisclosureRules, apply_disclosure


def release_aggregate(run: Run) -> Outcome:
    query = run.compiled()
    table = run.gw.engine.run(query, run.sources, run.values)
    rules = DisclosureRules(
        min_group_size=max(ds.disclosure.min_group_size for ds in run.datasets.values())
    )
    if query.count_column is None:
        return Outcome(JobStatus.FAILED, None, "the template has no count column")
    disclosed = apply_disclosure(
        table, count_column=query.count_column, group_columns=query.group_columns, rules=rules
    )
    result = {
        "columns": list(disclosed.columns),
        "rows": [list(row) for row in disclosed.rows],
        "withheld": [
            {
                "key": dict(cell.key),
                "column": cell.column,
                "rule": cell.rule,
                "reason": cell.reason,
            }
            for cell in disclosed.withheld
        ],
        "disclosure": {"min_group_size": rules.min_group_size},
    }
    status = (
        JobStatus.RELEASED if disclosed.rows or not disclosed.withheld else JobStatus.SUPPRESSED
    )
    return Outcome(status, result, None)
