"""`dp` templates: the engine aggregates the bounded plan exactly, OpenDP adds the noise.

Every released number comes from an OpenDP measurement built once per template version
(`sandbox.dp_mechanism`). Groups over public keys are the catalogue's value sets (a group
with no rows gets a noisy 0); with private key selection only groups whose noisy count
passes the threshold are released, and the others are listed as withheld when the keys are
public values, never as 0. The ledger reservation is committed by `worker.finish` in the
release's own transaction.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway import timing
from gateway.dp import ledger
from gateway.dp import stats as dp_stats
from gateway.dp.ledger import DELTA_UNIT, RHO_UNIT, Cost, epsilon_at
from gateway.dp.plans import MAX_PUBLIC_KEYS, dp_plan
from gateway.jobs.model import JobStatus
from gateway.jobs.releases.base import Outcome, Run
from gateway.store import db
from sandbox import (
    DpEngine,
    DpPlan,
    DpRun,
    ResultTable,
    compile_dp,
    dp_mechanism,
    no_op_limit,
    snapshot_fingerprint,
    windows_are_no_ops,
)


def _snapshot(path: Path | None) -> tuple[int, int]:
    if path is None:  # a table Spark reads elsewhere: no file version to compare
        return 0, 0
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _charged_to_this_snapshot(run: Run, plan: DpPlan) -> bool:
    """With ``refresh: snapshot`` the reservation was booked to the period of the file as it
    was at admission; a job running on a newer file would spend the new snapshot's data on
    the old period's budget (and the new period's budget on top of it). Refuse it instead."""
    ds = run.datasets[plan.dataset_id]
    if ds.privacy is None or ds.privacy.budget.refresh != "snapshot":
        return True
    with db.reading(run.gw.db) as conn:
        booked = ledger.booked_period(conn, run.job.id)
    now = ledger.period(
        ds.privacy.budget, now=datetime.now(UTC), source=run.sources[plan.dataset_id].path
    )
    return booked == now


def _aggregate(run: Run, plan: DpPlan) -> ResultTable:
    """The plan's exact aggregate. Compiled from the very plan the mechanism was built for
    (same bounds, same fixed point); the per-unit windows, which the sensitivities rest on,
    are left out only where the sandbox verifies, in the process reading the file, that this
    snapshot has a stored statistic making them no-ops (`sandbox.dp.snapshot`)."""
    parameters = tuple(sorted(run.stored.spec.parameters))
    full = compile_dp(plan, parameters)
    params = {**run.values, **plan.constants()}
    engine = run.gw.engine
    if not isinstance(engine, DpEngine):  # e.g. Spark: always the bounded plan
        return engine.run(full, run.sources, params)
    source = run.sources[plan.dataset_id]
    snapshot = snapshot_fingerprint(source, plan.unit)
    known = None if snapshot is None else dp_stats.lookup(run.gw.db, snapshot)
    if known is not None and windows_are_no_ops(plan, known.max_rows):
        no_nulls = known.null_rows == 0
        fast = compile_dp(plan, parameters, bounded=False, units_not_null=no_nulls)
        request = DpRun(plan.dataset_id, plan.unit, full, fast=fast, expected=snapshot)
    elif known is None:  # measure first; the fast plan if what was measured allows it
        fast = compile_dp(plan, parameters, bounded=False)
        limit = no_op_limit(plan)
        request = DpRun(plan.dataset_id, plan.unit, full, fast, measure=True, limit=limit)
    else:
        request = DpRun(plan.dataset_id, plan.unit, full)
    outcome = engine.run_dp(request, run.sources, params)
    if outcome.snapshot is not None and outcome.max_rows is not None:
        assert outcome.null_rows is not None
        dp_stats.record(
            run.gw.db,
            snapshot=outcome.snapshot,
            dataset_id=plan.dataset_id,
            unit=plan.unit,
            stats=dp_stats.UnitStats(outcome.max_rows, outcome.null_rows),
        )
    return outcome.table


def _key_set(run: Run, plan: DpPlan) -> list[tuple[object, ...]] | None:
    """The public key set: the product of the group columns' declared values.

    Only values the owner declared in the catalogue count, never values read from the data: a
    key set taken from the data would tell which values occur without any noise.
    """
    ds = run.datasets[plan.dataset_id]
    declared = {c.name: c.values for c in ds.columns if c.sensitivity == "public"}
    sets = [declared.get(column) for column in plan.group_by]
    if any(values is None for values in sets):
        return None
    size = 1
    for values in sets:
        size *= len(values or ())
    if size > MAX_PUBLIC_KEYS:
        return None
    return [tuple(k) for k in itertools.product(*(values or () for values in sets))]


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def release_dp(run: Run) -> Outcome:
    plan = dp_plan(run.stored.spec, dict(run.datasets))
    mech = dp_mechanism(plan)
    keys = _key_set(run, plan) if plan.group_by else [()]
    if keys is None and not plan.private_keys:
        return Outcome(JobStatus.FAILED, None, "the public key set is not declared or is too large")
    snapshot = _snapshot(run.sources[plan.dataset_id].path)
    if not _charged_to_this_snapshot(run, plan):
        return Outcome(JobStatus.FAILED, None, "the source changed since the job was accepted")
    with timing.stage("sandbox"):
        table = _aggregate(run, plan)
    if _snapshot(run.sources[plan.dataset_id].path) != snapshot:
        return Outcome(JobStatus.FAILED, None, "the source changed while the job ran; retry")
    with timing.stage("disclosure"):
        if plan.private_keys:
            released = mech.release(table, keys=None, candidates=keys)
        else:
            released = mech.release(table, keys=keys)
    cost = Cost.of(released.rho, released.delta)
    width = len(plan.group_by)
    result: dict[str, Any] = {
        "columns": list(released.columns),
        "rows": [list(row) for row in released.rows],
        "intervals": {
            column: [_pair(row_iv[i]) for row_iv in released.intervals]
            for i, column in enumerate(released.columns[width:])
        },
        "withheld": [
            {
                "key": dict(zip(plan.group_by, key, strict=True)),
                "column": None,
                "rule": "key_selection",
                "reason": "the group's noisy count did not pass the key-selection threshold",
            }
            for key in released.withheld
        ],
        "accuracy": released.accuracy,
        "privacy": {
            "rho": str(Decimal(cost.rho) / RHO_UNIT),
            "delta": str(Decimal(cost.delta) / DELTA_UNIT),
            "as_epsilon_delta": {"epsilon": epsilon_at(released.rho), "delta": "1e-06 (+ delta)"},
            "noise": plan.budget.noise.value,
            "bounds": {
                "rows_per_unit": plan.rows_per_unit,
                "groups_per_unit": plan.groups_per_unit,
            },
            "key_selection": (
                {"threshold": mech.built[0].threshold, "missing_groups": "withheld, not zero"}
                if plan.private_keys
                else {"keys": "public (catalogue)"}
            ),
        },
    }
    return Outcome(JobStatus.RELEASED, result, None)
