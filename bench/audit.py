"""The audit log: durable appends per second, offline verification of 1M entries, proofs.

- Durable appends/s on SQLite (WAL, synchronous=FULL) and PostgreSQL (fsync, synchronous_commit
  on): concurrent callers each append one event and wait until it is committed. "one txn per
  append" is the naive path (every append its own transaction); "group commit" goes through
  `audit.GroupCommitter`. Goal: >= 5,000 durable appends/s.
- Offline verification (`python -m audit.verify`, in its own process as an auditor runs it)
  of a bundle of 1M entries (`--quick`: 100k):
  every body checked canonical, every leaf hashed, the tree rebuilt, the checkpoint's signature
  and root checked. Goal: 1M in <= 20 s.
- Proofs from the store (SQLite, PostgreSQL): inclusion and consistency proof time (median) and
  size (hashes, bytes). Goal: <= 1 ms.

    python -m bench audit [--quick]
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from audit import (
    Actor,
    Checkpoint,
    CompactRange,
    Event,
    GroupCommitter,
    Signer,
    SqlAuditLog,
    encode,
    leaf_hash,
    sign_checkpoint,
    verify_inclusion,
    write_bundle,
)
from audit.store import metadata
from bench.common import write_result
from gateway.store import db

ORIGIN = "bench.insitu/audit"
PG_URL = os.environ.get("INSITU_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 11, 22, tzinfo=UTC)


def event(n: int) -> Event:
    """A job.accepted event shaped like the gateway's (fingerprints, not values)."""
    return Event(
        type="job.accepted",
        time=T0 + timedelta(microseconds=n),
        actor=Actor(f"analyst{n % 50}@stats", "stats", ("analyst",)),
        action="submit",
        target=f"job:{uuid.UUID(int=n)}",
        allowed=True,
        rule="p, analyst, *, job, submit",
        details={
            "job": str(uuid.UUID(int=n)),
            "template": "enterprises-without-tax-filing",
            "version": 1,
            "content_hash": "sha256:" + "ab" * 32,
            "datasets": ["market.enterprise_registry", "tax.filings"],
            "providers": ["market", "tax"],
            "parameters": "hmac-sha256:" + f"{n:064x}",
            "purpose": "hmac-sha256:" + "cd" * 32,
            "policy_version": 1,
        },
    )


class Store:
    """A scratch audit store on SQLite (temp file) or PostgreSQL (temp database)."""

    def __init__(self, kind: str, scratch: Path) -> None:
        self.kind = kind
        self._admin: sa.Engine | None = None
        if kind == "sqlite":
            url = f"sqlite:///{scratch / f'audit-{uuid.uuid4().hex[:8]}.db'}"
        else:
            self.name = f"insitu_bench_{uuid.uuid4().hex[:10]}"
            self._admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
            url = sa.make_url(PG_URL).set(database=self.name).render_as_string(False)
        self.engine = db.create_engine(url)
        db.check_durability(self.engine)
        metadata.create_all(self.engine)
        self.log = SqlAuditLog(origin=ORIGIN, signer=Signer.generate(ORIGIN))

    def close(self) -> None:
        self.engine.dispose()
        if self._admin is not None:
            with self._admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            self._admin.dispose()


def pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception:
        return False
    return True


