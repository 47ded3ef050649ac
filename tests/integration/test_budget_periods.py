"""Ledger periods (refresh by calendar or by data snapshot), exact units, the (ε, δ) reading."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from gateway.dp import ledger
from gateway.dp.specs import DpBudgetSpec

NOW = datetime(2026, 11, 29, 20, 0, tzinfo=UTC)


def budget(refresh: str) -> DpBudgetSpec:
    return DpBudgetSpec(rho_per_department=Decimal(1), rho_total=Decimal(2), refresh=refresh)


@pytest.mark.parametrize(
    ("refresh", "expected"),
    [
        ("daily", "day:2026-11-29"),
        ("monthly", "month:2026-11"),
        ("yearly", "year:2026"),
        ("never", "all"),
    ],
)
def test_calendar_periods(refresh: str, expected: str) -> None:
    assert ledger.period(budget(refresh), now=NOW, source=None) == expected


def test_a_new_snapshot_of_the_source_starts_a_new_period(tmp_path: Path) -> None:
    source = tmp_path / "data.parquet"
    source.write_bytes(b"one")
    first = ledger.period(budget("snapshot"), now=NOW, source=source)
    assert ledger.period(budget("snapshot"), now=NOW, source=source) == first
    source.write_bytes(b"two, longer")
    os.utime(source, ns=(1, 2))
    assert ledger.period(budget("snapshot"), now=NOW, source=source) != first


def test_costs_round_up_and_caps_round_down_to_exact_units() -> None:
    assert ledger.Cost.of(Fraction(1, 10), Fraction(0)) == ledger.Cost(100_000, 0)
    assert ledger.Cost.of(Fraction(1, 10) + Fraction(1, 10**12), Fraction(1, 10**16)).rho == 100_001
    caps = ledger.Caps.of(
        DpBudgetSpec(
            rho_per_department=Decimal("0.3"),
            rho_total=Decimal("1"),
            delta_per_department=Decimal("1e-6"),
            delta_total=Decimal("1e-5"),
        )
    )
    assert caps == ledger.Caps(300_000, 1_000_000, 10**9, 10**10)
    assert sum([100_000] * 3) == caps.department_rho  # ten debits of 0.1 leave exactly 0


def test_rho_reads_as_epsilon_at_delta() -> None:
    # ε = ρ + 2·sqrt(ρ·ln(1/δ)); ρ = 0.5 at δ = 1e-6: 0.5 + 2·sqrt(0.5·13.8155…) = 5.756…
    assert ledger.epsilon_at(Fraction(1, 2)) == pytest.approx(5.7565, abs=1e-3)
    assert ledger.epsilon_at(Fraction(0)) == 0.0
