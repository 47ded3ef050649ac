"""/v1/policies: the live rules, four-eyes proposals, history, diff, export/import, checks.

Rules travel as typed objects (`role`, `department`, `object`, `action`, optional `purpose`),
each validated by `policies.Rule`; there is no field for matcher text anywhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.bounds import MAX_VERSION
from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.openapi import problems
from gateway.errors import InvalidInput
from gateway.policy import admin as policy_admin
from gateway.policy import reads as policy_reads
from gateway.policy.check import check as check_decision
from policies import MAX_DOCUMENT_BYTES, Rule

PolicyVersion = Annotated[int | None, Query(ge=1, le=MAX_VERSION)]

router = APIRouter(prefix="/v1/policies", tags=["policy"])

Name = Annotated[str, Field(min_length=1, max_length=64)]
#: Free text (notes, comments) shown to other officers in terminals and the audit log: no
#: control characters, so an escape sequence cannot rewrite what the approver sees.
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Text = Annotated[str, Field(default="", max_length=500, pattern=NO_CONTROL)]


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Name
    department: Name
    object: str = Field(min_length=1, max_length=200)
    action: str = Field(min_length=1, max_length=32)
    purpose: str = Field(default="*", max_length=16)

    def rule(self) -> Rule:
        return Rule(self.role, self.department, self.object, self.action, self.purpose)


class ProposalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: list[RuleBody] = Field(default_factory=list, max_length=policy_admin.MAX_CHANGES)
    remove: list[RuleBody] = Field(default_factory=list, max_length=policy_admin.MAX_CHANGES)
    note: Text = ""
    base_version: int | None = Field(default=None, ge=0, le=MAX_VERSION)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: Text = ""


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=MAX_VERSION)
    note: Text = ""


class CheckRequest(BaseModel):
    """One question; attributes (share class, classification, kind) are not accepted here."""

    model_config = ConfigDict(extra="forbid")
    roles: list[Name] = Field(min_length=1, max_length=20)
    department: Name
    subject: str | None = Field(default=None, max_length=128)
    object: str | None = Field(default=None, max_length=200)
    dataset: str | None = Field(default=None, max_length=130)
    template: str | None = Field(default=None, max_length=100)
    version: int | None = Field(default=None, ge=1, le=MAX_VERSION)
    action: str | None = Field(default=None, max_length=32)
    purpose: str | None = Field(default=None, max_length=500)
    purposes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=20
    )


@router.get("", responses=problems(404))
def current_policy(
    gw: GatewayDep,
    principal: PrincipalDep,
    version: PolicyVersion = None,
) -> dict[str, Any]:
    return policy_reads.current(gw, principal, version=version)


@router.post("", status_code=201, responses=problems(409))
def propose(body: ProposalBody, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Propose a batch of changes; a second security officer must approve it."""
    if not body.add and not body.remove:
        raise InvalidInput("a proposal adds or removes at least one rule")
    return policy_admin.propose(
        gw,
        principal,
        add=[r.rule() for r in body.add],
        remove=[r.rule() for r in body.remove],
        note=body.note,
        base_version=body.base_version,
    )


@router.post("/check")
def check(body: CheckRequest, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return check_decision(
        gw,
        principal,
        roles=list(body.roles),
        department=body.department,
        subject=body.subject,
        obj=body.object,
        dataset=body.dataset,
        template=body.template,
        version=body.version,
        action=body.action,
        purpose=body.purpose,
        purposes=body.purposes,
    )


@router.get("/history")
def history(gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return policy_reads.history(gw, principal)


@router.get("/diff", responses=problems(404))
def diff(
    gw: GatewayDep,
    principal: PrincipalDep,
    from_version: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
    to_version: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION)],
) -> dict[str, Any]:
    return policy_reads.diff(gw, principal, from_version=from_version, to_version=to_version)


@router.get("/export", responses=problems(404))
def export(
    gw: GatewayDep,
    principal: PrincipalDep,
    version: PolicyVersion = None,
) -> PlainTextResponse:
    text = policy_reads.export(gw, principal, version=version)
    return PlainTextResponse(text, media_type="application/yaml")


async def _policy_document(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"a policy document is at most {MAX_DOCUMENT_BYTES} bytes")
    return body


@router.post("/import", status_code=201, responses=problems(409))
def import_policy(
    gw: GatewayDep,
    principal: PrincipalDep,
    document: Annotated[bytes, Depends(_policy_document)],
    note: Annotated[str, Query(max_length=500, pattern=NO_CONTROL)] = "",
) -> dict[str, Any]:
    """Propose the rules of a YAML policy document as the next version (four-eyes)."""
    return policy_admin.import_document(gw, principal, document, note=note)


@router.post("/rollback", status_code=201, responses=problems(404, 409))
def rollback(body: RollbackBody, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Propose an earlier version's rules as the next version (four-eyes)."""
    return policy_admin.rollback(gw, principal, to_version=body.version, note=body.note)


@router.get("/proposals")
def proposals(
    gw: GatewayDep,
    principal: PrincipalDep,
    status: Annotated[Literal["proposed", "approved", "rejected", "stale"] | None, Query()] = None,
) -> dict[str, Any]:
    return policy_reads.list_proposals(gw, principal, status=status)


@router.get("/proposals/{proposal_id}")
def proposal(proposal_id: str, gw: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    return policy_reads.show_proposal(gw, principal, _proposal_id(proposal_id))


@router.post("/proposals/{proposal_id}/approvals", status_code=201, responses=problems(409))
def approve(
    proposal_id: str, body: DecisionBody, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    return policy_admin.approve(gw, principal, _proposal_id(proposal_id), comment=body.comment)


@router.post("/proposals/{proposal_id}/rejections", status_code=201, responses=problems(409))
def reject(
    proposal_id: str, body: DecisionBody, gw: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    return policy_admin.reject(gw, principal, _proposal_id(proposal_id), comment=body.comment)


def _proposal_id(value: str) -> str:
    if len(value) != 36 or not all(c in "0123456789abcdef-" for c in value):
        raise InvalidInput("a proposal id is a UUID")
    return value
