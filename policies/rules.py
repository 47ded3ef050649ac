"""A policy rule, and the text form of a list of rules (`p, role, department, object, action`).

The text form is what the policy store keeps and what security officers edit. Parsing is
strict: a line is a rule, a `#` comment or blank; anything else is an `InvalidRule` naming the
line. `parse_rules(format_rules(rules)) == rules` for every list of valid rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from policies.errors import InvalidRule
from policies.vocabulary import (
    ANY_DEPARTMENT,
    action_problem,
    name_problem,
    object_problem,
    pairing_problem,
)

PTYPE = "p"
DEFAULT_POLICY_FILE = "default_policy.csv"
_BLANKS = " \t"  # the only padding stripped around fields; any other whitespace is refused


@dataclass(frozen=True, slots=True)
class Rule:
    """Grants `action` on `obj` to holders of `role` in `department` (`*` for any department).

    `obj` may end in a `/*` prefix wildcard (`data/unconditional/*`), matched with Casbin's
    `keyMatch`.
    """

    role: str
    department: str
    obj: str
    action: str

    def __post_init__(self) -> None:
        department_problem = (
            None
            if self.department == ANY_DEPARTMENT
            else name_problem("department", self.department, hint="or '*' for any department")
        )
        problem = (
            name_problem("role", self.role)
            or department_problem
            or object_problem(self.obj, wildcard=True)
            or action_problem(self.action)
            or pairing_problem(self.obj, self.action)
        )
        if problem is not None:
            raise InvalidRule(problem)

    def fields(self) -> tuple[str, str, str, str]:
        """The policy fields in model order: `sub, dom, obj, act`."""
        return (self.role, self.department, self.obj, self.action)

    def text(self) -> str:
        """The rule as one policy line, e.g. `p, analyst, *, job, submit`."""
        return ", ".join((PTYPE, *self.fields()))


def parse_rule_line(line: str, *, number: int | None = None) -> Rule:
    """One line `p, role, department, object, action`; `InvalidRule` names `number`."""
    fields = [field.strip(_BLANKS) for field in line.split(",")]
    if len(fields) != 5:
        raise InvalidRule(
            f"expected 'p, role, department, object, action' (5 fields), found {len(fields)}",
            line=number,
        )
    if fields[0] != PTYPE:
        raise InvalidRule(
            f"a rule starts with '{PTYPE},'; found {fields[0][:20]!r} (comments start with '#')",
            line=number,
        )
    try:
        return Rule(role=fields[1], department=fields[2], obj=fields[3], action=fields[4])
    except InvalidRule as exc:
        raise InvalidRule(str(exc), line=number) from None


def parse_rules(text: str) -> list[Rule]:
    """Rules from policy text; `#` comments and blank lines are skipped, nothing else is."""
    if not isinstance(text, str):
        raise InvalidRule(f"policy text must be a string, not {type(text).__name__}")
    rules = []
    # Only "\n" ends a line (and "\r\n"): other Unicode line breaks are refused inside a field
    # rather than silently splitting one line into two rules.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").strip(_BLANKS)
        if line and not line.startswith("#"):
            rules.append(parse_rule_line(line, number=number))
    return rules


def format_rules(rules: Iterable[Rule]) -> str:
    """Policy text with one rule per line, in order, ending in a newline (empty for none)."""
    return "".join(f"{rule.text()}\n" for rule in rules)


def default_rules() -> list[Rule]:
    """The packaged default policy (`policies/default_policy.csv`)."""
    text = resources.files("policies").joinpath(DEFAULT_POLICY_FILE).read_text(encoding="utf-8")
    return parse_rules(text)
