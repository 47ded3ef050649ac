"""/v1/audit: entries, the signed checkpoint, inclusion and consistency proofs.

Auditors' own reads are audited (`audit.read`).
"""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import APIRouter, Query

from audit import leaf_hash
from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.context import Gateway
from gateway.errors import InvalidInput

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def _audited_read(gw: Gateway, principal: Principal, what: str, **details: Any) -> None:
    decision = require(gw, principal, "audit", "read", event="audit.denied", target=f"audit:{what}")
    with gw.db.begin() as conn:
        gw.audit.record(
            conn,
            type="audit.read",
            principal=principal,
            action="read",
            target=f"audit:{what}",
            allowed=True,
            rule=decision.rule,
            details={**details, "policy_version": decision.policy_version},
        )


@router.get("/entries")
def entries(
    gw: GatewayDep,
    principal: PrincipalDep,
    start: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    _audited_read(gw, principal, "entries", start=start, limit=limit)
    log = gw.audit.log
    with gw.db.connect() as conn:
        size = log.size(conn)
        bodies = log.entries(conn, start, min(size, start + limit))
    items = [
        {
            "index": start + offset,
            "leaf_hash": leaf_hash(body).hex(),
            "body": base64.b64encode(body).decode(),
            "event": json.loads(body),  # the canonical encoding is JSON: shown as stored
        }
        for offset, body in enumerate(bodies)
    ]
    return {"tree_size": size, "items": items}


@router.get("/checkpoint")
def checkpoint(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    _audited_read(gw, principal, "checkpoint")
    with gw.db.begin() as conn:
        note = gw.audit.log.checkpoint(conn)
    return {"checkpoint": note}


@router.get("/proofs/inclusion")
def inclusion(
    gw: GatewayDep,
    principal: PrincipalDep,
    index: Annotated[int, Query(ge=0)],
    size: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    _audited_read(gw, principal, "proof", index=index)
    log = gw.audit.log
    with gw.db.connect() as conn:
        tree_size = size if size is not None else log.size(conn)
        if index >= tree_size or tree_size > log.size(conn):
            raise InvalidInput("index must be below size, and size at most the log's size")
        proof = log.inclusion_proof(conn, index, tree_size)
        leaf = leaf_hash(log.entry(conn, index))
    return {
        "index": index,
        "tree_size": tree_size,
        "leaf_hash": leaf.hex(),
        "proof": [p.hex() for p in proof],
    }


@router.get("/proofs/consistency")
def consistency(
    gw: GatewayDep,
    principal: PrincipalDep,
    first: Annotated[int, Query(ge=1)],
    second: Annotated[int, Query(ge=1)],
) -> dict[str, Any]:
    _audited_read(gw, principal, "proof", first=first, second=second)
    log = gw.audit.log
    with gw.db.connect() as conn:
        if first > second or second > log.size(conn):
            raise InvalidInput("need first <= second <= the log's size")
        proof = log.consistency_proof(conn, first, second)
    return {"first": first, "second": second, "proof": [p.hex() for p in proof]}
