"""The ledger under concurrency, on SQLite and PostgreSQL: never more than the cap."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.dp import ledger
from gateway.dp.specs import DpBudgetSpec
from gateway.errors import BudgetExhausted
from gateway.store import db, schema

CAPS = ledger.Caps.of(DpBudgetSpec(rho_per_department=Decimal("1.0"), rho_total=Decimal("1.0")))
COST = ledger.Cost(rho=100_000, delta=0)  # 0.1


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine(migrated_database_url)
    db.migrate(engine)
    yield engine
    engine.dispose()


def reserve(engine: sa.Engine, dept: str = "stats", cost: ledger.Cost = COST) -> str | None:
    job = str(uuid.uuid4())
    try:
        with engine.begin() as conn:
            ledger.reserve(
                conn,
                job_id=job,
                department=dept,
                dataset_id="civil.residents",
                period_="month:2026-11",
                caps=CAPS,
                cost=cost,
            )
    except BudgetExhausted:
        return None
    return job


def rows(engine: sa.Engine) -> dict[str, sa.Row[object]]:
    with engine.connect() as conn:
        return {r.department: r for r in conn.execute(sa.select(schema.privacy_budgets))}


def test_sixty_parallel_jobs_of_a_tenth_against_a_cap_of_one_release_exactly_ten(
    store: sa.Engine,
) -> None:
    granted: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(60)

    def one() -> None:
        start.wait()
        job = reserve(store)
        if job is not None:
            with store.begin() as conn:  # the worker's release transaction
                ledger.settle(conn, job, released=True)
            with lock:
                granted.append(job)

    threads = [threading.Thread(target=one) for _ in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 10
    for row in rows(store).values():
        assert row.rho_spent == 1_000_000
        assert row.rho_reserved == 0
        assert row.rho_cap - row.rho_spent - row.rho_reserved == 0


def test_departments_cannot_pool_budgets_past_the_global_cap(store: sa.Engine) -> None:
    global_caps = ledger.Caps.of(
        DpBudgetSpec(rho_per_department=Decimal("0.3"), rho_total=Decimal("0.5"))
    )
    granted = 0
    for dept in ("a", "b", "c"):
        for _ in range(3):
            job = str(uuid.uuid4())
            try:
                with store.begin() as conn:
                    ledger.reserve(
                        conn,
                        job_id=job,
                        department=dept,
                        dataset_id="civil.residents",
                        period_="all",
                        caps=global_caps,
                        cost=COST,
                    )
                granted += 1
            except BudgetExhausted as exc:
                assert exc.status == 429
    assert granted == 5


def test_a_failed_job_gives_its_reservation_back(store: sa.Engine) -> None:
    job = reserve(store)
    assert job is not None
    with store.begin() as conn:
        assert ledger.settle(conn, job, released=False)["privacy"]["ledger"] == "returned"
        assert ledger.settle(conn, job, released=True) == {}  # settled once only
    row = rows(store)["stats"]
    assert (row.rho_spent, row.rho_reserved) == (0, 0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400_000), st.booleans()), max_size=20))
@pytest.mark.slow
def test_ledger_never_goes_below_zero_nor_past_the_cap(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, bool]]
) -> None:
    path = tmp_path_factory.mktemp("ledger") / "l.db"
    engine = db.create_engine(f"sqlite:///{path}")
    db.migrate(engine)
    for rho, released in steps:
        job = reserve(engine, cost=ledger.Cost(rho=rho, delta=0))
        if job is not None:
            with engine.begin() as conn:
                ledger.settle(conn, job, released=released)
        for row in rows(engine).values():
            assert 0 <= row.rho_spent <= row.rho_cap
            assert row.rho_reserved == 0
    engine.dispose()
