"""Policy versions in the store (SQLite and PostgreSQL): compare-and-set writes and the live
engine each worker refreshes from them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway.errors import Conflict, Unavailable
from gateway.store import db
from gateway.store import policy_versions as policy_store
from policies import PolicyEngine, Rule, default_rules

EXTRA = Rule("auditor", "*", "budget", "read")


@pytest.fixture
def store(migrated_database_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine(migrated_database_url)
    db.migrate(engine)
    with engine.begin() as conn:
        policy_store.save_version(conn, default_rules(), created_by="init", note="default")
    yield engine
    engine.dispose()


def test_a_write_on_an_older_base_is_refused_and_writes_nothing(store: sa.Engine) -> None:
    with store.begin() as conn:
        assert (
            policy_store.save_version(
                conn, [*default_rules(), EXTRA], created_by="a", note="", base_version=1
            )
            == 2
        )
    with pytest.raises(Conflict), store.begin() as conn:
        policy_store.save_version(conn, default_rules(), created_by="b", note="", base_version=1)
    with store.connect() as conn:
        assert policy_store.newest_version(conn) == 2
        assert EXTRA in policy_store.load_version(conn, 2).rules


def test_a_version_records_where_it_came_from(store: sa.Engine) -> None:
    with store.begin() as conn:
        policy_store.save_version(
            conn,
            [EXTRA],
            created_by="officer-a",
            note="n",
            base_version=1,
            proposal_id="p-1",
            approved_by="officer-b",
        )
    with store.connect() as conn:
        stored = policy_store.load_version(conn, 2)
    assert (stored.base_version, stored.proposal_id, stored.approved_by) == (
        1,
        "p-1",
        "officer-b",
    )
    assert stored.rules == [EXTRA]


def test_the_live_engine_follows_the_store_within_the_refresh_interval(store: sa.Engine) -> None:
    live = policy_store.LivePolicy(store, refresh_s=0.3)
    assert live.current().version == 1
    with store.begin() as conn:
        policy_store.save_version(conn, [EXTRA], created_by="a", note="", base_version=1)
    time.sleep(0.35)
    engine = live.current()
    assert engine.version == 2 and engine.rules() == (EXTRA,)


def test_invalidate_makes_a_change_live_at_once_on_the_writing_worker(store: sa.Engine) -> None:
    live = policy_store.LivePolicy(store, refresh_s=2.0)
    with store.begin() as conn:
        policy_store.save_version(conn, [EXTRA], created_by="a", note="", base_version=1)
    live.invalidate()
    assert live.current().version == 2


def test_no_decision_uses_the_older_version_while_the_newer_one_is_built(
    store: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building an engine takes seconds at 100,000 rules: meanwhile, a caller that arrives
    after the newer version was seen must wait for it, not decide under the revoked policy."""
    live = policy_store.LivePolicy(store, refresh_s=0.2)
    with store.begin() as conn:
        policy_store.save_version(conn, [EXTRA], created_by="a", note="", base_version=1)
    building, release = threading.Event(), threading.Event()
    real_load = policy_store.load_engine

    def slow_load(conn: sa.Connection, version: int) -> PolicyEngine:
        building.set()
        release.wait(10)  # the real build, made to take a while
        return real_load(conn, version)

    monkeypatch.setattr(policy_store, "load_engine", slow_load)
    time.sleep(0.25)
    builder = threading.Thread(target=live.current)
    seen: list[int] = []
    other = threading.Thread(target=lambda: seen.append(live.current().version))
    builder.start()
    try:
        assert building.wait(10)
        other.start()
        other.join(0.3)
        waited = list(seen)
    finally:
        release.set()
        builder.join(10)
        if other.ident is not None:
            other.join(10)
    assert waited == []  # it waited for version 2 instead of deciding with version 1
    assert seen == [2]


def test_a_failed_build_is_retried_by_the_next_caller_not_skipped(
    store: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = policy_store.LivePolicy(store, refresh_s=0.2)
    with store.begin() as conn:
        policy_store.save_version(conn, [EXTRA], created_by="a", note="", base_version=1)
    real_load = policy_store.load_engine
    failures = [RuntimeError("the store went away mid-read")]

    def flaky_load(conn: sa.Connection, version: int) -> PolicyEngine:
        if failures:
            raise failures.pop()
        return real_load(conn, version)

    monkeypatch.setattr(policy_store, "load_engine", flaky_load)
    time.sleep(0.25)
    with pytest.raises(RuntimeError):
        live.current()
    assert live.current().version == 2  # retried at once, never the older engine


def test_an_empty_store_is_refused(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.migrate(engine)
    try:
        with pytest.raises(Unavailable):
            policy_store.LivePolicy(engine)
    finally:
        engine.dispose()
