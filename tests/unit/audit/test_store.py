"""SqlAuditLog on SQLite and PostgreSQL: append, proofs, checkpoints, verify, tampering."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from audit import (
    CheckpointError,
    EntryNotFoundError,
    NoteVerifier,
    ProofError,
    Signer,
    VerificationError,
    decode,
    leaf_hash,
    open_checkpoint,
    root_from_leaf_hashes,
    verify_bundle,
    verify_consistency,
    verify_inclusion,
)
from audit.store import (
    SqlAuditLog,
    checkpoints_table,
    entries_table,
    metadata,
    nodes_table,
    terms_table,
)
from tests.unit.audit._support import ORIGIN, make_engine, make_event


def fill(engine: sa.Engine, log: SqlAuditLog, n: int, batch: int = 7) -> None:
    for start in range(0, n, batch):
        with engine.begin() as conn:
            log.append_many(conn, [make_event(i) for i in range(start, min(n, start + batch))])


def test_append_returns_consecutive_indexes_and_leaf_hashes(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    with engine.begin() as conn:
        assert log.size(conn) == 0
        first = log.append(conn, make_event(0))
        rest = log.append_many(conn, [make_event(1), make_event(2)])
        assert log.append_many(conn, []) == []
    assert [r.index for r in [first, *rest]] == [0, 1, 2]
    with engine.connect() as conn:
        bodies = log.entries(conn, 0, 10)
        assert [leaf_hash(b) for b in bodies] == [r.leaf_hash for r in [first, *rest]]
        assert decode(log.entry(conn, 1)) == make_event(1)
        assert log.root(conn) == root_from_leaf_hashes([leaf_hash(b) for b in bodies])
        assert log.entries(conn, 5, 3) == []
        with pytest.raises(EntryNotFoundError):
            log.entry(conn, 3)


def test_rolled_back_append_leaves_no_trace(engine: sa.Engine, log: SqlAuditLog) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        log.append(conn, make_event(0))
        raise RuntimeError("the use case failed after auditing")
    with engine.begin() as conn:
        assert log.size(conn) == 0
        assert log.append(conn, make_event(1)).index == 0
        assert log.verify(conn).size == 1


def test_proofs_verify_against_signed_checkpoints(engine: sa.Engine, log: SqlAuditLog) -> None:
    verifier = log.signer.verifier()
    fill(engine, log, 21)
    with engine.begin() as conn:
        old = open_checkpoint(log.checkpoint(conn), [verifier], ORIGIN)
    fill_more = [make_event(i) for i in range(21, 50)]
    with engine.begin() as conn:
        log.append_many(conn, fill_more)
        note = log.checkpoint(conn)
        assert log.checkpoint(conn) == note  # idempotent per size
        assert log.latest_checkpoint(conn) == note
    new = open_checkpoint(note, [verifier], ORIGIN)
    assert (old.size, new.size) == (21, 50)
    with engine.connect() as conn:
        bodies = log.entries(conn, 0, 50)
        for index in range(50):
            proof = log.inclusion_proof(conn, index, 50)
            verify_inclusion(leaf_hash(bodies[index]), index, 50, proof, new.root)
        for size1 in range(0, 51, 3):
            proof = log.consistency_proof(conn, size1, 50)
            verify_consistency(size1, 50, proof, log.root(conn, size1), new.root)
        verify_consistency(21, 50, log.consistency_proof(conn, 21, 50), old.root, new.root)
        assert log.root(conn, 21) == old.root
        with pytest.raises(EntryNotFoundError):
            log.inclusion_proof(conn, 3, 51)
        with pytest.raises(EntryNotFoundError):
            log.root(conn, 51)
        for beyond in (51, 64, 2**40):  # the size is checked in the proof's own query
            with pytest.raises(EntryNotFoundError):
                log.inclusion_proof(conn, 50 if beyond == 51 else 3, beyond)
            with pytest.raises(EntryNotFoundError):
                log.consistency_proof(conn, 21, beyond)
        with pytest.raises(EntryNotFoundError):
            log.consistency_proof(conn, 0, -1)
        assert log.consistency_proof(conn, 0, 0) == []


def test_an_entry_with_its_proof_in_one_query_equals_the_two_reads(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    fill(engine, log, 37)  # 37: a proof over a ragged right edge, and one over 1 entry
    queries: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: queries.append(a[2]))
    with engine.connect() as conn:
        log.size(conn)  # the transaction begun (SQLite: a BEGIN statement)
        for size in (1, 2, 5, 16, 33, 37):
            for index in range(size):
                queries.clear()
                body, proof = log.entry_and_proof(conn, index, size)
                if conn.dialect.name == "sqlite":  # PostgreSQL's is sent on the driver's cursor
                    assert len(queries) == 1, queries
                assert body == log.entry(conn, index)
                assert proof == log.inclusion_proof(conn, index, size)
        for index, size in ((3, 38), (0, -1), (40, 2**40)):
            with pytest.raises(EntryNotFoundError):
                log.entry_and_proof(conn, index, size)
        with pytest.raises(ProofError):  # as `inclusion_proof`: no such proof
            log.entry_and_proof(conn, 37, 37)


def test_empty_log_has_the_empty_root_and_a_checkpoint(engine: sa.Engine, log: SqlAuditLog) -> None:
    with engine.begin() as conn:
        assert log.latest_checkpoint(conn) is None
        note = log.checkpoint(conn)
        assert open_checkpoint(note, [log.signer.verifier()], ORIGIN).size == 0
        report = log.verify(conn)
    assert (report.size, report.checkpoints) == (0, 1)


def test_verify_recomputes_everything(engine: sa.Engine, log: SqlAuditLog) -> None:
    fill(engine, log, 40)
    with engine.begin() as conn:
        log.checkpoint(conn)
    fill(engine, log, 5)
    with engine.begin() as conn:
        log.checkpoint(conn)
        report = log.verify(conn)
    assert (report.size, report.checkpoints, report.signed_size) == (45, 2, 45)


Tamper = Callable[[sa.Connection], None]


def _set_body(index: int, body: bytes) -> Tamper:
    def tamper(conn: sa.Connection) -> None:
        where = entries_table.c.idx == index
        conn.execute(entries_table.update().where(where).values(body=body))

    return tamper


@pytest.mark.parametrize(
    ("tamper", "index"),
    [
        (_set_body(13, b"{}"), 13),
        (_set_body(9, b""), 9),
        (_set_body(11, b'{"v":1}'), 11),
        (lambda c: c.execute(entries_table.delete().where(entries_table.c.idx == 4)), 4),
        (
            lambda c: c.execute(
                entries_table.update().where(entries_table.c.idx == 17).values(leaf_hash=bytes(32))
            ),
            17,
        ),
        (
            lambda c: c.execute(
                entries_table.update()
                .where(entries_table.c.idx == 2)
                .values(event_type="job.released")
            ),
            2,
        ),
    ],
)
def test_verify_names_the_first_bad_entry(
    engine: sa.Engine, log: SqlAuditLog, tamper: Tamper, index: int
) -> None:
    fill(engine, log, 20)
    with engine.begin() as conn:
        log.checkpoint(conn)
        tamper(conn)
    with engine.connect() as conn, pytest.raises(VerificationError) as caught:
        log.verify(conn)
    assert caught.value.index == index


def test_verify_catches_a_consistent_rewrite_through_the_checkpoint(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    fill(engine, log, 8)
    with engine.begin() as conn:
        log.checkpoint(conn)
    # Rewrite history wholesale (entries *and* nodes), as an attacker with DB access would.
    rewritten = SqlAuditLog(origin=ORIGIN, signer=Signer.generate("attacker"))
    with engine.begin() as conn:
        conn.execute(entries_table.delete())
        conn.execute(nodes_table.delete())
        conn.execute(terms_table.delete())
        rewritten.append_many(conn, [make_event(i, allowed=False) for i in range(8)])
    with engine.connect() as conn, pytest.raises(VerificationError, match="signed checkpoint"):
        log.verify(conn)


def test_verify_catches_a_damaged_node(engine: sa.Engine, log: SqlAuditLog) -> None:
    fill(engine, log, 16)
    with engine.begin() as conn:
        where = sa.and_(nodes_table.c.level == 2, nodes_table.c.idx == 1)
        conn.execute(nodes_table.update().where(where).values(hash=bytes(32)))
    with engine.connect() as conn, pytest.raises(VerificationError, match=r"node \(2, 1\)"):
        log.verify(conn)


def test_verify_catches_a_stray_node(engine: sa.Engine, log: SqlAuditLog) -> None:
    fill(engine, log, 16)
    with engine.begin() as conn:
        conn.execute(nodes_table.insert().values(level=9, idx=99, hash=bytes(32)))
    with engine.connect() as conn, pytest.raises(VerificationError, match="audit_nodes"):
        log.verify(conn)


def test_verify_catches_a_forged_checkpoint_row(engine: sa.Engine, log: SqlAuditLog) -> None:
    fill(engine, log, 5)
    with engine.begin() as conn:
        note = log.checkpoint(conn)
        conn.execute(checkpoints_table.update().values(note=note.replace("\n5\n", "\n4\n")))
    with engine.connect() as conn, pytest.raises(VerificationError, match="checkpoint"):
        log.verify(conn)


def test_verify_catches_a_checkpoint_beyond_the_entries(
    engine: sa.Engine, log: SqlAuditLog
) -> None:
    fill(engine, log, 6)
    with engine.begin() as conn:
        log.checkpoint(conn)
        conn.execute(entries_table.delete().where(entries_table.c.idx == 5))
        n = nodes_table.c
        last = sa.or_(sa.and_(n.level == 0, n.idx == 5), sa.and_(n.level == 1, n.idx == 2))
        conn.execute(nodes_table.delete().where(last))  # a clean rollback to 5 entries
    with engine.connect() as conn, pytest.raises(VerificationError, match="truncated"):
        log.verify(conn)


def test_export_bundle_verifies_offline(
    engine: sa.Engine, log: SqlAuditLog, tmp_path: Path
) -> None:
    fill(engine, log, 30)
    with engine.begin() as conn:
        log.checkpoint(conn)
        path = tmp_path / "bundle.jsonl"
        assert log.export_bundle(conn, path) == 30
        expected = log.root(conn)
    report = verify_bundle(path, vkeys=[log.verifier.vkey])
    assert (report.size, report.root, report.signed_size) == (30, expected, 30)


def test_tables_match_the_documented_schema() -> None:
    entries = metadata.tables["audit_entries"]
    assert [c.name for c in entries.columns] == [
        "idx",
        "leaf_hash",
        "body",
        "event_type",
        "created_at",
    ]
    assert [c.name for c in entries.primary_key] == ["idx"]
    assert {i.name for i in entries.indexes} == {
        "ix_audit_entries_event_type",
        "ix_audit_entries_created_at",
    }
    nodes = metadata.tables["audit_nodes"]
    assert [c.name for c in nodes.primary_key] == ["level", "idx"]
    checkpoints = metadata.tables["audit_checkpoints"]
    assert [c.name for c in checkpoints.columns] == ["size", "root", "note", "created_at"]
    assert all(not c.nullable for t in metadata.tables.values() for c in t.columns)


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_writers_on_postgres_get_gapless_indexes(
    postgres_url: str, signer: Signer
) -> None:
    engine = make_engine(postgres_url)
    metadata.create_all(engine)
    log = SqlAuditLog(origin=ORIGIN, signer=signer)
    threads, per_thread, errors = 6, 15, []
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def writer(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with engine.begin() as conn:
                    if i % 3 == 0:
                        results = log.append_many(conn, [make_event(t), make_event(t)])
                    else:
                        results = [log.append(conn, make_event(t))]
                    if i % 5 == 0:
                        log.checkpoint(conn)
                with lock:
                    got.extend(r.index for r in results)
        except Exception as exc:  # reported below, on the main thread
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    total = threads * (per_thread + 5)
    assert sorted(got) == list(range(total))
    with engine.begin() as conn:
        log.checkpoint(conn)
        report = log.verify(conn)
    assert report.size == total
    engine.dispose()


def test_concurrent_writers_on_sqlite_are_serialised(sqlite_url: str, signer: Signer) -> None:
    engine = make_engine(sqlite_url)
    metadata.create_all(engine)
    log = SqlAuditLog(origin=ORIGIN, signer=signer)
    errors: list[Exception] = []

    def writer(t: int) -> None:
        try:
            for _ in range(10):
                with engine.begin() as conn:
                    log.append(conn, make_event(t))
        except Exception as exc:
            errors.append(exc)

    pool = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert log.verify(conn).size == 40
    engine.dispose()


def test_a_bad_origin_is_refused(signer: Signer) -> None:
    with pytest.raises(CheckpointError):
        SqlAuditLog(origin="bad\norigin", signer=signer)
    assert isinstance(SqlAuditLog(origin=ORIGIN, signer=signer).verifier, NoteVerifier)


def test_verify_and_export_span_read_batches(
    engine: sa.Engine, log: SqlAuditLog, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        log.append_many(conn, [make_event(i) for i in range(1500)])
        log.checkpoint(conn)
        log.append_many(conn, [make_event(i) for i in range(1500, 2600)])
        log.checkpoint(conn)
    with engine.connect() as conn:
        report = log.verify(conn)
        assert (report.size, report.checkpoints) == (2600, 2)
        log.export_bundle(conn, tmp_path / "b.jsonl")
        proof = log.inclusion_proof(conn, 2047, 2600)
        verify_inclusion(leaf_hash(log.entry(conn, 2047)), 2047, 2600, proof, report.root)
    assert verify_bundle(tmp_path / "b.jsonl").root == report.root
    with engine.begin() as conn:
        conn.execute(entries_table.delete().where(entries_table.c.idx.between(1024, 2047)))
    with engine.connect() as conn, pytest.raises(VerificationError) as caught:
        log.verify(conn)
    assert caught.value.index == 1024
    with engine.connect() as conn:
        log.export_bundle(conn, tmp_path / "gap.jsonl")
    with pytest.raises(VerificationError) as caught:
        verify_bundle(tmp_path / "gap.jsonl")
    assert caught.value.index == 1024
