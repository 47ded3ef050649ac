"""A policy rule, and the text form of a list of rules (`p, role, department, object, action`
with an optional sixth field, the purpose condition of a data rule).

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
    ANY_PURPOSE,
    action_problem,
    name_problem,
    object_problem,
    pairing_problem,
    purpose_condition_problem,
)

PTYPE = "p"
#: The most rules one policy may hold (a bound on memory and on the time to build an engine).
MAX_RULES = 500_000
DEFAULT_POLICY_FILE = "default_policy.csv"
_BLANKS = " \t"  # the only padding stripped around fields; any other whitespace is refused


@dataclass(frozen=True, slots=True)
class Rule:
    """Grants `action` on `obj` to holders of `role` in `department` (`*` for any department).

    `obj` may end in a `/*` prefix wildcard (`data/unconditional/*`), matched with Casbin's
    `keyMatch`. `purpose` (data rules only) is what the rule requires of the request's purpose
    attribute: `*` nothing, `stated` a stated or approved purpose, `approved` an approved one.
    """

    role: str
    department: str
    obj: str
    action: str
    purpose: str = ANY_PURPOSE

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
            or purpose_condition_problem(self.purpose, self.obj)
        )
        if problem is not None:
            raise InvalidRule(problem)

    def fields(self) -> tuple[str, str, str, str, str]:
        """The policy fields in model order: `sub, dom, obj, act, purpose`."""
        return (self.role, self.department, self.obj, self.action, self.purpose)

    def text(self) -> str:
        """The rule as one policy line, e.g. `p, analyst, *, job, submit`; the purpose field is
        written only when the rule has a condition."""
        fields = self.fields() if self.purpose != ANY_PURPOSE else self.fields()[:4]
        return ", ".join((PTYPE, *fields))

    def as_dict(self) -> dict[str, str]:
        """The rule as a mapping (YAML and JSON form); `purpose` only when it is a condition."""
        out = {
            "role": self.role,
            "department": self.department,
            "object": self.obj,
            "action": self.action,
        }
        if self.purpose != ANY_PURPOSE:
            out["purpose"] = self.purpose
        return out


def parse_rule_line(line: str, *, number: int | None = None) -> Rule:
    """One line `p, role, department, object, action[, purpose]`; `InvalidRule` names `number`."""
    fields = [field.strip(_BLANKS) for field in line.split(",")]
    if len(fields) not in (5, 6):
        raise InvalidRule(
            "expected 'p, role, department, object, action[, purpose]' (5 or 6 fields), "
            f"found {len(fields)}",
            line=number,
        )
    if fields[0] != PTYPE:
        raise InvalidRule(
            f"a rule starts with '{PTYPE},'; found {fields[0][:20]!r} (comments start with '#')",
            line=number,
        )
    try:
        return Rule(*fields[1:])
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
            if len(rules) > MAX_RULES:
                raise InvalidRule(f"a policy holds at most {MAX_RULES} rules", line=number)
    return rules


def format_rules(rules: Iterable[Rule]) -> str:
    """Policy text with one rule per line, in order, ending in a newline (empty for none)."""
    return "".join(f"{rule.text()}\n" for rule in rules)


def default_rules() -> list[Rule]:
    """The packaged default policy (`policies/default_policy.csv`)."""
    text = resources.files("policies").joinpath(DEFAULT_POLICY_FILE).read_text(encoding="utf-8")
    return parse_rules(text)


def diff_rules(old: Iterable[Rule], new: Iterable[Rule]) -> tuple[list[Rule], list[Rule]]:
    """`(added, removed)`: rules of `new` not in `old` (in `new`'s order) and the reverse."""
    old_list, new_list = list(dict.fromkeys(old)), list(dict.fromkeys(new))
    old_set, new_set = set(old_list), set(new_list)
    return [r for r in new_list if r not in old_set], [r for r in old_list if r not in new_set]
