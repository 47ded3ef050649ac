"""The FastEnforcer-backed engine decides exactly like a plain, scanning casbin.Enforcer."""

from __future__ import annotations

import random

import pytest

from policies import PolicyEngine
from policies.enforcer import new_enforcer
from tests.unit.policies import policy_testkit as kit


@pytest.mark.parametrize("seed", [1, 2])
def test_engine_matches_plain_enforcer_on_random_rules(seed: int) -> None:
    rng = random.Random(seed)
    rules = [kit.random_rule(rng) for _ in range(1000)]
    engine = PolicyEngine.from_rules(rules, version=seed)
    plain = new_enforcer(rules, fast=False)
    allowed = 0
    for _ in range(300):
        req = kit.random_request(rng)
        expected = any(
            plain.enforce(role, req.department, req.obj, req.action) for role in req.roles
        )
        decision = engine.decide(req)
        assert decision.allowed is expected, req
        if decision.allowed:
            allowed += 1
            granting = [r for r in engine.rules() if r.text() == decision.rule]
            assert len(granting) == 1
            assert any(kit.grants(granting[0], role, req) for role in req.roles)
    assert 30 < allowed < 270, "the sample should exercise both outcomes"
