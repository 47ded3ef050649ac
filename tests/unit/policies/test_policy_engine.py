"""PolicyEngine: explained decisions, department domains, fail-closed evaluation, immutability."""

from __future__ import annotations

import logging
import threading
from typing import NoReturn

import pytest

from policies import (
    InvalidRule,
    PolicyBug,
    PolicyDenied,
    PolicyEngine,
    Request,
    Rule,
    default_rules,
)
from policies.enforcer import EVALUATION_FAILED


def request(
    *roles: str, department: str = "tax", obj: str = "job", action: str = "submit"
) -> Request:
    return Request(roles=roles, department=department, obj=obj, action=action)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine.from_rules(default_rules(), version=7)


def test_allow_names_the_matching_rule_and_version(engine: PolicyEngine) -> None:
    decision = engine.decide(request("analyst"))
    assert decision.allowed
    assert decision.rule == "p, analyst, *, job, submit"
    assert decision.policy_version == 7
    assert "p, analyst, *, job, submit" in decision.reason


def test_allow_names_the_wildcard_rule_for_data(engine: PolicyEngine) -> None:
    obj = "data/conditional/important/tax.filings"
    decision = engine.decide(
        Request(("analyst",), "tax", obj, "query:aggregate", purpose="approved")
    )
    assert decision.dataset == "tax.filings"
    assert decision.rule == "p, analyst, *, data/conditional/important/*, query:aggregate, approved"


def test_denial_reason_names_roles_department_action_and_object(engine: PolicyEngine) -> None:
    decision = engine.decide(request("analyst", "auditor", obj="template", action="approve"))
    assert not decision.allowed
    assert decision.rule is None
    assert decision.reason == (
        "no rule grants role(s) analyst, auditor in department tax "
        "the action 'approve' on 'template'"
    )


def test_any_role_suffices(engine: PolicyEngine) -> None:
    decision = engine.decide(request("auditor", "analyst"))
    assert decision.allowed
    assert decision.rule == "p, analyst, *, job, submit"


def test_no_roles_is_denied(engine: PolicyEngine) -> None:
    decision = engine.decide(request())
    assert not decision.allowed
    assert "role(s) (none)" in decision.reason


def test_rule_naming_a_department_grants_only_in_that_department() -> None:
    rules = [Rule("data_owner", "market", "dataset", "register")]
    engine = PolicyEngine.from_rules(rules, version=1)
    owner = {"obj": "dataset", "action": "register"}
    assert engine.decide(request("data_owner", department="market", **owner)).allowed
    denied = engine.decide(request("data_owner", department="tax", **owner))
    assert not denied.allowed
    assert "department tax" in denied.reason


def test_role_names_match_exactly_not_by_prefix() -> None:
    engine = PolicyEngine.from_rules([Rule("analyst", "*", "job", "submit")], version=1)
    assert not engine.decide(request("analyst_lead")).allowed
    assert not engine.decide(request("analys")).allowed


def test_require_returns_the_allow_and_raises_the_denial(engine: PolicyEngine) -> None:
    assert engine.require(request("analyst")).allowed
    with pytest.raises(PolicyDenied) as caught:
        engine.require(request("auditor"))
    assert caught.value.decision.allowed is False
    assert str(caught.value) == caught.value.decision.reason


def test_exception_inside_casbin_is_a_denial(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = PolicyEngine.from_rules(default_rules(), version=3)

    def boom(*args: object) -> NoReturn:
        raise RuntimeError("matcher exploded")

    monkeypatch.setattr(engine._enforcer, "enforce_ex", boom)
    with caplog.at_level(logging.ERROR, logger="policies.enforcer"):
        decision = engine.decide(request("analyst"))
    assert decision.allowed is False
    assert decision.rule is None
    assert decision.reason == EVALUATION_FAILED
    assert decision.policy_version == 3
    assert "matcher exploded" in caplog.text
    with pytest.raises(PolicyDenied):
        engine.require(request("analyst"))


def test_casbin_explaining_an_allow_with_a_foreign_rule_is_a_denial(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = PolicyEngine.from_rules(default_rules(), version=1)

    def forged(*args: object) -> tuple[bool, list[str]]:
        return True, ["admin", "*", "policy", "admin"]

    monkeypatch.setattr(engine._enforcer, "enforce_ex", forged)
    assert engine.decide(request("analyst")).reason == EVALUATION_FAILED


def test_decide_of_a_non_request_is_a_denial(engine: PolicyEngine) -> None:
    decision = engine.decide("analyst, tax, job, submit")  # type: ignore[arg-type]
    assert decision.reason == EVALUATION_FAILED


def test_engine_is_immutable_and_never_persists(engine: PolicyEngine) -> None:
    with pytest.raises(AttributeError):
        engine._version = 8
    with pytest.raises(PolicyBug):
        engine._enforcer.save_policy()
    with pytest.raises(PolicyBug):
        engine._enforcer.add_policy("analyst", "*", "policy", "approve")
    assert not engine.decide(request("analyst", obj="policy", action="approve")).allowed


def test_rules_are_kept_in_order_without_duplicates() -> None:
    a, b = Rule("analyst", "*", "job", "submit"), Rule("auditor", "*", "audit", "read")
    engine = PolicyEngine.from_rules([a, b, a], version=2)
    assert engine.rules() == (a, b)
    assert engine.version == 2
    assert repr(engine) == "PolicyEngine(version=2, rules=2)"


def test_empty_policy_denies_everything() -> None:
    assert not PolicyEngine.from_rules([], version=0).decide(request("analyst")).allowed


@pytest.mark.parametrize("version", [-1, True, "1", 1.0])
def test_bad_version_is_refused(version: object) -> None:
    with pytest.raises(InvalidRule, match="version"):
        PolicyEngine.from_rules([], version=version)  # type: ignore[arg-type]


def test_text_instead_of_rules_is_refused() -> None:
    with pytest.raises(InvalidRule, match="parse_rules"):
        PolicyEngine.from_rules(["p, analyst, *, job, submit"], version=1)  # type: ignore[list-item]


def test_concurrent_decisions_match_sequential_ones(engine: PolicyEngine) -> None:
    requests = [
        request(role, obj=obj, action=action)
        for role in ("analyst", "auditor", "data_owner")
        for obj, action in [("job", "submit"), ("audit", "read"), ("template", "approve")]
    ]
    expected = [engine.decide(r) for r in requests]
    failures: list[str] = []

    def worker() -> None:
        for _ in range(20):
            for req, want in zip(requests, expected, strict=True):
                if engine.decide(req) != want:
                    failures.append(f"{req} decided differently")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
