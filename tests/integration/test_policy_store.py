"""Policy versions in the store (SQLite and PostgreSQL): compare-and-set writes and the live
engine each worker refreshes from them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import db, policy_store
from gateway.errors import Conflict, Unavailable
from policies import Rule, default_rules

EXTRA = Rule("auditor", "*", "budget", "read")


@pytest.fixture
def store(database_url: str) -> Iterator[sa.Engine]:
    engine = db.create_engine(database_url)
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


def test_an_empty_store_is_refused(database_url: str) -> None:
    engine = db.create_engine(database_url)
    db.migrate(engine)
    try:
        with pytest.raises(Unavailable):
            policy_store.LivePolicy(engine)
    finally:
        engine.dispose()
