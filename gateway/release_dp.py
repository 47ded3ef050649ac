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

import sqlalchemy as sa

from gateway import catalogue, db, ledger, schema
from gateway.dp_templates import dp_plan
from gateway.jobs import JobStatus
from gateway.ledger import DELTA_UNIT, RHO_UNIT, Cost, epsilon_at
from gateway.releases import Outcome, Run
from sandbox import DpPlan, compile_dp, dp_mechanism

MAX_KEYS = 10_000


def _snapshot(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


def _charged_to_this_snapshot(run: Run, plan: DpPlan) -> bool:
    """With ``refresh: snapshot`` the reservation was booked to the period of the file as it
    was at admission; a job running on a newer file would spend the new snapshot's data on
    the old period's budget (and the new period's budget on top of it). Refuse it instead."""
    ds = run.datasets[plan.dataset_id]
    if ds.privacy is None or ds.privacy.budget.refresh != "snapshot":
        return True
    r = schema.budget_reservations
    with db.reading(run.gw.db) as conn:
        booked = conn.execute(sa.select(r.c.period).where(r.c.job_id == run.job.id)).scalar()
    now = ledger.period(
        ds.privacy.budget, now=datetime.now(UTC), source=run.sources[plan.dataset_id].path
    )
    return booked == now


def _key_set(run: Run, plan: DpPlan) -> list[tuple[object, ...]] | None:
    """The public key set: the product of the group columns' public value sets."""
    ds = run.datasets[plan.dataset_id]
    public = {c.name for c in ds.columns if c.sensitivity == "public"}
    if not set(plan.group_by) <= public:
        return None
    source = catalogue.table_source(run.gw, ds)
    sets = [run.gw.value_sets.get(source, column) for column in plan.group_by]
    size = 1
    for values in sets:
        size *= len(values)
    if size > MAX_KEYS:
        return None
    return [tuple(k) for k in itertools.product(*sets)]


def _pair(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


def release_dp(run: Run) -> Outcome:
    plan = dp_plan(run.stored.spec, dict(run.datasets))
    mech = dp_mechanism(plan)
    keys = _key_set(run, plan) if plan.group_by else [()]
    if keys is None and not plan.private_keys:
        return Outcome(JobStatus.FAILED, None, "the public key set is too large to release")
    # Always the bounded plan: the per-unit windows are what the sensitivities rest on. (A
    # "fast path" that skipped them when a cached profile of the file showed no unit over the
    # bounds was removed: a file rewritten with the same size and mtime ran unbounded.)
    # Compiled from the very plan the mechanism was built for (same bounds, same fixed point).
    query = compile_dp(plan, tuple(sorted(run.stored.spec.parameters)))
    snapshot = _snapshot(run.sources[plan.dataset_id].path)
    if not _charged_to_this_snapshot(run, plan):
        return Outcome(JobStatus.FAILED, None, "the source changed since the job was accepted")
    table = run.gw.engine.run(query, run.sources, {**run.values, **plan.constants()})
    if _snapshot(run.sources[plan.dataset_id].path) != snapshot:
        return Outcome(JobStatus.FAILED, None, "the source changed while the job ran; retry")
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
