"""`list` templates: rows of non-personal columns (e.g. enterprise codes a comparison found).

The compiler admits only plain columns their owners marked `personal: false` and that are not
sensitive; the submission admitted the job only with every provider owner's approval and a
policy that allows lists on each dataset. The rows leave as they are, up to the row limit.
"""

from __future__ import annotations

from gateway.findings.release import release_comparison
from gateway.jobs.model import JobStatus
from gateway.jobs.releases.base import Outcome, Run
from sandbox import TemplateKind


def release_list(run: Run) -> Outcome:
    query = run.compiled()
    if query.kind is not TemplateKind.LIST:
        return Outcome(JobStatus.FAILED, None, "the template is not a list")
    table = run.gw.engine.run(query, run.sources, run.values)
    if run.stored.spec.findings is not None:  # a comparison: rows become routed findings
        return release_comparison(run, table)
    result = {
        "columns": list(table.columns),
        "rows": [list(row) for row in table.rows],
        "withheld": [],
    }
    return Outcome(JobStatus.RELEASED, result, None)
