"""The tree's right edge kept in memory (`SqlAuditLog.follow_commits`), on both databases.

An append reads the log's size under the writers' lock; a log that follows its engine's commits
then takes the edge its process last committed instead of reading it from the stored nodes.
An edge must never outlive a transaction that did not commit: if it did, the next append at
the same size would write nodes of a tree that is not the stored one. Each test below makes
another writer (a second gateway: a log that does not follow this engine) fill the log to
exactly the size of such an edge, then appends one entry that completes a subtree over the
edge's hashes (a stale edge that no merge reads would go unnoticed) and checks the stored tree
entry by entry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
import sqlalchemy as sa

from audit import (
    APPEND_FUNCTION,
    CompactRange,
    Signer,
    leaf_hash,
    open_checkpoint,
    root_from_leaf_hashes,
)
from audit.prepared import prepare
from audit.store import SqlAuditLog
from audit.store_tables import append_if_size
from tests.unit.audit._support import ORIGIN, make_engine, make_event


@pytest.fixture
def ours(signer: Signer, engine: sa.Engine) -> SqlAuditLog:
    log = SqlAuditLog(origin=ORIGIN, signer=signer)
    log.follow_commits(engine)
    return log


@pytest.fixture
def node_reads(ours: SqlAuditLog, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many node lookups `ours` makes (each is one query)."""
    reads: list[int] = []
    original = ours._nodes

    def counted(conn: sa.Connection, ids: object, **kwargs: object) -> object:
        reads.append(1)
        return original(conn, ids, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ours, "_nodes", counted)
    yield reads


def other_writer_appends(engine: sa.Engine, signer: Signer, n: int) -> None:
    other = SqlAuditLog(origin=ORIGIN, signer=signer)  # another replica: not following
    with engine.begin() as conn:
        other.append_many(conn, [make_event(1000 + i) for i in range(n)])


def assert_stored_tree_is_sound(engine: sa.Engine, log: SqlAuditLog) -> None:
    with engine.begin() as conn:
        bodies = log.entries(conn, 0, log.size(conn))
        assert log.root(conn) == root_from_leaf_hashes([leaf_hash(b) for b in bodies])
        assert log.verify(conn).size == len(bodies)  # every stored node recomputed


def test_appends_and_checkpoints_after_a_commit_read_no_nodes(
    engine: sa.Engine, ours: SqlAuditLog, node_reads: list[int]
) -> None:
    with engine.begin() as conn:
        ours.append_many(conn, [make_event(0), make_event(1), make_event(2)])
    first = len(node_reads)
    for n in range(3, 8):
        with engine.begin() as conn:
            ours.append(conn, make_event(n))
            ours.append(conn, make_event(100 + n))  # a second append in the same transaction
        with engine.begin() as conn:
            assert ours.sign_head(conn).size == 2 * n - 1
    assert len(node_reads) == first  # neither the appends nor the checkpoints' roots
    assert_stored_tree_is_sound(engine, ours)


def test_an_append_after_another_writer_loads_the_edge(
    engine: sa.Engine, signer: Signer, ours: SqlAuditLog, node_reads: list[int]
) -> None:
    with engine.begin() as conn:
        ours.append(conn, make_event(0))
    other_writer_appends(engine, signer, 2)
    before = len(node_reads)
    with engine.begin() as conn:
        ours.append(conn, make_event(1))  # completes the subtree of all four
    assert len(node_reads) == before + 1
    assert_stored_tree_is_sound(engine, ours)


def test_an_edge_rolled_back_with_its_connection_is_forgotten(
    engine: sa.Engine, signer: Signer, ours: SqlAuditLog
) -> None:
    with engine.connect() as conn:
        with conn.begin():
            ours.append(conn, make_event(0))
        with conn.begin() as txn:
            ours.append_many(conn, [make_event(1), make_event(2)])  # this connection's edge: 3
            txn.rollback()
        other_writer_appends(engine, signer, 2)  # the log has size 3 again, other entries
        with conn.begin():
            ours.append(conn, make_event(3))  # the same connection: its old edge would match
    assert_stored_tree_is_sound(engine, ours)


