"""The privacy budget ledger: per (requesting department, dataset, period) and per dataset.

    reserve (job accepted) ──▶ committed (released, in the release transaction)
              └──────────────▶ returned  (failed: nothing was released)

Budgets are integers — ρ (zCDP) in micro-units, δ in femto-units — so ten debits of 0.1
leave exactly 0. A reservation is a conditional ``UPDATE … WHERE spent + reserved + cost <=
cap`` on the department's row and on the dataset's global row (department ``*``), both in
the job's own transaction and always in the same order: under any interleaving, on SQLite
and PostgreSQL, the ledger never grants more than its cap and never goes below zero.
Caps come from the dataset document (its owner's `privacy.budget`); the period from its
`refresh`: a calendar day, month or year, a snapshot of the source file, or never.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.dp.specs import DpBudgetSpec
from gateway.errors import BudgetExhausted
from gateway.store import db, schema

RHO_UNIT = 10**6
DELTA_UNIT = 10**15
GLOBAL = "*"
DISPLAY_DELTA = Fraction(1, 10**6)  # δ at which ρ is also shown as (ε, δ)


@dataclass(frozen=True, slots=True)
class Cost:
    """An exact cost in ledger units (rounded up from the privacy maps)."""

    rho: int
    delta: int

    @classmethod
    def of(cls, rho: Fraction, delta: Fraction) -> Cost:
        return cls(math.ceil(rho * RHO_UNIT), math.ceil(delta * DELTA_UNIT))


@dataclass(frozen=True, slots=True)
class Caps:
    department_rho: int
    total_rho: int
    department_delta: int
    total_delta: int

    @classmethod
    def of(cls, budget: DpBudgetSpec) -> Caps:
        def floor(value: Decimal, unit: int) -> int:
            return math.floor(Fraction(value) * unit)

        return cls(
            floor(budget.rho_per_department, RHO_UNIT),
            floor(budget.rho_total, RHO_UNIT),
            floor(budget.delta_per_department, DELTA_UNIT),
            floor(budget.delta_total, DELTA_UNIT),
        )


def period(budget: DpBudgetSpec, *, now: datetime, source: Path | None) -> str:
    """The ledger period a job falls in (a new period starts with a full budget)."""
    if budget.refresh == "daily":
        return f"day:{now:%Y-%m-%d}"
    if budget.refresh == "monthly":
        return f"month:{now:%Y-%m}"
    if budget.refresh == "yearly":
        return f"year:{now:%Y}"
    if budget.refresh == "snapshot":
        if source is None:
            return "snapshot:unknown"
        stat = source.stat()
        digest = hashlib.sha256(f"{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()
        return f"snapshot:{digest[:16]}"
    return "all"


def epsilon_at(rho: Fraction, delta: Fraction = DISPLAY_DELTA) -> float:
    """ρ-zCDP as (ε, δ)-DP: ε = ρ + 2·sqrt(ρ·ln(1/δ)) (Bun & Steinke 2016, Prop. 1.3)."""
    if rho <= 0:
        return 0.0
    return float(rho) + 2 * math.sqrt(float(rho) * math.log(1 / float(delta)))


def view(row: Any) -> dict[str, Any]:
    """A ledger row for people: exact decimals as strings, plus the (ε, δ) reading."""
    left_rho = Fraction(row.rho_cap - row.rho_spent - row.rho_reserved, RHO_UNIT)
    spent_rho = Fraction(row.rho_spent, RHO_UNIT)
    spent_delta = Fraction(row.delta_spent, DELTA_UNIT)
    return {
        "department": row.department,
        "dataset": row.dataset_id,
        "period": row.period,
        "rho": {
            "cap": _dec(row.rho_cap, RHO_UNIT),
            "spent": _dec(row.rho_spent, RHO_UNIT),
            "reserved": _dec(row.rho_reserved, RHO_UNIT),
            "remaining": _dec(row.rho_cap - row.rho_spent - row.rho_reserved, RHO_UNIT),
        },
        "delta": {
            "cap": _dec(row.delta_cap, DELTA_UNIT),
            "spent": _dec(row.delta_spent, DELTA_UNIT),
            "remaining": _dec(row.delta_cap - row.delta_spent - row.delta_reserved, DELTA_UNIT),
        },
        "as_epsilon_delta": {
            "spent": {
                "epsilon": epsilon_at(spent_rho),
                "delta": str(float(spent_delta + (DISPLAY_DELTA if spent_rho else 0))),
            },
            "remaining_epsilon": epsilon_at(max(left_rho, Fraction(0))),
            "at_delta": str(float(DISPLAY_DELTA)),
        },
    }


def _dec(units: int, per: int) -> str:
    return str(Decimal(units) / Decimal(per))


def _ensure_rows(
    conn: sa.Connection, keys: list[tuple[str, str, str]], caps: list[tuple[int, int]]
) -> None:
    b = schema.privacy_budgets
    now = datetime.now(UTC)
    insert = db.upsert(conn.dialect.name, b)
    for (dept, ds, per), (rho_cap, delta_cap) in zip(keys, caps, strict=True):
        conn.execute(
            insert.values(
                department=dept,
                dataset_id=ds,
                period=per,
                rho_cap=rho_cap,
                rho_spent=0,
                rho_reserved=0,
                delta_cap=delta_cap,
                delta_spent=0,
                delta_reserved=0,
                updated_at=now,
            ).on_conflict_do_nothing()
        )


def reserve(
    conn: sa.Connection,
    *,
    job_id: str,
    department: str,
    dataset_id: str,
    period_: str,
    caps: Caps,
    cost: Cost,
) -> None:
    """Reserve ``cost`` for a job inside the caller's transaction, or raise BudgetExhausted
    (the caller's transaction then rolls back: nothing is reserved)."""
    if department == GLOBAL:
        raise ValueError("'*' is not a department")
    b = schema.privacy_budgets
    rows = [
        (GLOBAL, caps.total_rho, caps.total_delta),
        (department, caps.department_rho, caps.department_delta),
    ]
    _ensure_rows(
        conn,
        [(dept, dataset_id, period_) for dept, _, _ in rows],
        [(r, d) for _, r, d in rows],
    )
    now = datetime.now(UTC)
    for dept, rho_cap, delta_cap in rows:  # always the global row first: no deadlock
        where = (b.c.department == dept) & (b.c.dataset_id == dataset_id) & (b.c.period == period_)
        done = conn.execute(
            b.update()
            .where(
                where,
                b.c.rho_spent + b.c.rho_reserved + cost.rho <= rho_cap,
                b.c.delta_spent + b.c.delta_reserved + cost.delta <= delta_cap,
            )
            .values(
                rho_reserved=b.c.rho_reserved + cost.rho,
                delta_reserved=b.c.delta_reserved + cost.delta,
                rho_cap=rho_cap,
                delta_cap=delta_cap,
                updated_at=now,
            )
        )
        if done.rowcount != 1:
            # The refusal shows the caller's own department row only: the global row's spent
            # and remaining would tell it what the other departments spent.
            own = (
                (b.c.department == department)
                & (b.c.dataset_id == dataset_id)
                & (b.c.period == period_)
            )
            remaining = view(conn.execute(sa.select(b).where(own)).one())
            if dept == GLOBAL:
                why = "the dataset's total budget (all departments) cannot cover this job"
            else:
                why = (
                    f"the budget of department {dept} cannot cover this job (remaining rho "
                    f"{remaining['rho']['remaining']})"
                )
            raise BudgetExhausted(
                f"in {period_}, {why} on {dataset_id} (cost rho {_dec(cost.rho, RHO_UNIT)}); "
                "nothing was run",
                budget=remaining,
                cost={"rho": _dec(cost.rho, RHO_UNIT), "delta": _dec(cost.delta, DELTA_UNIT)},
            )
    conn.execute(
        schema.budget_reservations.insert().values(
            job_id=job_id,
            department=department,
            dataset_id=dataset_id,
            period=period_,
            rho=cost.rho,
            delta=cost.delta,
            status="reserved",
            created_at=now,
        )
    )


def booked_period(conn: sa.Connection, job_id: str) -> str | None:
    """The period a job's reservation was booked to (None: it has none)."""
    r = schema.budget_reservations
    period = conn.execute(sa.select(r.c.period).where(r.c.job_id == job_id)).scalar()
    return None if period is None else str(period)


def settle(conn: sa.Connection, job_id: str, *, released: bool) -> dict[str, Any]:
    """Commit (released) or return (not released) a job's reservation, in the caller's
    transaction — the one that records the release and its audit entry. A job without a
    reservation (not dp) is a no-op; settling twice does nothing."""
    r = schema.budget_reservations
    row = conn.execute(sa.select(r).where(r.c.job_id == job_id, r.c.status == "reserved")).first()
    if row is None:
        return {}
    now = datetime.now(UTC)
    changed = conn.execute(
        r.update()
        .where(r.c.job_id == job_id, r.c.status == "reserved")
        .values(status="committed" if released else "returned", settled_at=now)
    )
    if changed.rowcount != 1:
        return {}
    b = schema.privacy_budgets
    spend_rho = row.rho if released else 0
    spend_delta = row.delta if released else 0
    for dept in (GLOBAL, row.department):
        conn.execute(
            b.update()
            .where(
                b.c.department == dept, b.c.dataset_id == row.dataset_id, b.c.period == row.period
            )
            .values(
                rho_reserved=b.c.rho_reserved - row.rho,
                delta_reserved=b.c.delta_reserved - row.delta,
                rho_spent=b.c.rho_spent + spend_rho,
                delta_spent=b.c.delta_spent + spend_delta,
                updated_at=now,
            )
        )
    return {
        "privacy": {
            "ledger": "committed" if released else "returned",
            "dataset": row.dataset_id,
            "period": row.period,
            "rho": _dec(row.rho, RHO_UNIT),
            "delta": _dec(row.delta, DELTA_UNIT),
        }
    }


def remaining(
    conn: sa.Connection, department: str, dataset_id: str, period_: str, caps: Caps
) -> tuple[int, int]:
    """A department's remaining (ρ, δ) units in a period (its cap when nothing is booked)."""
    b = schema.privacy_budgets
    row = conn.execute(
        sa.select(b).where(
            b.c.department == department, b.c.dataset_id == dataset_id, b.c.period == period_
        )
    ).first()
    if row is None:
        return caps.department_rho, caps.department_delta
    return (
        row.rho_cap - row.rho_spent - row.rho_reserved,
        row.delta_cap - row.delta_spent - row.delta_reserved,
    )


def rows_for(
    conn: sa.Connection, *, departments: set[str] | None, datasets: set[str] | None
) -> list[Any]:
    """Ledger rows of the given departments and/or datasets (None: no restriction)."""
    b = schema.privacy_budgets
    query = sa.select(b).order_by(b.c.dataset_id, b.c.period, b.c.department)
    conds = []
    if departments is not None:
        conds.append(b.c.department.in_(sorted(departments)))
    if datasets is not None:
        conds.append(b.c.dataset_id.in_(sorted(datasets)))
    if conds:
        query = query.where(sa.or_(*conds))
    return list(conn.execute(query).all())
