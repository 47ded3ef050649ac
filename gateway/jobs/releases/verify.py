"""`verify` templates (核验): one bit per key the requester holds, or how many keys match.

The keys wait in `verify_requests` from submission; the query is compiled for exactly that
many key slots (each key bound to its own parameter, never spliced) and run in the sandbox.
The answers are added to the department's day totals in the release's own transaction, so
they commit with it (and are counted once, by the run that holds the job's lease): a sweep
(many keys, few matches) releases nothing and is reported to the owner
(`gateway.jobs.verify_keys`).
"""

from __future__ import annotations

import functools
import threading

from audit import Actor
from gateway import timing
from gateway.catalogue import templates
from gateway.jobs import verify_keys as verify_quota
from gateway.jobs.model import JobStatus
from gateway.jobs.releases.base import Outcome, Run
from gateway.store import db
from sandbox import CompiledQuery, ExecutionCategory, ExecutionError, ResultTable, SandboxBug

_CACHE_SIZE = 256
_compiled: dict[tuple[str, int], CompiledQuery] = {}
_lock = threading.Lock()


def _query(run: Run, slots: int) -> CompiledQuery:
    key = (run.stored.content_hash, slots)
    with _lock:
        hit = _compiled.get(key)
    if hit is None:
        hit = templates.compile_spec(run.stored.spec, dict(run.datasets), verify_slots=slots)
        with _lock:
            if len(_compiled) >= _CACHE_SIZE:
                _compiled.clear()
            _compiled[key] = hit
    return hit


def _submitter(run: Run) -> Actor:
    job = run.job
    return Actor(subject=job.subject, department=job.department, roles=tuple(job.roles))


def _run(run: Run, query: CompiledQuery, values: dict[str, object]) -> ResultTable:
    """The query over the key's dataset's sorted copy when one is current, else the file. A
    copy the job could not read (deleted meanwhile, damaged) is discarded and the job runs
    again on the file."""
    copies = run.gw.sorted_copies
    if copies is None:
        return run.gw.engine.run(query, run.sources, values)
    sources = copies.sources_for(run.sources, query.key_column)
    copy = next((s for s in sources.values() if s.format == "sorted"), None)
    try:
        return run.gw.engine.run(query, sources, values)
    except (ExecutionError, SandboxBug) as exc:
        unreadable = (
            isinstance(exc, SandboxBug) or exc.category is ExecutionCategory.SOURCE_UNAVAILABLE
        )
        if copy is None or not unreadable:
            raise
    copies.discard(copy)
    return run.gw.engine.run(query, run.sources, values)


def release_verify(run: Run) -> Outcome:
    spec = run.stored.spec
    if spec.verify is None:
        return Outcome(JobStatus.FAILED, None, "the template has no verify section")
    keys = verify_quota.load_keys(run.gw, run.job.id)
    if not keys:
        return Outcome(JobStatus.FAILED, None, "the job's keys are no longer available")
    query = _query(run, len(keys))
    values = dict(run.values)
    values.update(zip(query.key_parameters, keys, strict=True))
    # A run that fails here keeps the keys for now: `finish` deletes them with the failure if
    # this run still holds the job (else they are the run's that took it over).
    with timing.stage("sandbox"):
        table = _run(run, query, values)
    if spec.verify.answer == "match":
        answers = [(int(str(index)), bool(matched)) for index, matched in table.rows]
        matches = sum(1 for _, matched in answers if matched)
    else:
        ((count,),) = table.rows
        matches = int(str(count))
    summary = {"answer": spec.verify.answer, "keys": len(keys)}
    if spec.verify.answer == "match":
        result = {
            "columns": ["key_index", "matched"],
            "rows": [[index, matched] for index, matched in answers],
            "withheld": [],
            "verify": {**summary, "matches": matches},
        }
    else:
        result = {
            "columns": ["matches"],
            "rows": [[matches]],
            "withheld": [],
            "verify": {**summary, "matches": matches},
        }
    count = functools.partial(_count, run, checked=len(keys), matches=matches)
    return Outcome(JobStatus.RELEASED, result, None, settle=count)


def _count(run: Run, conn: db.Connection, *, checked: int, matches: int) -> str | None:
    """The answers added to the day's totals in the release's transaction; a sweep (many keys,
    few matches) releases nothing."""
    swept = verify_quota.count_answers(
        conn, run.gw, _submitter(run), run.job.id, list(run.datasets.values()),
        checked=checked, matches=matches,
    )  # fmt: skip
    if not swept:
        return None
    names = ", ".join(d.id for d in swept)
    return (
        f"refused: many keys with few matches look like enumeration of {names}; "
        "the data owner was notified"
    )
