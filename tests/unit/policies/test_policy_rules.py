"""Rule and request validation (including injection attempts), and the policy text format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policies import InvalidRequest, InvalidRule, Request, Rule, format_rules, parse_rules
from tests.unit.policies import policy_testkit as kit


def test_rule_text_is_one_policy_line() -> None:
    assert Rule("analyst", "*", "job", "submit").text() == "p, analyst, *, job, submit"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("role", "analyst,admin"),
        ("role", 'analyst"'),
        ("role", "analyst'"),
        ("role", "analyst\n"),
        ("role", "ana lyst"),
        ("role", "Analyst"),
        ("role", "1analyst"),
        ("role", "a" * 65),
        ("role", "*"),
        ("role", ""),
        ("department", "tax,market"),
        ("department", "tax\x00"),
        ("department", "ta*"),
        ("obj", "job, read"),
        ("obj", "job || true"),
        ("obj", "job||true"),
        ("obj", "job\r\n"),
        ("obj", 'job" or "1"=="1'),
        ("obj", "job)"),
        ("obj", "*"),
        ("obj", "jobs"),
        ("obj", "job*"),
        ("obj", "data/unconditional/gen*"),
        ("obj", "data/*/general/x"),
        ("obj", "data/public/*"),
        ("obj", "data/conditional/secret/*"),
        ("obj", "data/conditional/general/tax.filings/*"),
        ("obj", "data/conditional/general"),
        ("obj", "data/conditional/general/Tax"),
        ("obj", "data/" + "a" * 200),
        ("action", "query:aggregate || true"),
        ("action", "delete"),
        ("action", "read "),
    ],
)
def test_rule_rejects_bad_field(field: str, value: str) -> None:
    fields = {"role": "analyst", "department": "*", "obj": "job", "action": "read"}
    fields[field] = value
    if field == "obj" and value.startswith("data/"):
        fields["action"] = "query:dp"
    with pytest.raises(InvalidRule):
        Rule(**fields)


def test_rule_rejects_non_string() -> None:
    with pytest.raises(InvalidRule, match="must be a string"):
        Rule("analyst", "*", "job", 3)  # type: ignore[arg-type]


def test_rule_rejects_query_action_on_named_object_and_named_action_on_data() -> None:
    with pytest.raises(InvalidRule, match="applies to data objects"):
        Rule("analyst", "*", "job", "query:aggregate")
    with pytest.raises(InvalidRule, match="does not apply to data objects"):
        Rule("analyst", "*", "data/*", "read")


def test_rule_error_messages_say_what_to_change() -> None:
    with pytest.raises(InvalidRule, match="commas, quotes, whitespace or control characters"):
        Rule("analyst", "*", "job,x", "read")
    with pytest.raises(InvalidRule, match="share class 'public' is not one of"):
        Rule("analyst", "*", "data/public/*", "query:dp")
    with pytest.raises(InvalidRule, match=r"or '\*' for any department"):
        Rule("analyst", "Tax", "job", "read")


@pytest.mark.parametrize(
    "changes",
    [
        {"obj": "data/*"},
        {"obj": "job*"},
        {"obj": "data/unconditional/general/*"},
        {"department": "*"},
        {"department": "Tax"},
        {"roles": ("analyst,admin",)},
        {"roles": ("analyst", "x || true")},
        {"roles": "analyst"},
        {"obj": "template || True"},
        {"action": "submit\n"},
        {"roles": tuple(f"r{i}" for i in range(65))},
    ],
)
def test_request_rejects_wildcards_and_injection(changes: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "roles": ("analyst",),
        "department": "tax",
        "obj": "job",
        "action": "submit",
    }
    fields.update(changes)
    with pytest.raises(InvalidRequest):
        Request(**fields)  # type: ignore[arg-type]


def test_request_accepts_list_of_roles_as_tuple() -> None:
    request = Request(roles=["analyst"], department="tax", obj="job", action="submit")  # type: ignore[arg-type]
    assert request.roles == ("analyst",)


def test_parse_rules_skips_comments_and_blank_lines() -> None:
    text = (
        "# header\n\n  p, analyst, *, job, submit  \r\n"
        "\t# indented comment\np,auditor,tax,audit,read"
    )
    assert parse_rules(text) == [
        Rule("analyst", "*", "job", "submit"),
        Rule("auditor", "tax", "audit", "read"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("p, analyst, *, job, submit\ng, alice, analyst", 2, "5 or 6 fields"),
        ("p, analyst, *, job, submit, stated, extra", 1, "5 or 6 fields"),
        ("p, analyst, *, job, submit, extra", 1, "purpose 'extra' is not one of"),
        ("p, analyst, *, job, submit, stated", 1, "applies to data objects"),
        ("p, analyst, *, data/*, query:dp, approved or True", 1, "purpose"),
        ("# ok\nq, analyst, *, job, submit", 2, "starts with 'p,'"),
        ("p, analyst, *, job, submit # trailing", 1, "object|action"),
        ("\n\np, analyst, *, job, sub mit", 3, "action"),
        ("p, analyst, *, job, read\u2028p, admin, *, policy, admin", 1, "action"),
        ("p, analyst, *, job\u00a0, read", 1, "object"),
        ("p, analyst, *, job || true, read", 1, "object"),
    ],
)
def test_parse_rules_is_strict_and_names_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(InvalidRule, match=message) as caught:
        parse_rules(text)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}: ")


def test_format_rules_of_nothing_is_empty() -> None:
    assert format_rules([]) == ""
    assert parse_rules("") == []


@given(st.lists(kit.rules, max_size=30))
def test_parse_format_round_trip(rules: list[Rule]) -> None:
    text = format_rules(rules)
    assert parse_rules(text) == rules
    assert format_rules(parse_rules(text)) == text