def concurrent(callers: int, per_caller: int, append_one: Callable[[int], None]) -> float:
    """Appends per second with `callers` threads each appending `per_caller` events."""
    barrier = threading.Barrier(callers + 1)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        barrier.wait()
        try:
            for k in range(per_caller):
                append_one(worker * per_caller + k)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(callers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return callers * per_caller / elapsed


def bench_appends(store: Store, quick: bool) -> dict[str, Any]:
    events = [event(n) for n in range(200_000)]
    naive_n = 300 if quick else 1000

    def naive(n: int) -> None:
        with store.engine.begin() as conn:
            store.log.append(conn, events[n])

    naive_rate = concurrent(4, naive_n // 4, naive)
    committer = GroupCommitter(store.log, store.engine.begin)
    offset = naive_n

    def grouped(n: int) -> None:
        committer.append([events[offset + n]])

    callers, per = (128, 50) if quick else (256, 100)
    rate = concurrent(callers, per, grouped)
    committer.stop()
    with store.engine.connect() as conn:
        size = store.log.size(conn)
    return {
        "naive_appends_per_s": naive_rate,
        "group_commit_appends_per_s": rate,
        "callers": callers,
        "appends": callers * per,
        "transactions": committer.batches,
        "log_size": size,
    }


def bench_proofs(store: Store) -> dict[str, Any]:
    with store.engine.begin() as conn:
        note = store.log.checkpoint(conn)
        size = store.log.size(conn)
    del note
    if store.kind == "postgresql":  # what autovacuum does a few seconds after the burst
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE audit_entries, audit_nodes"))
    with db.reading(store.engine) as conn:
        root = store.log.root(conn, size)
        indexes = [(i * 7919) % size for i in range(300)]
        for index in indexes[:30]:  # warm-up: the driver prepares the statement on first uses
            store.log.inclusion_proof(conn, index, size)
        times, lengths, checks = [], [], []
        for index in indexes:
            start = time.perf_counter()
            proof = store.log.inclusion_proof(conn, index, size)
            times.append(time.perf_counter() - start)
            lengths.append(len(proof))
            leaf = leaf_hash(store.log.entry(conn, index))
            start = time.perf_counter()
            verify_inclusion(leaf, index, size, proof, root)
            checks.append(time.perf_counter() - start)
        ctimes, clengths = [], []
        for first in [max(1, (i * 104729) % size) for i in range(300)]:
            start = time.perf_counter()
            proof = store.log.consistency_proof(conn, first, size)
            ctimes.append(time.perf_counter() - start)
            clengths.append(len(proof))
    return {
        "tree_size": size,
        "inclusion_ms": statistics.median(times) * 1000,
        "inclusion_p90_ms": sorted(times)[len(times) * 9 // 10] * 1000,
        "inclusion_hashes": max(lengths),
        "inclusion_bytes": max(lengths) * 32,
        "inclusion_verify_ms": statistics.median(checks) * 1000,
        "consistency_ms": statistics.median(ctimes) * 1000,
        "consistency_hashes": max(clengths),
    }


def bench_verify(entries: int, scratch: Path) -> dict[str, Any]:
    signer = Signer.generate(ORIGIN)
    tree = CompactRange()
    path = scratch / "bundle.jsonl"
    start = time.perf_counter()

    def bodies() -> Any:
        for n in range(entries):
            body = encode(event(n))
            tree.append(leaf_hash(body))
            yield body

    # Entries first (the tree is built while writing), then the checkpoint over all of them.
    entries_path = scratch / "entries.jsonl"
    write_bundle(entries_path, bodies(), [], [])
    note = sign_checkpoint(Checkpoint(ORIGIN, entries, tree.root()), [signer])
    with path.open("w", encoding="utf-8") as out, entries_path.open(encoding="utf-8") as src:
        header = src.readline()
        out.write(header)
        out.write('{"vkey":"' + signer.verifier().vkey + '"}\n')
        out.write(json.dumps({"checkpoint": note}, separators=(",", ":"), ensure_ascii=False))
        out.write("\n")
        for line in src:
            out.write(line)
    entries_path.unlink()
    built = time.perf_counter() - start
    timings, cpu, load = {}, {}, {}
    for workers in (1, os.cpu_count() or 1):
        # CPU seconds (this process and its finished workers) too: on a shared machine the wall
        # time says as much about the neighbours as about the verifier.
        start, used = time.perf_counter(), _cpu_seconds()
        # As an auditor runs it: the offline verifier's own command, in its own process (its
        # workers then import only `audit`, not this benchmark's imports).
        done = subprocess.run(
            [
                *(sys.executable, "-m", "audit.verify", str(path)),
                *("--vkey", signer.verifier().vkey, "--workers", str(workers)),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        timings[workers] = time.perf_counter() - start
        cpu[workers] = _cpu_seconds() - used
        load[workers] = os.getloadavg()[0]
        if done.returncode != 0 or f"OK: {entries} entries" not in done.stdout:
            raise RuntimeError(f"the verifier did not accept the bundle: {done.stdout.strip()}")
    best = min(timings.values())
    return {
        "entries": entries,
        "bundle_mb": path.stat().st_size / 1e6,
        "verify_s": best,
        "verify_s_by_processes": timings,
        "verify_cpu_s_by_processes": cpu,
        "load_by_processes": load,
        "entries_per_s": entries / best,
        "build_s": built,
    }


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> None:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    console = Console()
    kinds = ["sqlite", *(["postgresql"] if pg_available() else [])]
    results: dict[str, Any] = {"quick": quick, "appends": {}, "proofs": {}}
    with tempfile.TemporaryDirectory(prefix="insitu-bench-audit-") as tmp:
        scratch = Path(tmp)
        for kind in kinds:
            store = Store(kind, scratch)
            try:
                results["appends"][kind] = bench_appends(store, quick)
                results["proofs"][kind] = bench_proofs(store)
            finally:
                store.close()
        results["verify"] = bench_verify(100_000 if quick else 1_000_000, scratch)

    table = Table(title="audit log: durable appends, proofs")
    for column in (
        "store",
        "one txn/append",
        "group commit",
        "txns",
        "proof",
        "p90",
        "hashes",
        "consistency",
    ):
        table.add_column(column)
    for kind in kinds:
        a, p = results["appends"][kind], results["proofs"][kind]
        table.add_row(
            kind,
            f"{a['naive_appends_per_s']:,.0f}/s",
            f"{a['group_commit_appends_per_s']:,.0f}/s ({a['callers']} callers)",
            f"{a['transactions']:,} for {a['appends']:,}",
            f"{p['inclusion_ms']:.3f} ms @ {p['tree_size']:,}",
            f"{p['inclusion_p90_ms']:.3f} ms",
            f"{p['inclusion_hashes']} ({p['inclusion_bytes']} B)",
            f"{p['consistency_ms']:.3f} ms",
        )
    console.print(table)
    v = results["verify"]
    by = ", ".join(
        f"{n} process(es) {t:.1f} s (CPU {v['verify_cpu_s_by_processes'][n]:.1f} s, "
        f"load {v['load_by_processes'][n]:.1f})"
        for n, t in v["verify_s_by_processes"].items()
    )
    console.print(
        f"offline verify: {v['entries']:,} entries ({v['bundle_mb']:.0f} MB): {by}; best "
        f"{v['entries_per_s']:,.0f} entries/s (1M: {1_000_000 / v['entries_per_s']:.1f} s)"
    )
    if "postgresql" not in kinds:
        console.print(f"PostgreSQL at {PG_URL} not reachable: measured SQLite only")
    path = write_result("audit", results)
    console.print(f"wrote {path}")