def test_an_edge_rolled_back_to_a_savepoint_is_forgotten(
    engine: sa.Engine, signer: Signer, ours: SqlAuditLog
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("on SQLite the transaction keeps the write lock past a savepoint's rollback")
    with engine.begin() as conn:
        ours.append(conn, make_event(0))
    with engine.begin() as conn:
        savepoint = conn.begin_nested()
        ours.append_many(conn, [make_event(1), make_event(2)])  # edge of size 3; the advisory
        savepoint.rollback()  # lock was taken in the savepoint: this releases it
        other_writer_appends(engine, signer, 2)
        ours.append(conn, make_event(3))
    assert_stored_tree_is_sound(engine, ours)


def test_an_edge_whose_commit_failed_is_forgotten(
    engine: sa.Engine, signer: Signer, ours: SqlAuditLog
) -> None:
    """SQLAlchemy announces a commit before the database's COMMIT; a COMMIT that fails (here a
    deferred foreign key, checked only then) must take the announced edge back."""
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql(
            "CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
        ours.append(conn, make_event(0))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":  # outside a transaction, or it does nothing
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
        with pytest.raises(sa.exc.IntegrityError), conn.begin():
            ours.append_many(conn, [make_event(1), make_event(2)])  # edge of size 3
            conn.exec_driver_sql("INSERT INTO child VALUES (1)")  # fails at COMMIT
    other_writer_appends(engine, signer, 2)
    with engine.begin() as conn:
        ours.append(conn, make_event(3))
    assert_stored_tree_is_sound(engine, ours)


def test_a_new_checkpoint_is_one_insert_and_an_old_one_is_read_back(
    engine: sa.Engine, ours: SqlAuditLog
) -> None:
    sent: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "audit_checkpoints" in statement:
            sent.append(statement.split(maxsplit=1)[0])

    with engine.begin() as conn:
        ours.append_many(conn, [make_event(0), make_event(1)])
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        with engine.begin() as conn:
            new = ours.sign_head(conn)
        assert sent == ["INSERT"]  # not looked up first
        with engine.begin() as conn:
            again = ours.sign_head(conn)
        assert sent == ["INSERT", "INSERT", "SELECT"]  # stored already: that one is the answer
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)
    assert again == new


def test_a_checkpoint_after_an_append_in_its_transaction_reads_no_size(
    engine: sa.Engine, signer: Signer, ours: SqlAuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The append took the writers' lock and knows the size: signing in the same transaction
    (a group commit's batch) reads nothing more, and the checkpoint is the stored tree's."""
    import audit.store

    locks: list[int] = []  # each time the writers' lock is taken (and the size read under it)
    lock_and_size = audit.store.lock_and_size
    append_if_size = audit.store.append_if_size

    def counted(conn: sa.Connection, key: int) -> int:
        locks.append(key)
        return lock_and_size(conn, key)

    def counted_append(conn: sa.Connection, *args: Any) -> int:
        locks.append(-1)
        return append_if_size(conn, *args)

    monkeypatch.setattr(audit.store, "lock_and_size", counted)
    monkeypatch.setattr(audit.store, "append_if_size", counted_append)
    other_writer_appends(engine, signer, 3)  # the edge is not known to `ours`: it is loaded
    locks.clear()
    with engine.begin() as conn:
        ours.append_many(conn, [make_event(0), make_event(1)])
        head = ours.sign_head(conn)
    assert len(locks) == 1 and head.size == 5
    with engine.begin() as conn:
        assert ours.root(conn, 5) == open_checkpoint(head.note, [signer.verifier()], ORIGIN).root
    if engine.dialect.name == "postgresql":  # an append rolled back to a savepoint: read again
        with engine.begin() as conn:
            savepoint = conn.begin_nested()
            ours.append(conn, make_event(2))
            savepoint.rollback()
            assert ours.sign_head(conn).size == 5
        assert len(locks) == 3
    assert_stored_tree_is_sound(engine, ours)


# -- PostgreSQL: an append in one round trip (`insitu_audit_append`) ---------------------------


def driver_queries() -> tuple[list[str], Any]:
    """A list, and a context manager that records in it every query psycopg's cursors send
    in this process (the log's own go to the driver directly; nothing else runs meanwhile)."""
    import psycopg

    sent: list[str] = []
    original = psycopg.Cursor.execute

    def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query if isinstance(query, str) else repr(query))
        return original(cursor, query, *args, **kwargs)

    return sent, mock.patch.object(psycopg.Cursor, "execute", execute)


def test_an_append_to_the_known_edge_is_one_call_on_postgres(
    engine: sa.Engine, signer: Signer, ours: SqlAuditLog
) -> None:
    """The edge committed here is bet on: lock, size and insert in one query. When another
    writer appended meanwhile, the call inserts nothing and says so; the lock is held by
    then, and the append goes on from the stored edge."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no functions; its transaction holds the one write lock")
    with engine.begin() as conn:
        ours.append(conn, make_event(0))  # no edge known yet: the lock and size, then insert
    sent, recording = driver_queries()
    with recording, engine.begin() as conn:
        ours.append_many(conn, [make_event(1), make_event(2)])
    assert [q.split("(", 1)[0] for q in sent] == [f"SELECT {APPEND_FUNCTION}"]
    other_writer_appends(engine, signer, 3)  # the bet on size 3 is now wrong: 6
    sent.clear()
    with recording, engine.begin() as conn:
        assert ours.append(conn, make_event(3)).index == 6
    assert sent[0].startswith(f"SELECT {APPEND_FUNCTION}") and len(sent) >= 2  # then inserted
    assert_stored_tree_is_sound(engine, ours)


def test_the_append_function_refuses_rows_computed_for_another_size(engine: sa.Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's function")
    entry = (5, b"\0" * 32, b"{}", "job.accepted", datetime.now(UTC))
    with (
        pytest.raises(sa.exc.DBAPIError, match="rows computed for size 5, not 0"),
        engine.begin() as conn,
    ):
        append_if_size(conn, 0, [], [entry], [])


def test_a_bet_on_an_edge_the_store_does_not_hold_is_caught(
    engine: sa.Engine, signer: Signer, ours: SqlAuditLog
) -> None:
    """Memory holds an edge of the log's very size that is not the stored tree's (announced by
    a transaction whose COMMIT failed, while another writer appended as many entries): the
    function finds its subtrees missing, inserts nothing, and the append goes on from the
    stored nodes."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's function")
    with engine.begin() as conn:
        ours.append_many(conn, [make_event(0), make_event(1)])
    other_writer_appends(engine, signer, 1)  # the log: 3 entries
    phantom = CompactRange()
    for n in range(3):
        phantom.append(leaf_hash(prepare(make_event(500 + n)).body))  # never stored
    ours._edge = phantom  # as a failed COMMIT's announcement would have left it
    with engine.begin() as conn:
        assert ours.append(conn, make_event(3)).index == 3
    assert ours._edge is not None and ours._edge.size == 4  # the stored tree's, once committed
    assert_stored_tree_is_sound(engine, ours)


@pytest.mark.slow
def test_replicas_that_bet_on_their_edges_keep_the_log_gapless(
    engine: sa.Engine, signer: Signer
) -> None:
    """Two replicas (logs following engines of their own) append concurrently, each betting
    on the edge it last committed; many bets lose. The log stays gapless and sound."""
    second = make_engine(engine.url.render_as_string(hide_password=False))
    logs = []
    for each in (engine, second):
        log = SqlAuditLog(origin=ORIGIN, signer=signer)
        log.follow_commits(each)
        logs.append((each, log))
    got: list[int] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def writer(t: int) -> None:
        each, log = logs[t % 2]
        try:
            start.wait()
            for i in range(25):
                with each.begin() as conn:
                    events = [make_event(100 * t + i)] * (1 + i % 2)
                    results = log.append_many(conn, events)
                with lock:
                    got.extend(r.index for r in results)
        except Exception as exc:  # reported below, on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    second.dispose()
    assert errors == []
    assert sorted(got) == list(range(4 * (25 + 12)))
    assert_stored_tree_is_sound(engine, logs[0][1])
