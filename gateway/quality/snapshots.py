"""Snapshots: a provider's new data for a registered dataset, and the profile a job's data had.

- `take_snapshot`: the provider's data owner names the new file (or the same file, changed in
  place); it is profiled in the sandbox and checked. A `must` failure refuses it (422, audited
  as `dataset.snapshot_refused`): a new file is then never used, a file changed in place is
  quarantined (jobs on it fail) until a snapshot passes. Otherwise the catalogue points at it
  and `dataset.snapshot_accepted` names the profile (and any `should` alerts for the owner).
- `profiles_for_job`: the worker asks, before a run, which profile each dataset's current file
  has; a file changed without a snapshot is profiled then (trigger `job`), and a job on data
  failing a `must` rule fails without running.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from gateway.auth.principal import Principal
from gateway.authz import deny, require
from gateway.catalogue import registry as catalogue
from gateway.catalogue.documents import DatasetSpec
from gateway.context import Gateway
from gateway.errors import Conflict, InvalidInput
from gateway.quality import measure as quality
from gateway.quality import store as profiles
from gateway.store import db
from gateway.trail.writer import SYSTEM
from sandbox import TableSource


def take_snapshot(
    gw: Gateway, principal: Principal, dataset_id: str, path: str | None
) -> dict[str, Any]:
    target = f"dataset:{dataset_id}"
    decision = require(gw, principal, "dataset", "register", event="dataset.denied", target=target)
    with db.reading(gw.db) as conn:
        spec = catalogue.get(conn, dataset_id)
        previous = profiles.latest(conn, dataset_id, status="accepted")
    if principal.department != spec.provider:
        raise deny(
            gw,
            principal,
            event="dataset.denied",
            action="snapshot",
            target=target,
            reason="only the provider department's data owner may change its data",
            policy_version=decision.policy_version,
            details={"dataset": dataset_id},
        )
    new = spec
    if path is not None:
        new = DatasetSpec.model_validate(
            {**spec.model_dump(mode="json"), "source": {"format": spec.source.format, "path": path}}
        )
    catalogue.check_declared_schema(gw, new)
    measured = quality.measure(gw, new, catalogue.table_source(gw, new), previous)
    if measured.refused:
        raise catalogue.refuse_quality(
            gw,
            principal,
            measured,
            event="dataset.snapshot_refused",
            action="snapshot",
            target=target,
        )
    source = str(catalogue.resolve_source(gw, new))
    with gw.db.begin() as conn:
        for other in catalogue.list_all(conn):
            if other.id != new.id and str(catalogue.source_path(gw, other)) == source:
                raise Conflict(f"that source file is already registered as dataset {other.id}")
        catalogue.replace_spec(conn, new)
        gw.audit.record(
            conn,
            type="dataset.snapshot_accepted",
            principal=principal,
            action="snapshot",
            target=target,
            allowed=True,
            rule=decision.rule,
            details={**measured.audit_details(), "policy_version": decision.policy_version},
        )
        profiles.insert(conn, measured.row("snapshot"))
        stored = profiles.get(conn, measured.id)
    return stored


def profiles_for_job(
    gw: Gateway,
    datasets: Mapping[str, DatasetSpec],
    sources: Mapping[str, TableSource],
    *,
    seen: int,
) -> dict[str, str]:
    """{dataset: profile id} of the files the job is about to read; raises InvalidInput when
    one fails a `must` rule (the worker fails the job with that one-line reason).

    `seen` is the catalogue version the worker read for this job (`CatalogueCache.current`).
    The stored profile of a file's fingerprint is taken from memory while that version holds:
    every profile stored bumps it (`gateway.quality.store.insert`), so a same-file snapshot
    that is refused, or accepted anew, is seen by the next job as a fresh read would. A file
    with no stored profile is not remembered: it is profiled now, and that bumps the version."""
    named: dict[str, str] = {}
    for dataset_id, spec in sorted(datasets.items()):
        source = sources[dataset_id]
        digest, _ = quality.fingerprint(source)
        verdict = gw.catalogue.get(
            seen,
            ("dataset_profile", dataset_id, digest),
            functools.partial(_stored_verdict, gw, dataset_id, digest),
            keep=_found,
        )
        if verdict is None:
            with db.reading(gw.db) as conn:
                previous = profiles.latest(conn, dataset_id, status="accepted")
            verdict = _verdict(_profile_changed_file(gw, spec, source, previous))
        profile_id, refusal = verdict
        if refusal is not None:
            raise InvalidInput(f"the current data of {dataset_id} {refusal}")
        named[dataset_id] = profile_id
    return named


def _found(verdict: tuple[str, str | None] | None) -> bool:
    return verdict is not None  # a file not profiled yet is profiled now: nothing to keep


def _stored_verdict(gw: Gateway, dataset_id: str, digest: str) -> tuple[str, str | None] | None:
    with db.reading(gw.db) as conn:
        known = profiles.by_fingerprint(conn, dataset_id, digest)
    return None if known is None else _verdict(known)


def _verdict(view: Mapping[str, Any]) -> tuple[str, str | None]:
    """(profile id, why jobs may not run on it, or None): all a job needs of a profile."""
    if view["status"] == "accepted":
        return view["id"], None
    failing = next(c for c in view["checks"] if not c["ok"] and c["severity"] == "must")
    cols = ",".join(failing["columns"]) or "the snapshot"
    return view["id"], f"fails must quality rule {failing['rule']} on {cols} (profile {view['id']})"


def _profile_changed_file(
    gw: Gateway, spec: DatasetSpec, source: TableSource, previous: dict[str, Any] | None
) -> dict[str, Any]:
    measured = quality.measure(gw, spec, source, previous)
    event = "dataset.snapshot_refused" if measured.refused else "dataset.snapshot_accepted"
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type=event,
            principal=SYSTEM,
            action="snapshot",
            target=f"dataset:{spec.id}",
            allowed=not measured.refused,
            reason="a must quality rule fails" if measured.refused else None,
            details={**measured.audit_details(), "trigger": "job"},
        )
        profiles.insert(conn, measured.row("job"))
        return profiles.get(conn, measured.id)


def alerts(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """`should` rules failing on the newest profile of each of the caller department's datasets."""
    require(gw, principal, "catalogue", "read", event="catalogue.denied", target="quality")
    with db.reading(gw.db) as conn:
        ids = [d.id for d in catalogue.list_all(conn) if d.provider == principal.department]
        out = []
        for dataset_id in ids:
            view = profiles.latest(conn, dataset_id)
            if view is None:
                continue
            failing = [c for c in view["checks"] if not c["ok"] and c["severity"] == "should"]
            if failing or (view["drift"] and view["drift"]["flagged"]):
                out.append(
                    {
                        "dataset": dataset_id,
                        "profile": view["id"],
                        "created_at": view["created_at"],
                        "failing": failing,
                        "drift_flagged": bool(view["drift"] and view["drift"]["flagged"]),
                    }
                )
    return out
