"""Policy as a YAML document, so it can live in git: `export` writes one, `import` reads one.

```yaml
format: insitu-policy/1
version: 3                  # the version exported (informational; an import is a new proposal)
rules:
  - {role: analyst, department: "*", object: job, action: submit}
  - {role: analyst, department: "*", object: data/conditional/general/*, action: query:aggregate,
     purpose: stated}
```

Reading is strict: a mapping with exactly these keys, each rule a mapping of the rule fields
with string values (validated by `Rule`), no YAML anchors or aliases (no entity expansion), no
duplicate or merge (`<<`) keys, no tags beyond plain scalars, lists and mappings. Errors name
the rule's position, never echo a whole document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import yaml

from policies.errors import InvalidRule
from policies.rules import MAX_RULES, Rule

FORMAT: Final = "insitu-policy/1"
MAX_DOCUMENT_BYTES: Final = 64 * 1024 * 1024
_RULE_KEYS: Final = {"role", "department", "object", "action", "purpose"}
_TOP_KEYS: Final = {"format", "version", "rules"}


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors and aliases outright."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise InvalidRule("policy documents may not use YAML aliases")
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if getattr(event, "anchor", None) is not None:
            raise InvalidRule("policy documents may not use YAML anchors")
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # PyYAML keeps the last of two equal keys and merges `<<` keys silently: a reviewer
        # reading the document in git would see one rule (or one `rules:` list) and get another.
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InvalidRule("policy documents may not use YAML merge keys (<<)")
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool | None):
                raise InvalidRule("the keys of a policy document are plain names")
            if key in seen:
                raise InvalidRule("a key appears twice in one mapping of the policy document")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def to_yaml(rules: Iterable[Rule], *, version: int | None = None) -> str:
    """The document for `rules` (one flow mapping per rule, in order)."""
    lines = [f"format: {FORMAT}"]
    if version is not None:
        lines.append(f"version: {int(version)}")
    items = [
        yaml.safe_dump(rule.as_dict(), default_flow_style=True, sort_keys=False, width=1000)
        for rule in rules
    ]
    if not items:
        lines.append("rules: []")
    else:
        lines.append("rules:")
        lines.extend(f"  - {item.strip()}" for item in items)
    return "\n".join(lines) + "\n"


def _few(keys: set[Any]) -> str:
    """At most three unknown keys, each cut short: an error never echoes a whole document."""
    names = sorted(str(k)[:40] for k in keys)
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def _rule(position: int, item: object) -> Rule:
    if not isinstance(item, dict):
        raise InvalidRule(f"rules[{position}] must be a mapping of role, department, ...")
    unknown = set(item) - _RULE_KEYS
    if unknown:
        names = _few(unknown)
        raise InvalidRule(f"rules[{position}] has unknown field(s): {names}")
    missing = {"role", "department", "object", "action"} - set(item)
    if missing:
        raise InvalidRule(f"rules[{position}] lacks field(s): {', '.join(sorted(missing))}")
    try:
        return Rule(
            role=item["role"],
            department=item["department"],
            obj=item["object"],
            action=item["action"],
            purpose=item.get("purpose", "*"),
        )
    except InvalidRule as exc:
        raise InvalidRule(f"rules[{position}]: {exc}") from None


def from_yaml(text: str | bytes) -> tuple[list[Rule], int | None]:
    """The rules of a policy document and the version it names (if any)."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise InvalidRule(f"a policy document is at most {MAX_DOCUMENT_BYTES} bytes")
    try:
        document = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidRule(f"the policy document is not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise InvalidRule("a policy document is a mapping with format, version and rules")
    unknown = set(document) - _TOP_KEYS
    if unknown:
        names = _few(unknown)
        raise InvalidRule(f"the policy document has unknown field(s): {names}")
    if document.get("format") != FORMAT:
        raise InvalidRule(f"the policy document must say format: {FORMAT}")
    version = document.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise InvalidRule("version must be an integer")
    items = document.get("rules")
    if not isinstance(items, list):
        raise InvalidRule("rules must be a list")
    if len(items) > MAX_RULES:
        raise InvalidRule(f"a policy holds at most {MAX_RULES} rules")
    return [_rule(i, item) for i, item in enumerate(items)], version
