"""Policy as YAML (export/import for git): a strict, alias-free round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import InvalidRule, Rule, default_rules, policy_from_yaml, policy_to_yaml
from policies.rules import diff_rules
from tests.unit.policies import policy_testkit as kit


@given(st.lists(kit.rules, max_size=30), st.none() | st.integers(min_value=0, max_value=10**6))
def test_yaml_round_trip(rules: list[Rule], version: int | None) -> None:
    assert policy_from_yaml(policy_to_yaml(rules, version=version)) == (rules, version)


def test_the_default_policy_exports_one_readable_line_per_rule() -> None:
    text = policy_to_yaml(default_rules(), version=1)
    lines = text.splitlines()
    assert lines[:3] == ["format: insitu-policy/1", "version: 1", "rules:"]
    assert len(lines) == 3 + len(default_rules())
    assert "{role: analyst, department: '*', object: job, action: submit}" in text
    assert "purpose: approved}" in text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("- just a list", "a mapping"),
        ("format: insitu-policy/2\nrules: []", "format: insitu-policy/1"),
        ("format: insitu-policy/1\nrules: {}", "rules must be a list"),
        ("format: insitu-policy/1\nversion: '3'\nrules: []", "version must be an integer"),
        ("format: insitu-policy/1\nversion: true\nrules: []", "version must be an integer"),
        ("format: insitu-policy/1\nrules: []\nmatcher: x", "unknown field"),
        ("format: insitu-policy/1\nrules: [p, analyst]", r"rules\[0\] must be a mapping"),
        (
            "format: insitu-policy/1\nrules:\n - {role: analyst, department: '*', object: job}",
            "lacks field",
        ),
        (
            "format: insitu-policy/1\nrules:\n"
            " - {role: analyst, department: '*', object: job, action: read, eft: deny}",
            "unknown field",
        ),
        (
            "format: insitu-policy/1\nrules:\n"
            " - {role: [analyst], department: '*', object: job, action: read}",
            "must be a string",
        ),
        (
            "format: insitu-policy/1\nrules:\n"
            " - {role: 'analyst,admin', department: '*', object: job, action: read}",
            "commas",
        ),
        ("format: insitu-policy/1\nrules: [\n", "not valid YAML at line"),
        ("format: !!python/name:os.system insitu-policy/1\nrules: []", "not valid YAML"),
    ],
)
def test_a_bad_document_is_refused_with_a_useful_message(document: str, message: str) -> None:
    with pytest.raises(InvalidRule, match=message):
        policy_from_yaml(document)


def test_yaml_anchors_and_aliases_are_refused() -> None:
    bomb = "format: insitu-policy/1\na: &a [x, x]\nb: &b [*a, *a]\nrules: [*b]\n"
    with pytest.raises(InvalidRule, match="anchors"):
        policy_from_yaml(bomb)
    alias_only = "format: insitu-policy/1\nrules: [*a]\n"
    with pytest.raises(InvalidRule):
        policy_from_yaml(alias_only)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (  # PyYAML would keep the last role: git shows an analyst rule, the store gets another
            "format: insitu-policy/1\nrules:\n"
            " - {role: analyst, department: '*', object: job, action: read, role: auditor}\n",
            "twice",
        ),
        (  # ... or the second `rules:` list, hidden below the one a reviewer reads
            "format: insitu-policy/1\nrules: []\nrules:\n"
            " - {role: analyst, department: '*', object: policy, action: approve}\n",
            "twice",
        ),
        (
            "format: insitu-policy/1\nrules:\n"
            " - {<<: {object: policy}, role: analyst, department: '*', action: approve}\n",
            "merge keys",
        ),
        ("format: insitu-policy/1\nrules:\n - {? [role]: analyst}\n", "plain names"),
    ],
)
def test_duplicate_and_merge_keys_cannot_hide_a_rule(document: str, message: str) -> None:
    with pytest.raises(InvalidRule, match=message):
        policy_from_yaml(document)


def test_diff_rules_lists_additions_and_removals_in_order() -> None:
    a, b, c = (Rule("analyst", "*", obj, "read") for obj in ("job", "result", "budget"))
    assert diff_rules([a, b], [b, c, a]) == ([c], [])
    assert diff_rules([a, b, c], [c]) == ([], [a, b])


def test_an_error_names_a_few_unknown_keys_not_the_whole_document() -> None:
    keys = "".join(f"secret_value_{i}: x\n" for i in range(2000))
    with pytest.raises(InvalidRule) as raised:
        policy_from_yaml(f"format: insitu-policy/1\nrules: []\n{keys}")
    assert len(str(raised.value)) < 300 and "1997 more" in str(raised.value)
