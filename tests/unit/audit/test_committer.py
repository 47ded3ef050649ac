"""Group commit on SQLite and PostgreSQL: durable indexes, shared transactions, fail closed."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from audit import (
    GroupCommitter,
    StoreError,
    VerificationError,
    leaf_hash,
    open_checkpoint,
    verify_receipt,
)
from audit.store import SqlAuditLog, metadata
from tests.unit.audit._support import ORIGIN, make_engine, make_event


def breakable_begin(
    engine: sa.Engine, broken: dict[str, bool]
) -> Callable[[], AbstractContextManager[Any]]:
    """`engine.begin`, except that the commit fails (like a full disk) while `broken["on"]`."""

    @contextmanager
    def begin() -> Iterator[Any]:
        with engine.begin() as conn:
            yield conn
            if broken["on"]:
                raise sa.exc.OperationalError("COMMIT", {}, Exception("disk full"))

    return begin


def test_concurrent_callers_share_transactions_and_get_gapless_indexes(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    committer = GroupCommitter(log, engine.begin)
    got: list[int] = []
    lock = threading.Lock()

    def caller(worker: int) -> None:
        for k in range(15):
            indexes = committer.append([make_event(worker * 100 + k)]).indexes
            with lock:
                got.extend(indexes)

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    committer.stop()
    assert sorted(got) == list(range(180))
    assert committer.batches < 180  # shared commits
    with engine.begin() as conn:
        log.checkpoint(conn)
        assert log.verify(conn).size == 180


def test_a_multi_event_append_is_contiguous_and_can_ask_for_a_covering_checkpoint(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    committer = GroupCommitter(log, engine.begin)
    first = committer.append([make_event(i) for i in range(5)])
    assert first.indexes == (0, 1, 2, 3, 4) and first.checkpoint is None
    covered = committer.append([make_event(5)], covering=6)
    assert covered.checkpoint is not None and covered.checkpoint_size == 6
    assert open_checkpoint(covered.checkpoint, [log.verifier], ORIGIN).size == 6
    again = committer.checkpoint(3)  # already covered: no new signature
    assert again.checkpoint == covered.checkpoint
    with pytest.raises(StoreError):
        committer.checkpoint(100)
    committer.stop()


def test_nudge_signs_a_checkpoint_without_waiting(engine: sa.Engine, log: SqlAuditLog) -> None:
    committer = GroupCommitter(log, engine.begin)
    committer.append([make_event(i) for i in range(3)])
    committer.nudge()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            head = log.latest_head(conn)
        if head is not None and head.size == 3:
            break
        time.sleep(0.02)
    else:
        pytest.fail("no checkpoint after a nudge")
    committer.stop()


def test_a_nudge_and_the_append_after_it_share_one_transaction(
    engine: sa.Engine, log: SqlAuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release nudges; the read of its result follows: one transaction signs both."""
    import audit.committer

    monkeypatch.setattr(audit.committer, "NUDGE_WAIT_S", 30.0)  # an append surely comes first
    committer = GroupCommitter(log, engine.begin)
    committer.append([make_event(i) for i in range(3)])
    before = committer.batches
    committer.nudge()
    read = committer.append([make_event(3)], covering=3)
    assert committer.batches == before + 1
    assert read.indexes == (3,) and read.checkpoint_size == 4
    with engine.connect() as conn:
        head = log.latest_head(conn)
    assert head is not None and head.size == 4 and head.note == read.checkpoint
    started = time.monotonic()
    committer.nudge()  # alone, and then stopped: the wait ends with the stop
    committer.stop()
    assert time.monotonic() - started < 25


