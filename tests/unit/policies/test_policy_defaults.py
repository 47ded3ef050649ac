"""The packaged default policy, decided by real Casbin."""

from __future__ import annotations

import pytest

from policies import PolicyEngine, Request, default_rules, format_rules, parse_rules


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_rules(default_rules(), version=1)


ALLOWED = [
    ("analyst", "catalogue", "read"),
    ("analyst", "template", "read"),
    ("analyst", "template", "propose"),
    ("analyst", "job", "submit"),
    ("analyst", "job", "read"),
    ("analyst", "result", "read"),
    ("analyst", "budget", "read"),
    ("analyst", "data/unconditional/general/market.registry", "query:aggregate"),
    ("analyst", "data/unconditional/important/market.registry", "query:list"),
    ("analyst", "data/conditional/general/tax.filings", "query:aggregate"),
    ("analyst", "data/conditional/important/tax.filings", "query:aggregate"),
    ("analyst", "data/conditional/core/tax.filings", "query:dp"),
    ("analyst", "data/none/core/civil.residents", "query:verify"),
    ("analyst", "data/none/general/civil.residents", "query:dp"),
    ("data_owner", "catalogue", "read"),
    ("data_owner", "dataset", "register"),
    ("data_owner", "template", "read"),
    ("data_owner", "template", "approve"),
    ("data_owner", "job", "read"),
    ("data_owner", "budget", "read"),
    ("security_officer", "policy", "read"),
    ("security_officer", "policy", "propose"),
    ("security_officer", "policy", "approve"),
    ("auditor", "audit", "read"),
    ("auditor", "audit", "verify"),
    ("auditor", "audit", "export"),
    ("auditor", "catalogue", "read"),
    ("auditor", "template", "read"),
    ("admin", "catalogue", "admin"),
]

DENIED = [
    ("analyst", "template", "approve"),
    ("analyst", "dataset", "register"),
    ("analyst", "policy", "read"),
    ("analyst", "audit", "read"),
    ("analyst", "data/conditional/core/tax.filings", "query:aggregate"),
    ("analyst", "data/unconditional/core/market.registry", "query:aggregate"),
    ("analyst", "data/unconditional/core/market.registry", "query:list"),
    ("analyst", "data/none/general/civil.residents", "query:aggregate"),
    ("analyst", "data/none/general/civil.residents", "query:list"),
    ("analyst", "data/conditional/general/tax.filings", "query:list"),
    ("data_owner", "template", "propose"),
    ("data_owner", "result", "read"),
    ("data_owner", "data/unconditional/general/market.registry", "query:aggregate"),
    ("security_officer", "result", "read"),
    ("security_officer", "job", "read"),
    ("security_officer", "audit", "read"),
    ("auditor", "job", "submit"),
    ("auditor", "result", "read"),
    ("auditor", "policy", "propose"),
    ("auditor", "audit", "admin"),
    ("admin", "catalogue", "read"),
    ("admin", "policy", "approve"),
    ("admin", "policy", "admin"),
    ("admin", "result", "read"),
    ("visitor", "catalogue", "read"),
]


@pytest.mark.parametrize(("role", "obj", "action"), ALLOWED)
def test_default_policy_allows(engine: PolicyEngine, role: str, obj: str, action: str) -> None:
    purpose = "approved" if obj.startswith("data/conditional/") else "none"
    request = Request(roles=(role,), department="tax", obj=obj, action=action, purpose=purpose)
    decision = engine.decide(request)
    assert decision.allowed, decision.reason
    assert decision.rule is not None
    assert decision.rule.startswith(f"p, {role}, ")


@pytest.mark.parametrize(("role", "obj", "action"), DENIED)
def test_default_policy_denies(engine: PolicyEngine, role: str, obj: str, action: str) -> None:
    decision = engine.decide(Request(roles=(role,), department="tax", obj=obj, action=action))
    assert not decision.allowed
    assert decision.rule is None


@pytest.mark.parametrize("action", ["query:aggregate", "query:dp", "query:verify"])
def test_default_policy_needs_a_purpose_for_conditional_data(
    engine: PolicyEngine, action: str
) -> None:
    obj = "data/conditional/general/tax.filings"
    for purpose, allowed in [
        ("none", False),
        ("expired", False),
        ("stated", False),
        ("approved", True),
    ]:
        request = Request(("analyst",), "stats", obj, action, purpose=purpose)
        assert engine.decide(request).allowed is allowed, (purpose, action)


def test_default_policy_grants_nothing_for_aggregate_or_list_on_core_or_unshared_data() -> None:
    for rule in default_rules():
        if rule.action in {"query:aggregate", "query:list"}:
            _, share_class, classification, *_ = [*rule.obj.split("/"), "", ""]
            assert share_class in {"unconditional", "conditional"}, rule
            assert classification in {"general", "important"}, rule


def test_default_policy_file_round_trips_and_has_no_duplicates() -> None:
    rules = default_rules()
    assert len(set(rules)) == len(rules)
    assert parse_rules(format_rules(rules)) == rules
