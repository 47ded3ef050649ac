"""Default deny in the real Casbin model: a request that rules come near to but none grants is
denied by the model's effect with its reason, not by an evaluation failure (fail closed would
hide a model that allows by default)."""

from __future__ import annotations

import pytest

from policies import PolicyEngine, ReasonCode, Request, Rule


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    rules = (
        Rule("analyst", "tax", "data/conditional/*", "query:aggregate", "approved"),
        Rule("analyst", "market", "job", "submit"),
    )
    return PolicyEngine.from_rules(rules, version=3)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (
            Request(
                ("analyst",),
                "tax",
                "data/conditional/important/tax.filings",
                "query:aggregate",
                purpose="none",
            ),
            ReasonCode.MISSING_PURPOSE,
        ),
        (
            Request(
                ("analyst",),
                "tax",
                "data/conditional/important/tax.filings",
                "query:aggregate",
                purpose="stated",
            ),
            ReasonCode.MISSING_APPROVAL,
        ),
        (Request(("analyst",), "tax", "job", "submit"), ReasonCode.MISSING_ROLE),
        (Request(("auditor",), "market", "job", "submit"), ReasonCode.MISSING_ROLE),
    ],
)
def test_what_no_rule_grants_is_denied_with_its_reason(
    engine: PolicyEngine, request_: Request, code: ReasonCode
) -> None:
    decision = engine.decide(request_)
    assert not decision.allowed
    assert decision.reason_code is code


def test_what_a_rule_grants_is_allowed(engine: PolicyEngine) -> None:
    decision = engine.decide(
        Request(
            ("analyst",),
            "tax",
            "data/conditional/important/tax.filings",
            "query:aggregate",
            purpose="approved",
        )
    )
    assert decision.allowed and decision.reason_code is ReasonCode.GRANTED
