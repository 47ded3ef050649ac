"""The privacy budget ledger on a real SQLite store: reserve, commit, return; ρ and δ caps per
department and per dataset; never past a cap under concurrent reservations."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.dp import ledger
from gateway.dp.specs import DpBudgetSpec
from gateway.errors import BudgetExhausted
from gateway.store import db, schema

DATASET = "civil.residents"
PERIOD = "month:2026-11"
CAPS = ledger.Caps.of(
    DpBudgetSpec(
        rho_per_department=Decimal("1.0"),
        rho_total=Decimal("1.5"),
        delta_per_department=Decimal("1e-6"),
        delta_total=Decimal("1.5e-6"),
    )
)
TENTH = ledger.Cost.of(rho=Fraction(1, 10), delta=Fraction(0))


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per module; each test gets its own copy."""
    path = tmp_path_factory.mktemp("ledger") / "template.db"
    engine = db.create_engine(f"sqlite:///{path}")
    db.migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def store(migrated: Path, tmp_path: Path) -> Iterator[sa.Engine]:
    path = tmp_path / "ledger.db"
    path.write_bytes(migrated.read_bytes())
    engine = db.create_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def reserve(
    store: sa.Engine, cost: ledger.Cost, dept: str = "stats", dataset: str = DATASET
) -> str | None:
    job = str(uuid.uuid4())
    try:
        with store.begin() as conn:
            ledger.reserve(
                conn,
                job_id=job,
                department=dept,
                dataset_id=dataset,
                period_=PERIOD,
                caps=CAPS,
                cost=cost,
            )
    except BudgetExhausted:
        return None
    return job


def settle(store: sa.Engine, job: str, *, released: bool) -> dict[str, object]:
    with store.begin() as conn:
        return ledger.settle(conn, job, released=released)


def row(store: sa.Engine, dept: str = "stats") -> sa.Row[object]:
    b = schema.privacy_budgets
    with store.connect() as conn:
        return conn.execute(sa.select(b).where(b.c.department == dept)).one()


def test_units_are_exact_and_caps_round_down_costs_up() -> None:
    caps = ledger.Caps(1_000_000, 1_500_000, 10**9, 15 * 10**8)
    assert caps == CAPS
    tenth = ledger.Cost(100_000, 0)
    assert tenth == TENTH
    third = ledger.Cost.of(rho=Fraction(1, 3), delta=Fraction(1, 3 * 10**15))
    assert third == ledger.Cost(333_334, 1)  # never under-charged


def test_a_released_job_spends_its_reservation(store: sa.Engine) -> None:
    job = reserve(store, TENTH)
    assert job is not None
    assert (row(store).rho_reserved, row(store).rho_spent) == (100_000, 0)
    receipt = settle(store, job, released=True)
    assert receipt["privacy"] == {
        "ledger": "committed",
        "dataset": DATASET,
        "period": PERIOD,
        "rho": "0.1",
        "delta": "0",
    }
    for dept in ("stats", ledger.GLOBAL):
        assert (row(store, dept).rho_reserved, row(store, dept).rho_spent) == (0, 100_000)


def test_a_failed_job_gives_its_reservation_back_once(store: sa.Engine) -> None:
    job = reserve(store, ledger.Cost(rho=400_000, delta=4 * 10**8))
    assert job is not None
    assert settle(store, job, released=False)["privacy"]["ledger"] == "returned"  # type: ignore[index]
    assert settle(store, job, released=True) == {}  # settled once only
    for dept in ("stats", ledger.GLOBAL):
        r = row(store, dept)
        assert (r.rho_spent, r.rho_reserved, r.delta_spent, r.delta_reserved) == (0, 0, 0, 0)


def test_rho_cap_of_the_department_is_never_exceeded(store: sa.Engine) -> None:
    granted = [reserve(store, TENTH) for _ in range(12)]
    assert sum(job is not None for job in granted) == 10  # 10 x 0.1 = the cap of 1.0
    assert granted[10] is None and granted[11] is None
    r = row(store)
    assert r.rho_reserved == r.rho_cap == 1_000_000


