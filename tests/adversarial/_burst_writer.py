"""A writer for the kill -9 test: many threads append through the group committer and print
each receipt (one JSON line, flushed) as soon as it is handed out. Killed from outside."""

from __future__ import annotations

import base64
import json
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from audit import Actor, Event, GroupCommitter, Signer, SqlAuditLog, leaf_hash
from audit.store import metadata
from gateway.store import db


def main() -> None:
    url, origin, key_file = sys.argv[1:4]
    engine = db.create_engine(url)
    metadata.create_all(engine)
    log = SqlAuditLog(origin=origin, signer=Signer.from_pem(Path(key_file).read_bytes(), origin))
    committer = GroupCommitter(log, engine.begin)
    out = threading.Lock()

    def burst(worker: int) -> None:
        for n in range(1_000_000):
            event = Event(
                type="job.released",
                time=datetime.now(UTC),
                actor=Actor(f"w{worker}", "stats", ("analyst",)),
                action="run",
                target=f"job:{worker}-{n}",
                allowed=True,
                details={"n": n},
            )
            done = committer.append([event])
            index = done.indexes[0]
            head = committer.checkpoint(index + 1)
            assert head.checkpoint is not None
            with db.reading(engine) as conn:
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
            with out:
                sys.stdout.write(json.dumps(receipt) + "\n")
                sys.stdout.flush()

    threads = [threading.Thread(target=burst, args=(w,), daemon=True) for w in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
