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

import functools
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


@functools.cache
def _ensure_statement(dialect: str) -> sa.Insert:
    """A ledger row with nothing booked, unless it exists (built once per dialect)."""
    b = schema.privacy_budgets
    return (
        db.upsert(dialect, b)
        .values(
            department=sa.bindparam("e_department"),
            dataset_id=sa.bindparam("e_dataset"),
            period=sa.bindparam("e_period"),
            rho_cap=sa.bindparam("e_rho_cap"),
            rho_spent=0,
            rho_reserved=0,
            delta_cap=sa.bindparam("e_delta_cap"),
            delta_spent=0,
            delta_reserved=0,
            updated_at=sa.bindparam("e_now"),
        )
        .on_conflict_do_nothing()
    )


def _one_row(prefix: str) -> tuple[sa.ColumnElement[bool], ...]:
    """A ledger row by its key, bound as `<prefix>_department`, `_dataset` and `_period`."""
    b = schema.privacy_budgets
    return (
        b.c.department == sa.bindparam(f"{prefix}_department"),
        b.c.dataset_id == sa.bindparam(f"{prefix}_dataset"),
        b.c.period == sa.bindparam(f"{prefix}_period"),
    )


@functools.cache
def _reserve_statement() -> sa.Update:
    """One row's reservation if its caps (the current ones, stored with it) leave room."""
    b = schema.privacy_budgets
    rho = sa.bindparam("r_rho", type_=b.c.rho_reserved.type)
    delta = sa.bindparam("r_delta", type_=b.c.delta_reserved.type)
    rho_cap = sa.bindparam("r_rho_cap", type_=b.c.rho_cap.type)
    delta_cap = sa.bindparam("r_delta_cap", type_=b.c.delta_cap.type)
    return (
        b.update()
        .where(
            *_one_row("r"),
            b.c.rho_spent + b.c.rho_reserved + rho <= rho_cap,
            b.c.delta_spent + b.c.delta_reserved + delta <= delta_cap,
        )
        .values(
            rho_reserved=b.c.rho_reserved + rho,
            delta_reserved=b.c.delta_reserved + delta,
            rho_cap=rho_cap,
            delta_cap=delta_cap,
            updated_at=sa.bindparam("r_now"),
        )
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
    now = datetime.now(UTC)
    conn.execute(
        _ensure_statement(conn.dialect.name),
        [
            {
                "e_department": dept,
                "e_dataset": dataset_id,
                "e_period": period_,
                "e_rho_cap": rho_cap,
                "e_delta_cap": delta_cap,
                "e_now": now,
            }
            for dept, rho_cap, delta_cap in rows
        ],
    )
    for dept, rho_cap, delta_cap in rows:  # always the global row first: no deadlock
        done = conn.execute(
            _reserve_statement(),
            {
                "r_department": dept,
                "r_dataset": dataset_id,
                "r_period": period_,
                "r_rho": cost.rho,
                "r_delta": cost.delta,
                "r_rho_cap": rho_cap,
                "r_delta_cap": delta_cap,
                "r_now": now,
            },
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


@functools.cache
def _settle_statement() -> sa.Update:
    """A job's reservation settled, if it is still reserved; returns what it reserved."""
    r = schema.budget_reservations
    return (
        r.update()
        .where(r.c.job_id == sa.bindparam("s_job"), r.c.status == "reserved")
        .values(status=sa.bindparam("s_status"), settled_at=sa.bindparam("s_now"))
        .returning(r.c.department, r.c.dataset_id, r.c.period, r.c.rho, r.c.delta)
    )


@functools.cache
def _spend_statement() -> sa.Update:
    """One ledger row's reservation turned into spending (or given back: nothing spent)."""
    b = schema.privacy_budgets
    return (
        b.update()
        .where(*_one_row("p"))
        .values(
            rho_reserved=b.c.rho_reserved - sa.bindparam("p_rho"),
            delta_reserved=b.c.delta_reserved - sa.bindparam("p_delta"),
            rho_spent=b.c.rho_spent + sa.bindparam("p_spend_rho"),
            delta_spent=b.c.delta_spent + sa.bindparam("p_spend_delta"),
            updated_at=sa.bindparam("p_now"),
        )
    )


def settle(conn: sa.Connection, job_id: str, *, released: bool) -> dict[str, Any]:
    """Commit (released) or return (not released) a job's reservation, in the caller's
    transaction — the one that records the release and its audit entry. A job without a
    reservation (not dp) is a no-op; settling twice does nothing."""
    now = datetime.now(UTC)
    status = "committed" if released else "returned"
    row = conn.execute(
        _settle_statement(), {"s_job": job_id, "s_status": status, "s_now": now}
    ).first()
    if row is None:
        return {}
    for dept in (GLOBAL, row.department):  # the global row first, as `reserve`
        conn.execute(
            _spend_statement(),
            {
                "p_department": dept,
                "p_dataset": row.dataset_id,
                "p_period": row.period,
                "p_rho": row.rho,
                "p_delta": row.delta,
                "p_spend_rho": row.rho if released else 0,
                "p_spend_delta": row.delta if released else 0,
                "p_now": now,
            },
        )
    return {
        "privacy": {
            "ledger": status,
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