def test_a_failed_commit_fails_every_caller_and_records_nothing(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    broken = {"on": True}
    committer = GroupCommitter(log, breakable_begin(engine, broken))
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            committer.append([make_event(n)])
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 8
    with engine.connect() as conn:
        assert log.size(conn) == 0
    broken["on"] = False
    assert committer.append([make_event(9)]).indexes == (0,)
    committer.stop()


def test_a_stopped_committer_restarts_on_the_next_append(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    committer = GroupCommitter(log, engine.begin)
    committer.append([make_event(0)])
    committer.stop()
    assert committer.append([make_event(1)]).indexes == (1,)
    committer.stop()


def test_the_writer_reloads_the_tree_edge_after_another_writer_or_a_failed_batch(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    """The committer keeps the tree's right edge between batches; it must never reuse an edge
    that is not the log's: after another writer appended, or after its own batch rolled back
    (even when another writer then brings the log to the size the failed batch would have)."""
    broken = {"on": False}
    committer = GroupCommitter(log, breakable_begin(engine, broken))
    assert committer.append([make_event(0), make_event(1)]).indexes == (0, 1)
    with engine.begin() as conn:  # another writer (a replica) appends in between
        log.append_many(conn, [make_event(2)])
    assert committer.append([make_event(3)]).indexes == (3,)
    broken["on"] = True
    with pytest.raises(StoreError):
        committer.append([make_event(4), make_event(5)])
    broken["on"] = False
    with engine.begin() as conn:  # same size the failed batch would have reached, other events
        log.append_many(conn, [make_event(40, allowed=False), make_event(50, allowed=False)])
    # Two more complete the subtree over entries 4..7, which a stale edge would get wrong.
    assert committer.append([make_event(6), make_event(7)]).indexes == (6, 7)
    committer.stop()
    with engine.begin() as conn:
        log.checkpoint(conn)
        assert log.verify(conn).size == 8


def test_prepared_events_come_only_from_prepare() -> None:
    from audit.prepared import PreparedEvent, prepare

    ready = prepare(make_event(0))
    assert prepare(ready) is ready
    with pytest.raises(TypeError):
        PreparedEvent(ready.type, b"{}", ready.leaf_hash, (), object())


@pytest.mark.slow
@pytest.mark.postgres
def test_receipts_verify_while_jobs_append_in_their_own_transactions(
    postgres_url: str, log: SqlAuditLog
) -> None:
    """The receipt race (issue 14): appends committed in callers' own transactions (as a job's
    release is) land between the committer's size read and its checkpoint; every receipt
    handed out must still verify offline. Fails on PostgreSQL (READ COMMITTED) when the size
    is read outside the writers' lock; SQLite's write lock serialises both reads anyway."""
    engine = make_engine(postgres_url)
    metadata.create_all(engine)
    committer = GroupCommitter(log, engine.begin)
    receipts: list[dict[str, Any]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    readers_done = threading.Event()
    per_reader = 20  # a count, not a time: a loaded machine gets as many receipts, slower

    def appender(worker: int) -> None:
        n = 0
        while not readers_done.is_set():  # appending all the while the readers read
            with engine.begin() as conn:
                log.append(conn, make_event(worker * 100_000 + n))
            n += 1

    def reader(worker: int) -> None:
        try:
            for n in range(per_reader):
                index = committer.append([make_event(900_000 + worker * 10_000 + n)]).indexes[0]
                head = committer.checkpoint(index + 1)
                assert head.checkpoint is not None
                with engine.connect() as conn:
                    body = log.entry(conn, index)
                    proof = log.inclusion_proof(conn, index, head.checkpoint_size)
                receipt = {
                    "audit_index": index,
                    "tree_size": head.checkpoint_size,
                    "leaf_hash": leaf_hash(body).hex(),
                    "inclusion_proof": [p.hex() for p in proof],
                    "checkpoint": head.checkpoint,
                    "entry": base64.b64encode(body).decode(),
                }
                with lock:
                    receipts.append(receipt)
        except BaseException as exc:  # reported below, with the receipts that failed
            errors.append(exc)

    appenders = [threading.Thread(target=appender, args=(w,)) for w in range(4)]
    readers = [threading.Thread(target=reader, args=(w,)) for w in range(4)]
    for thread in [*appenders, *readers]:
        thread.start()
    for thread in readers:
        thread.join()
    readers_done.set()
    for thread in appenders:
        thread.join()
    committer.stop()
    engine.dispose()
    assert not errors, errors
    assert len(receipts) == 4 * per_reader
    failed = 0
    for receipt in receipts:
        try:
            verify_receipt(receipt, [log.verifier], ORIGIN)
        except VerificationError:
            failed += 1
    assert failed == 0, f"{failed} of {len(receipts)} receipts do not verify"
