"""The indexed engine decides exactly like the reference, scanning casbin.Enforcer.

A decision looks up candidate rules by (role, department, object pattern, action) and lets
Casbin's matcher decide over them; the reference evaluates the matcher against every line.
These tests fail if the index misses a rule that can match (e.g. if `object_patterns` forgot a
prefix or the `*` department) or lets one through that cannot.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from casbin.util import key_match
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.policy import generate_requests, generate_rules, reference_allows
from policies import ACTIONS, PURPOSE_STATES, InvalidRule, PolicyEngine, Request, Rule, parse_rules
from policies.enforcer import model_text, new_enforcer
from policies.vocabulary import object_patterns
from tests.unit.policies import policy_testkit as kit


def check_sample(engine: PolicyEngine, reference: Any, requests: list[Request]) -> int:
    allowed = 0
    for req in requests:
        decision = engine.decide(req)
        assert decision.allowed is reference_allows(reference, req), req
        if decision.allowed:
            allowed += 1
            granting = [r for r in engine.rules() if r.text() == decision.rule]
            assert len(granting) == 1
            assert any(kit.grants(granting[0], role, req) for role in req.roles)
    return allowed


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.slow
def test_engine_matches_plain_enforcer_on_random_rules(seed: int) -> None:
    rng = random.Random(seed)
    rules = [kit.random_rule(rng) for _ in range(1000)]
    engine = PolicyEngine.from_rules(rules, version=seed)
    requests = [kit.random_request(rng) for _ in range(400)]
    allowed = check_sample(engine, new_enforcer(rules), requests)
    assert 30 < allowed < 370, "the sample should exercise both outcomes"


@pytest.mark.slow
def test_engine_matches_plain_enforcer_on_a_large_policy() -> None:
    rules = generate_rules(20_000, seed=5)
    engine = PolicyEngine.from_rules(rules, version=1)
    requests = generate_requests(rules, 60, seed=6)
    allowed = check_sample(engine, new_enforcer(rules), requests)
    assert 5 < allowed < 55


def test_object_patterns_are_exactly_the_rule_objects_key_match_accepts() -> None:
    for obj in kit.data_objects() + sorted(kit.OBJECTS):
        matching = {p for p in kit.data_patterns() + sorted(kit.OBJECTS) if key_match(obj, p)}
        assert matching == set(object_patterns(obj)), obj


@st.composite
def policies_with_requests(draw: st.DrawFn) -> tuple[list[Rule], list[Request]]:
    """Rules with arbitrary names, and requests aimed at them: the role (alone or mixed with
    others) of a rule, its department or another one (a `*` rule meets every department), an
    object its wildcard does or does not cover, any action and any purpose state."""
    rules = draw(st.lists(kit.rules, min_size=1, max_size=25))
    roles = sorted({r.role for r in rules} | {"nobody"})
    departments = sorted({r.department for r in rules if r.department != "*"} | {"elsewhere"})
    objects = kit.data_objects() + sorted(kit.OBJECTS)
    actions = sorted(ACTIONS)
    requests = []
    for _ in range(draw(st.integers(1, 12))):
        rule = draw(st.sampled_from(rules))
        covered = [o for o in objects if key_match(o, rule.obj)] or objects
        requests.append(
            Request(
                roles=(rule.role, *draw(st.lists(st.sampled_from(roles), max_size=2))),
                department=(
                    rule.department
                    if rule.department != "*" and draw(st.booleans())
                    else draw(st.sampled_from(departments))
                ),
                obj=draw(st.sampled_from(covered if draw(st.booleans()) else objects)),
                action=rule.action if draw(st.booleans()) else draw(st.sampled_from(actions)),
                purpose=draw(st.sampled_from(PURPOSE_STATES)),
            )
        )
    return rules, requests


@settings(max_examples=40, deadline=None)
@given(policies_with_requests())
def test_engine_never_decides_otherwise_than_the_plain_enforcer(
    case: tuple[list[Rule], list[Request]],
) -> None:
    rules, requests = case
    check_sample(PolicyEngine.from_rules(rules, version=1), new_enforcer(rules), requests)


def test_no_role_inheritance_can_enter_the_policy() -> None:
    """The model has no role definition (`g`): a role is only what the token says, in the
    caller's department. A `g` line (even one scoped to a domain) is not a rule, and the
    YAML form has no field for one, so the index never has to follow inheritance."""
    assert "[role_definition]" not in model_text()
    for line in ("g, alice, analyst, market", "g, analyst, security_officer", "g2, a, b"):
        with pytest.raises(InvalidRule):
            parse_rules(line)
    for line in ("g, alice, security_officer, market, read", "g, a, b, *, job, read"):
        with pytest.raises(InvalidRule, match="starts with 'p,'"):
            parse_rules(line)