def test_rho_refusal_says_what_remains_of_the_own_department_only(store: sa.Engine) -> None:
    assert reserve(store, ledger.Cost(rho=900_000, delta=0)) is not None
    with store.begin() as conn, pytest.raises(BudgetExhausted) as refused:
        ledger.reserve(
            conn,
            job_id="too-much",
            department="stats",
            dataset_id=DATASET,
            period_=PERIOD,
            caps=CAPS,
            cost=ledger.Cost(rho=200_000, delta=0),
        )
    assert refused.value.status == 429
    assert refused.value.extensions["budget"]["department"] == "stats"
    assert refused.value.extensions["budget"]["rho"]["remaining"] == "0.1"


def test_delta_cap_of_the_department_is_never_exceeded(store: sa.Engine) -> None:
    """ρ is plentiful here: only δ (1e-6 per department) stops the third job."""
    cost = ledger.Cost(rho=1, delta=4 * 10**8)  # δ = 4e-7
    assert reserve(store, cost) is not None
    assert reserve(store, cost) is not None
    assert reserve(store, cost) is None  # 1.2e-6 > 1e-6
    assert row(store).delta_reserved == 8 * 10**8
    assert reserve(store, ledger.Cost(rho=1, delta=2 * 10**8)) is not None  # exactly the cap
    assert reserve(store, ledger.Cost(rho=1, delta=1)) is None


def test_delta_counts_what_was_spent_not_only_what_is_reserved(store: sa.Engine) -> None:
    job = reserve(store, ledger.Cost(rho=1, delta=10**9))
    assert job is not None
    settle(store, job, released=True)
    assert row(store).delta_spent == 10**9
    assert reserve(store, ledger.Cost(rho=1, delta=1)) is None


def test_a_dataset_without_delta_refuses_any_delta(store: sa.Engine) -> None:
    caps = ledger.Caps.of(DpBudgetSpec(rho_per_department=Decimal(1), rho_total=Decimal(1)))
    with store.begin() as conn, pytest.raises(BudgetExhausted):
        ledger.reserve(
            conn,
            job_id="needs-delta",
            department="stats",
            dataset_id="civil.other",
            period_=PERIOD,
            caps=caps,
            cost=ledger.Cost(rho=1, delta=1),
        )


def test_departments_cannot_pool_past_the_datasets_total(store: sa.Engine) -> None:
    """Each department may spend 1.0, all of them together 1.5; δ likewise 1e-6 and 1.5e-6."""
    half = ledger.Cost(rho=500_000, delta=0)
    assert [reserve(store, half, dept) is not None for dept in ("a", "a", "b", "c")] == [
        True,
        True,
        True,
        False,
    ]
    assert row(store, ledger.GLOBAL).rho_reserved == 1_500_000
    delta = ledger.Cost(rho=1, delta=10**9)  # a department's whole δ
    jobs = [reserve(store, delta, dept, "civil.other") for dept in ("d", "e")]
    assert jobs[0] is not None and jobs[1] is None  # 2e-6 > the total 1.5e-6


def test_the_global_row_is_refused_as_a_department(store: sa.Engine) -> None:
    with store.begin() as conn, pytest.raises(ValueError, match="not a department"):
        ledger.reserve(
            conn,
            job_id="x",
            department=ledger.GLOBAL,
            dataset_id=DATASET,
            period_=PERIOD,
            caps=CAPS,
            cost=TENTH,
        )


def test_a_refused_reservation_leaves_nothing_behind(store: sa.Engine) -> None:
    assert reserve(store, ledger.Cost(rho=2_000_000, delta=0)) is None
    with store.connect() as conn:
        assert conn.execute(sa.select(schema.budget_reservations)).all() == []


def test_concurrent_reservations_on_sqlite_never_pass_the_cap(store: sa.Engine) -> None:
    granted: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def one() -> None:
        start.wait()
        job = reserve(store, ledger.Cost(rho=100_000, delta=10**8))
        if job is not None:
            settle(store, job, released=True)
            with lock:
                granted.append(job)

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 10
    r = row(store)
    assert (r.rho_spent, r.rho_reserved) == (1_000_000, 0)
    assert (r.delta_spent, r.delta_reserved) == (10**9, 0)
