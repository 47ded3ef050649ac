"""Hostile review of the ledger's 429: it tells the caller about its own department only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from gateway.dp import ledger
from gateway.dp.specs import DpBudgetSpec
from gateway.errors import BudgetExhausted
from gateway.store import db

CAPS = ledger.Caps.of(DpBudgetSpec(rho_per_department=Decimal("0.3"), rho_total=Decimal("0.5")))
COST = ledger.Cost(rho=100_000, delta=0)  # 0.1


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine(migrated_database_url)
    db.migrate(engine)
    yield engine
    engine.dispose()


def _reserve(engine: sa.Engine, dept: str) -> None:
    with engine.begin() as conn:
        ledger.reserve(
            conn,
            job_id=str(uuid.uuid4()),
            department=dept,
            dataset_id="civil.residents",
            period_="all",
            caps=CAPS,
            cost=COST,
        )


def test_a_global_cap_refusal_reveals_nothing_of_other_departments(store: sa.Engine) -> None:
    """Department a spends 0.3 and b 0.2 of the 0.5 total: c's refusal must not tell c what
    the others spent (the global row's spent/remaining), only c's own untouched budget."""
    for dept, n in (("a", 3), ("b", 2)):
        for _ in range(n):
            _reserve(store, dept)
    with pytest.raises(BudgetExhausted) as refused:
        _reserve(store, "c")
    problem = refused.value.extensions
    assert problem["budget"]["department"] == "c"
    assert problem["budget"]["rho"]["cap"] == "0.3"
    assert problem["budget"]["rho"]["remaining"] == "0.3"
    text = str(refused.value) + repr(problem)
    assert "0.5" not in text and "'*'" not in text
