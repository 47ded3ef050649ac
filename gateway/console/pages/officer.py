"""The security officer's pages: the live policy as a table, a proposal (rules added and removed)
with its impact diff, four-eyes approval, history, and a decision checked with its explanation.

`gateway.policy.admin` proposes and approves (a second officer, compare-and-set on the base
version); `gateway.policy.reads` and `gateway.policy.check` read and explain. The console adds
no rule: a proposer approving its own proposal is refused there, and shown here.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import RedirectResponse

from gateway.console.web import Caller, ConsoleRoute, Form, call, caller, gateway, page, posted
from gateway.errors import InvalidInput
from gateway.policy import admin as policy_admin
from gateway.policy import reads as policy_reads
from gateway.policy.check import check as check_decision
from policies import PolicyError, Rule, parse_rules

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)
Who = Annotated[Caller, Depends(caller)]
RULE_FIELDS = ("role", "department", "object", "action", "purpose")


def _rules(texts: list[str]) -> list[Rule]:
    try:
        return parse_rules("\n".join(t for t in texts if "\n" not in t))
    except PolicyError as exc:
        raise InvalidInput(f"not a policy rule: {exc}") from None


@router.get("/policy")
def policy_page(request: Request, who: Who) -> Response:
    current = policy_reads.current(gateway(request), who.principal, version=None)
    rules = list(zip(current["rules"], _rules(current["rules"]), strict=True))
    return page(request, who, "policy.html", version=current["version"], rules=rules)


def _added(form: Form) -> list[Rule]:
    values = {f: form.get(f"add.{f}").strip() for f in RULE_FIELDS}
    if not any(values[f] for f in RULE_FIELDS[:4]):
        return []
    try:
        return [
            Rule(
                values["role"],
                values["department"] or "*",
                values["object"],
                values["action"],
                values["purpose"] or "*",
            )
        ]
    except PolicyError as exc:
        raise InvalidInput(f"the rule to add is not valid: {exc}") from None


@router.post("/policy/proposals")
async def propose(request: Request, who: Who) -> Response:
    form = await posted(request, who)
    add, remove = _added(form), _rules(form.getlist("remove"))
    if not add and not remove:
        raise InvalidInput("a proposal adds or removes at least one rule")
    base = form.get("base_version")
    proposal = await call(
        policy_admin.propose,
        gateway(request),
        who.principal,
        add=add,
        remove=remove,
        note=form.get("note")[:500],
        base_version=int(base) if base.isdigit() else None,
    )
    return RedirectResponse(f"/console/policy/proposals/{proposal['id']}", status_code=303)


@router.get("/policy/proposals")
def proposals_page(request: Request, who: Who) -> Response:
    gw = gateway(request)
    listed = policy_reads.list_proposals(gw, who.principal, status=None)
    history = policy_reads.history(gw, who.principal)
    return page(request, who, "proposals.html", proposals=listed["items"], history=history["items"])


@router.post("/policy/rollback")
async def rollback(request: Request, who: Who) -> Response:
    """Propose an earlier version's rules as the next version (four-eyes like any change)."""
    form = await posted(request, who)
    version = form.get("version")
    if not version.isdigit():
        raise InvalidInput("choose the version to roll back to")
    proposal = await call(
        policy_admin.rollback,
        gateway(request),
        who.principal,
        to_version=int(version),
        note=form.get("note")[:500],
    )
    return RedirectResponse(f"/console/policy/proposals/{proposal['id']}", status_code=303)


@router.get("/policy/diff")
def diff_page(request: Request, who: Who, base: int, to: int) -> Response:
    shown = policy_reads.diff(gateway(request), who.principal, from_version=base, to_version=to)
    return page(request, who, "diff.html", diff=shown)


def _proposal_id(value: str) -> str:
    if len(value) != 36 or not all(c in "0123456789abcdef-" for c in value):
        raise InvalidInput("a proposal id is a UUID")
    return value


@router.get("/policy/proposals/{proposal_id}")
def proposal_page(request: Request, who: Who, proposal_id: str) -> Response:
    shown = policy_reads.show_proposal(gateway(request), who.principal, _proposal_id(proposal_id))
    return page(request, who, "proposal.html", proposal=shown)


@router.post("/policy/proposals/{proposal_id}/decision")
async def decide(request: Request, who: Who, proposal_id: str) -> Response:
    form = await posted(request, who)
    decide_fn = policy_admin.approve if form.get("decision") == "approve" else policy_admin.reject
    pid = _proposal_id(proposal_id)
    await call(decide_fn, gateway(request), who.principal, pid, comment=form.get("comment")[:500])
    return RedirectResponse(f"/console/policy/proposals/{pid}", status_code=303)


def _question(form: Form) -> dict[str, Any]:
    what = form.get("what")
    name = form.get("name").strip() or None
    version = form.get("version")
    return {
        "roles": [r.strip() for r in form.get("roles").split(",") if r.strip()],
        "department": form.get("department").strip(),
        "subject": form.get("subject").strip() or None,
        "obj": name if what == "object" else None,
        "dataset": name if what == "dataset" else None,
        "template": name if what == "template" else None,
        "version": int(version) if version.isdigit() else None,
        "action": form.get("action").strip() or None,
        "purpose": form.get("purpose").strip() or None,
        "purposes": [p for p in form.getlist("purpose_id") if p][:20],
    }


@router.get("/policy/check")
def check_page(request: Request, who: Who) -> Response:
    return page(request, who, "check.html", answer=None, asked={})


@router.post("/policy/check")
async def check(request: Request, who: Who) -> Response:
    form = await posted(request, who)
    question = _question(form)
    if not question["roles"]:
        raise InvalidInput("name at least one role")
    answer = await call(check_decision, gateway(request), who.principal, **question)
    asked = {n: form.get(n) for n in ("roles", "department", "what", "name", "action", "purpose")}
    return page(request, who, "check.html", answer=answer, asked=asked)
