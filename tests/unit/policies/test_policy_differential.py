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

from bench.policy import generate_requests, generate_rules, reference_allows
from policies import PolicyEngine, Request
from policies.enforcer import new_enforcer
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
def test_engine_matches_plain_enforcer_on_random_rules(seed: int) -> None:
    rng = random.Random(seed)
    rules = [kit.random_rule(rng) for _ in range(1000)]
    engine = PolicyEngine.from_rules(rules, version=seed)
    requests = [kit.random_request(rng) for _ in range(400)]
    allowed = check_sample(engine, new_enforcer(rules), requests)
    assert 30 < allowed < 370, "the sample should exercise both outcomes"


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
