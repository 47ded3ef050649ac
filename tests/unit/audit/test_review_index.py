"""The review index is built after appends; queries answer the same however far it got."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from audit import Actor, GroupCommitter, decode, terms_of
from audit.store import SqlAuditLog, entries_table, terms_table
from audit.store_review import indexed_size
from gateway.store import db
from tests.unit.audit._support import T0, make_engine, make_event

DEPARTMENTS = ("tax", "market", "civil")


def varied(n: int) -> Any:
    return make_event(
        n,
        actor=Actor(f"user{n % 7}", DEPARTMENTS[n % 3], ("analyst",)),
        allowed=n % 4 != 0,
        details={"datasets": [f"ds{n % 5}"], "template": f"t{n % 2}", "job": f"j{n}"},
    )


FILTERS: list[dict[str, Any]] = [
    {"terms": ["department:tax"]},
    {"terms": ["department:market", "decision:denied"]},
    {"terms": ["dataset:ds3", "template:t1"], "descending": True, "limit": 7},
    {"terms": ["subject:user2"], "after": 40, "limit": 5},
    {"terms": ["decision:allowed"], "after": 150, "descending": True, "limit": 30},
    {"terms": ["type:job.accepted"], "since": T0 + timedelta(seconds=2), "limit": 1000},
    {"terms": ["department:civil"], "until": T0 + timedelta(seconds=1), "descending": True},
    {"terms": ["department:nowhere"]},
    {"terms": [], "after": 10, "limit": 3},
]


def brute_force(log: SqlAuditLog, conn: sa.Connection, **f: Any) -> list[tuple[int, bytes]]:
    """The answer by reading every entry (appended in batches of 50, one second apart)."""
    rows = list(enumerate(log.entries(conn, 0, 10**6)))
    events = {i: decode(b) for i, b in rows}
    created = {i: T0 + timedelta(seconds=i // 50) for i, _ in rows}
    after, limit = f.get("after", -1), f.get("limit", 100)
    keep = [
        (i, b)
        for i, b in rows
        if set(f["terms"]) <= set(terms_of(events[i]))
        and ("since" not in f or created[i] >= f["since"])
        and ("until" not in f or created[i] < f["until"])
    ]
    if f.get("descending"):
        keep = [r for r in reversed(keep) if after < 0 or r[0] < after]
    else:
        keep = [r for r in keep if r[0] > after]
    return keep[:limit]


def test_queries_answer_the_same_however_far_the_index_got(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    clock = iter(T0 + timedelta(seconds=n) for n in range(10**6))
    log = SqlAuditLog(origin=log.origin, signer=log.signer, clock=lambda: next(clock))
    for start in range(0, 200, 50):  # one created_at per batch: 4 distinct times
        with engine.begin() as conn:
            log.append_many(conn, [varied(n) for n in range(start, start + 50)])
    with engine.connect() as conn:
        assert indexed_size(conn) == 0  # appends index nothing
        expected = [brute_force(log, conn, **f) for f in FILTERS]
    for step in (37, 100, 200):  # partly indexed, then completely
        with engine.begin() as conn:
            while indexed_size(conn) < step:
                log.index_terms(conn, min(64, step - indexed_size(conn)))
        with engine.connect() as conn:
            got = [log.query(conn, **f) for f in FILTERS]
        assert got == expected, f"indexed up to {step}"
    assert any(expected) and all(
        len(e) <= f.get("limit", 100) for e, f in zip(expected, FILTERS, strict=True)
    )


def test_the_index_advances_in_order_once_per_entry(engine: sa.Engine, log: SqlAuditLog) -> None:
    with engine.begin() as conn:
        log.append_many(conn, [varied(n) for n in range(10)])
    with engine.begin() as conn:
        assert log.index_terms(conn, 4) == (4, 6)
    with engine.begin() as conn:
        assert log.index_terms(conn, 100) == (6, 0)
        assert log.index_terms(conn, 100) == (0, 0)
        stored = conn.execute(sa.select(sa.func.count()).select_from(terms_table)).scalar()
        assert stored == sum(len(terms_of(varied(n))) for n in range(10))
    with pytest.raises(ValueError):
        log.index_terms(engine.connect(), 0)


def test_an_entry_that_does_not_decode_is_skipped_not_a_roadblock(
    engine: sa.Engine, log: SqlAuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    with engine.begin() as conn:
        log.append_many(conn, [varied(n) for n in range(6)])
        conn.execute(entries_table.update().where(entries_table.c.idx == 2).values(body=b"{"))
    with caplog.at_level(logging.WARNING), engine.begin() as conn:
        assert log.index_terms(conn, 100) == (6, 0)
    assert "entry 2 does not decode" in caplog.text
    with engine.connect() as conn:
        found = [i for i, _ in log.query(conn, terms=["type:job.accepted"])]
    assert found == [0, 1, 3, 4, 5]


def test_the_group_committer_builds_the_index_while_idle(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    committer = GroupCommitter(log, engine.begin)
    for n in range(0, 600, 100):
        committer.append([varied(k) for k in range(n, n + 100)])
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while indexed_size(conn) < 600 and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.05)
        assert indexed_size(conn) == 600
    committer.stop()


def test_the_migration_starts_the_index_at_the_entries_indexed_before_it(
    database_url: str, log: SqlAuditLog
) -> None:
    engine = make_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0007")
    with engine.begin() as conn:  # what the earlier code wrote: entries and their terms at once
        log.append_many(conn, [varied(n) for n in range(5)])
        rows = [{"term": t, "idx": n} for n in range(5) for t in terms_of(varied(n))]
        conn.execute(terms_table.insert(), rows)
        if engine.dialect.name == "sqlite":  # and times in the driver's text form
            for n in range(5):
                old = f"2026-11-22 06:36:0{n}{'.5' if n == 4 else ''}+00:00"
                conn.execute(
                    sa.text("UPDATE audit_entries SET created_at = :t WHERE idx = :n"),
                    {"t": old, "n": n},
                )
        else:
            for n in range(5):
                conn.execute(
                    entries_table.update()
                    .where(entries_table.c.idx == n)
                    .values(created_at=T0 + timedelta(seconds=n))
                )
    db.migrate(engine)
    with engine.begin() as conn:
        assert indexed_size(conn) == 5
        assert log.index_terms(conn, 10) == (0, 0)  # nothing indexed twice (no key clash)
        assert [i for i, _ in log.query(conn, terms=["department:tax"])] == [0, 3]
        since = T0 + timedelta(seconds=3)
        assert [i for i, _ in log.query(conn, since=since)] == [3, 4]
        assert [i for i, _ in log.query(conn, until=since)] == [0, 1, 2]
    engine.dispose()


def test_entries_appended_in_callers_transactions_are_indexed_after_a_nudge(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    committer = GroupCommitter(log, engine.begin)
    committer.append([varied(0)])
    with engine.connect() as conn:  # the writer catches up, then waits without a timeout
        deadline = time.monotonic() + 30
        while indexed_size(conn) < 1 and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.05)
    with engine.begin() as conn:  # as AuditTrail.record does, in a job's own transaction
        log.append_many(conn, [varied(n) for n in range(1, 40)])
    committer.nudge()  # as the gateway does when a job finishes
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while indexed_size(conn) < 40 and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.05)
        assert indexed_size(conn) == 40
    committer.stop()
