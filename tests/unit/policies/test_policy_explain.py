"""Denials are explained with a reason code and the dataset; the indexed explanation equals a
brute-force reading of every rule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies import Decision, PolicyBug, PolicyEngine, ReasonCode, Request, Rule
from tests.unit.policies import policy_testkit as kit

OBJ = "data/conditional/general/tax.filings"


def engine_of(*rules: Rule) -> PolicyEngine:
    return PolicyEngine.from_rules(rules, version=4)


def ask(engine: PolicyEngine, *roles: str, obj: str = OBJ, purpose: str = "none") -> Decision:
    return engine.decide(Request(roles, "stats", obj, "query:aggregate", purpose))


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        (Rule("analyst", "*", "template", "read"), ReasonCode.MISSING_ROLE),
        (Rule("analyst", "market", "data/*", "query:aggregate"), ReasonCode.MISSING_ROLE),
        (Rule("analyst", "*", "data/unconditional/*", "query:aggregate"), ReasonCode.SHARE_CLASS),
        (
            Rule("analyst", "*", "data/conditional/important/*", "query:aggregate"),
            ReasonCode.CLASSIFICATION,
        ),
        (
            Rule("analyst", "stats", "data/conditional/general/tax.other", "query:aggregate"),
            ReasonCode.DATASET,
        ),
        (
            Rule("analyst", "*", "data/conditional/*", "query:aggregate", "stated"),
            ReasonCode.MISSING_PURPOSE,
        ),
    ],
)
def test_each_stage_of_a_denial_has_its_code(rule: Rule, code: ReasonCode) -> None:
    decision = ask(engine_of(rule), "analyst")
    assert not decision.allowed and decision.rule is None
    assert decision.reason_code is code
    assert decision.dataset == "tax.filings"
    assert decision.policy_version == 4
    assert "tax.filings" in decision.reason


@pytest.mark.parametrize(
    ("purpose", "code"),
    [
        ("none", ReasonCode.MISSING_PURPOSE),
        ("stated", ReasonCode.MISSING_APPROVAL),
        ("expired", ReasonCode.EXPIRED_PURPOSE),
    ],
)
def test_an_unmet_purpose_condition_says_what_the_purpose_lacks(
    purpose: str, code: ReasonCode
) -> None:
    rule = Rule("analyst", "*", "data/conditional/*", "query:aggregate", "approved")
    decision = ask(engine_of(rule), "analyst", purpose=purpose)
    assert decision.reason_code is code
    assert rule.text() in decision.reason
    assert "an approved purpose" in decision.reason
    assert ask(engine_of(rule), "analyst", purpose="approved").allowed


def test_a_stated_condition_is_met_by_an_approved_purpose_but_not_an_expired_one() -> None:
    engine = engine_of(Rule("analyst", "*", "data/*", "query:aggregate", "stated"))
    assert ask(engine, "analyst", purpose="stated").allowed
    assert ask(engine, "analyst", purpose="approved").allowed
    assert ask(engine, "analyst", purpose="expired").reason_code is ReasonCode.EXPIRED_PURPOSE


def test_the_deepest_reason_over_the_roles_is_reported() -> None:
    engine = engine_of(
        Rule("auditor", "*", "data/none/*", "query:aggregate"),
        Rule("analyst", "*", "data/conditional/core/*", "query:aggregate"),
    )
    decision = ask(engine, "auditor", "analyst")
    assert decision.reason_code is ReasonCode.CLASSIFICATION
    assert "role analyst" in decision.reason


def test_an_allow_is_granted_and_names_its_dataset() -> None:
    decision = ask(engine_of(Rule("analyst", "*", "data/*", "query:aggregate")), "analyst")
    assert decision.reason_code is ReasonCode.GRANTED and decision.dataset == "tax.filings"


def test_a_named_object_has_no_dataset() -> None:
    decision = engine_of().decide(Request(("analyst",), "tax", "job", "submit"))
    assert decision.dataset is None and decision.reason_code is ReasonCode.MISSING_ROLE


def test_decision_codes_must_agree_with_the_outcome() -> None:
    with pytest.raises(PolicyBug):
        Decision(False, None, "x", 1, reason_code=ReasonCode.GRANTED)
    with pytest.raises(PolicyBug):
        Decision(True, "p, a, *, job, read", "x", 1, reason_code=ReasonCode.SHARE_CLASS)
    assert Decision(False, None, "x", 1).reason_code is ReasonCode.MISSING_ROLE
    assert Decision(False, None, "x", 1, reason_code="expired_purpose").reason_code == (  # type: ignore[arg-type]
        ReasonCode.EXPIRED_PURPOSE
    )


def brute_force_code(rules: list[Rule], request: Request) -> ReasonCode:
    """Read every rule: how far did the closest role get?"""
    best = 0
    parts = request.obj.split("/")
    for role in request.roles:
        mine = [
            r
            for r in rules
            if r.role == role
            and r.action == request.action
            and r.department in ("*", request.department)
        ]
        stage = 0
        if mine and request.obj.startswith("data/"):
            stage = 1

            def reaches(r: Rule, depth: int) -> bool:
                segments = r.obj.split("/")
                return r.obj.startswith("data/") and all(
                    i >= len(segments) or segments[i] in ("*", parts[i])
                    for i in range(1, depth + 1)
                )

            if any(reaches(r, 1) for r in mine):
                stage = 2
            if any(reaches(r, 2) for r in mine):
                stage = 3
            if any(kit.key_match(request.obj, r.obj) for r in mine):
                stage = 4
        best = max(best, stage)
    if best == 4:
        return {
            "none": ReasonCode.MISSING_PURPOSE,
            "stated": ReasonCode.MISSING_APPROVAL,
            "expired": ReasonCode.EXPIRED_PURPOSE,
        }[request.purpose]
    return [
        ReasonCode.MISSING_ROLE,
        ReasonCode.SHARE_CLASS,
        ReasonCode.CLASSIFICATION,
        ReasonCode.DATASET,
    ][best]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=10_000))
def test_the_explanation_equals_a_brute_force_reading_of_every_rule(seed: int) -> None:
    rng = random.Random(seed)
    rules = [kit.random_rule(rng) for _ in range(rng.randint(0, 300))]
    engine = PolicyEngine.from_rules(rules, version=1)
    for _ in range(40):
        request = kit.random_request(rng)
        decision = engine.decide(request)
        if decision.allowed:
            assert decision.reason_code is ReasonCode.GRANTED
        else:
            assert decision.reason_code is brute_force_code(rules, request), request
