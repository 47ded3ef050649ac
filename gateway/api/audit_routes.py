"""/v1/audit: entries (filtered), checkpoint, keys, proofs, statistics, the export bundle and
witness cosignatures.

Every read by an auditor is itself audited (`audit.read`, through the group committer, durable
before the answer leaves); a refused read is audited as `audit.denied`.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from audit import AuditError, leaf_hash, witness_key
from gateway.api.bounds import MAX_INDEX
from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.models import (
    AuditEntries,
    AuditKeys,
    CallStats,
    Checkpoint,
    ConsistencyProof,
    InclusionProof,
)
from gateway.api.openapi import problems
from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.findings import inbox
from gateway.quality import store as profiles
from gateway.store import db
from gateway.trail.review import FILTERS, call_stats, terms_for
from gateway.trail.usage import count as usage_counts
from gateway.trail.witnesses import request_cosignatures

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Filter = Annotated[str | None, Query(max_length=190)]


def _audited_read(
    gw: Gateway, principal: Principal, what: str, action: str = "read", **details: Any
) -> None:
    decision = require(gw, principal, "audit", action, event="audit.denied", target=f"audit:{what}")
    gw.audit.record_durable(
        type="audit.read",
        principal=principal,
        action=action,
        target=f"audit:{what}",
        allowed=True,
        rule=decision.rule,
        details={**details, "policy_version": decision.policy_version},
    )


def _item(index: int, body: bytes) -> dict[str, Any]:
    return {
        "index": index,
        "leaf_hash": leaf_hash(body).hex(),
        "body": base64.b64encode(body).decode(),
        "event": json.loads(body),  # the canonical encoding is JSON: shown as stored
    }


@router.get("/entries", response_model=AuditEntries, responses=problems(404))
def entries(
    gw: GatewayDep,
    principal: PrincipalDep,
    *,
    start: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    since: datetime | None = None,
    until: datetime | None = None,
    type: Filter = None,
    subject: Filter = None,
    department: Filter = None,
    user: Filter = None,
    decision: Filter = None,
    template: Filter = None,
    dataset: Filter = None,
    provider: Filter = None,
    manager: Filter = None,
    job: Filter = None,
    latest: bool = False,
) -> dict[str, Any]:
    """Entries from `start` (or the `latest` ones, newest first), optionally filtered."""
    values = dict(
        zip(
            FILTERS,
            (type, subject, department, user, decision, template, dataset, provider, manager, job),
            strict=True,
        )
    )
    terms = terms_for(values)
    for moment in (since, until):
        if moment is not None and moment.utcoffset() is None:
            raise InvalidInput("since and until need a time zone, e.g. 2026-11-22T00:00:00Z")
    shown = {k: v for k, v in values.items() if v}
    _audited_read(gw, principal, "entries", start=start, limit=limit, filters=shown)
    log = gw.audit.log
    with db.reading(gw.db) as conn:
        size = log.size(conn)
        if latest:
            rows = log.query(
                conn, terms=terms, since=since, until=until, limit=limit, descending=True
            )
        else:
            rows = log.query(
                conn, terms=terms, since=since, until=until, after=start - 1, limit=limit
            )
    return {"tree_size": size, "items": [_item(i, b) for i, b in rows]}


@router.get("/checkpoint", response_model=Checkpoint)
def checkpoint(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """A signed checkpoint covering every entry committed before the request."""
    _audited_read(gw, principal, "checkpoint")
    with db.reading(gw.db) as conn:
        size = gw.audit.log.size(conn)
    committed = gw.audit.committer.checkpoint(size)
    return {"checkpoint": committed.checkpoint, "tree_size": committed.checkpoint_size}


@router.get("/keys", response_model=AuditKeys)
def keys(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """The log's verifier keys (current first, then rotated-out ones) and accepted witnesses.

    Public keys: any authenticated caller may read them (an analyst checks the receipt of its
    own result with them); the read is audited like every other."""
    gw.audit.record_durable(
        type="audit.read",
        principal=principal,
        action="read",
        target="audit:keys",
        allowed=True,
        details={"public": True},
    )
    log = gw.audit.log
    return {
        "origin": log.origin,
        "current": log.verifier.vkey,
        "vkeys": [v.vkey for v in log.verifiers],
        "witnesses": gw.settings.audit_witnesses.split(),
    }


@router.get("/proofs/inclusion", response_model=InclusionProof)
def inclusion(
    gw: GatewayDep,
    principal: PrincipalDep,
    index: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    size: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None,
) -> dict[str, Any]:
    _audited_read(gw, principal, "proof", index=index)
    log = gw.audit.log
    with db.reading(gw.db) as conn:
        current = log.size(conn)
        tree_size = size if size is not None else current
        if index >= tree_size or tree_size > current:
            raise InvalidInput("index must be below size, and size at most the log's size")
        proof = log.inclusion_proof(conn, index, tree_size)
        leaf = leaf_hash(log.entry(conn, index))
    return {
        "index": index,
        "tree_size": tree_size,
        "leaf_hash": leaf.hex(),
        "proof": [p.hex() for p in proof],
    }


@router.get("/proofs/consistency", response_model=ConsistencyProof)
def consistency(
    gw: GatewayDep,
    principal: PrincipalDep,
    first: Annotated[int, Query(ge=0, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> dict[str, Any]:
    _audited_read(gw, principal, "proof", first=first, second=second)
    log = gw.audit.log
    with db.reading(gw.db) as conn:
        if first > second or second > log.size(conn):
            raise InvalidInput("need first <= second <= the log's size")
        proof = log.consistency_proof(conn, first, second)
    return {"first": first, "second": second, "proof": [p.hex() for p in proof]}


@router.get("/stats", response_model=CallStats)
def stats(
    gw: GatewayDep,
    principal: PrincipalDep,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    department: Filter = None,
    dataset: Filter = None,
    template: Filter = None,
) -> dict[str, Any]:
    """Calls per day × department × dataset × template (调用次数), allowed and denied."""
    _audited_read(gw, principal, "stats", department=department, dataset=dataset)
    with db.reading(gw.db) as conn:
        rows = call_stats(
            gw.audit.log,
            conn,
            since=since,
            until=until,
            department=department,
            dataset=dataset,
            template=template,
        )
        quality = profiles.summaries(conn)
        findings = inbox.counts(conn)
        size = gw.audit.log.size(conn)
        opened = [i for i in usage_counts(conn, size) if i["kind"] == "open"]
    return {
        "items": rows,
        "quality": quality,  # the newest data-quality verdict per dataset
        "findings": findings,  # comparison findings per department: states, oldest open age
        "open_reads": opened,  # /open reads per day × caller × open dataset (counted summaries)
        "total": {
            "allowed": sum(r["allowed"] for r in rows),
            "denied": sum(r["denied"] for r in rows),
        },
    }


@router.get("/bundle")
def bundle(gw: GatewayDep, principal: PrincipalDep) -> FileResponse:
    """The whole log as an offline-verifiable bundle (JSON lines)."""
    _audited_read(gw, principal, "bundle", action="export")
    with db.reading(gw.db) as conn:
        size = gw.audit.log.size(conn)
    gw.audit.committer.checkpoint(size)  # the bundle ends in a signed checkpoint
    fd, name = tempfile.mkstemp(prefix="insitu-audit-", suffix=".jsonl")
    os.close(fd)
    path = Path(name)
    with db.reading(gw.db) as conn:
        gw.audit.log.export_bundle(conn, path)
    return FileResponse(
        path,
        media_type="application/jsonl",
        filename="audit-bundle.jsonl",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.post("/cosignatures", status_code=201)
def cosignatures(
    gw: GatewayDep,
    principal: PrincipalDep,
    checkpoint: Annotated[str, Body(embed=True, max_length=20_000)],
) -> dict[str, Any]:
    """Keep a witness's cosignature of one of our checkpoints (witness keys from settings)."""
    _audited_read(gw, principal, "cosignature", action="verify")
    witnesses = [witness_key(v) for v in gw.settings.audit_witnesses.split()]  # checked at start
    if not witnesses:
        raise InvalidInput("this gateway accepts no witnesses (INSITU_AUDIT_WITNESSES)")
    try:
        with gw.db.begin() as conn:
            stored = gw.audit.log.add_cosignature(conn, checkpoint, witnesses)
    except AuditError as exc:
        raise InvalidInput(str(exc)) from None
    return {"stored": stored}


@router.post("/witness-requests")
def witness_requests(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Ask the configured C2SP witnesses (INSITU_AUDIT_WITNESS_URLS) to cosign the newest
    checkpoint; keep the cosignatures by known witness keys (INSITU_AUDIT_WITNESSES)."""
    _audited_read(gw, principal, "cosignature", action="verify")
    if not gw.settings.audit_witness_urls.split():
        raise InvalidInput("this gateway names no witnesses (INSITU_AUDIT_WITNESS_URLS)")
    outcomes = request_cosignatures(gw)
    return {"witnesses": [asdict(o) for o in outcomes]}
