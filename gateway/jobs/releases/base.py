"""How each template kind turns a run into a release: one function per kind, one registry.

The worker (`gateway.jobs.worker.Runner`) does what every kind shares: loads the approved version,
re-checks its hash and approval, validates parameters, resolves the sources. The kind's release
function runs the query in the sandbox and returns an `Outcome`: what may leave (or why not).
Add a kind by writing its function in a module of its own (`gateway/release_<kind>.py`)
and adding it to `gateway.jobs.releases.registry.RELEASES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.catalogue.documents import DatasetSpec
from gateway.catalogue.templates import StoredTemplate
from gateway.context import Gateway
from gateway.jobs.model import Job, JobStatus
from gateway.store import db
from sandbox import CompiledQuery, TableSource


@dataclass(frozen=True, slots=True)
class Outcome:
    status: JobStatus
    result: dict[str, Any] | None
    error: str | None
    policy_version: int | None = None  # the version the job was allowed to run under
    # A comparison's findings, stored and routed in the release's transaction (gateway/findings)
    findings: tuple[dict[str, Any], ...] = ()
    # 谁提供/谁管理 as the worker's checks saw them (`templates.parties_of`); None: read them
    parties: Mapping[str, list[str]] | None = None
    # The job may hold a DP reservation for the release to settle. False only where the worker
    # saw the job's template version is not `dp` (submission reserves for `dp` jobs alone).
    reserved: bool = True
    # The kind's own bookkeeping, done in the release's transaction before anything is stored
    # (and only by the run that still holds the job's lease): returns why nothing may be
    # released after all (the job then fails with that reason), or None. A verify job's answers
    # are counted there, so the totals a sweep is judged by commit with the release.
    settle: Callable[[db.Connection], str | None] | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One claimed job, checked and ready to run."""

    gw: Gateway
    job: Job
    stored: StoredTemplate
    datasets: Mapping[str, DatasetSpec]
    values: Mapping[str, Any]
    sources: Mapping[str, TableSource]
    compiled: Callable[[], CompiledQuery]


Release = Callable[[Run], Outcome]
