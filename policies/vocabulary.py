"""The words a rule or a request may use: roles, departments, objects and actions.

Each check returns `None` when the value is acceptable, else a message a user can act on; the
value types in `rules.py` and `decisions.py` raise their own error with it. Values go into Casbin
unchanged, so anything that could shift a field through a policy file (commas, quotes,
whitespace, control characters) or that is not in the vocabulary is refused, never cleaned up.
"""

from __future__ import annotations

import re
from typing import Final

NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
ANY_DEPARTMENT: Final = "*"
MAX_OBJECT_LENGTH: Final = 200
#: No value of any field is longer than this; longer input is refused before any other check.
MAX_VALUE_LENGTH: Final = 256

#: Objects that are not per-dataset data.
OBJECTS: Final = frozenset(
    {
        "catalogue",
        "dataset",
        "template",
        "job",
        "result",
        "budget",
        "audit",
        "policy",
        "open",
        "apikey",
        "finding",
    }
)
#: Every action; `query:*` actions apply to data objects only.
ACTIONS: Final = frozenset(
    {
        "read",
        "register",
        "propose",
        "approve",
        "submit",
        "query:aggregate",
        "query:dp",
        "query:verify",
        "query:list",
        "verify",
        "export",
        "admin",
        "publish",
        "close",
    }
)
DATA_ACTIONS: Final = frozenset(a for a in ACTIONS if a.startswith("query:"))
SHARE_CLASSES: Final = ("unconditional", "conditional", "none")
CLASSIFICATIONS: Final = ("general", "important", "core")
DATA_PREFIX: Final = "data/"

#: The purpose attribute of a request, set by the gateway from its own records (never from the
#: caller's input): no purpose, a purpose stated with the job, a purpose approved and in force,
#: or an approval that has expired.
PURPOSE_STATES: Final = ("none", "stated", "approved", "expired")
#: What a rule may require of the purpose (data objects only); `*` = nothing. `stated` is met by
#: a stated or an approved purpose, `approved` only by an approved one; `expired` meets neither.
ANY_PURPOSE: Final = "*"
PURPOSE_CONDITIONS: Final = (ANY_PURPOSE, "stated", "approved")

_DATASET_ID: Final = re.compile(r"[a-z0-9][a-z0-9_.:-]{0,127}")
_FORBIDDEN: Final = re.compile(r"""[,"'`\s\x00-\x1f\x7f]""")
_OBJECT_CHARS: Final = re.compile(r"[a-z0-9_./:-]+\*?")
_FIELD_HINT: Final = (
    "must not contain commas, quotes, whitespace or control characters "
    "(they would shift fields in a policy file)"
)


def data_object(share_class: str, classification: str, dataset_id: str) -> str:
    """The data object of one dataset, e.g. `data/conditional/general/market.registry`."""
    return f"{DATA_PREFIX}{share_class}/{classification}/{dataset_id}"


def _show(value: object) -> str:
    """A value for a message, cut short so a huge input does not become a huge error."""
    text = repr(value)
    return text if len(text) <= 70 else f"{text[:60]}...({len(text)} chars)"


def _text_problem(what: str, value: object) -> str | None:
    if not isinstance(value, str):
        return f"{what} must be a string, not {type(value).__name__}"
    if len(value) > MAX_VALUE_LENGTH:
        return f"{what} is {len(value)} characters long; at most {MAX_VALUE_LENGTH} are allowed"
    if _FORBIDDEN.search(value):
        return f"{what} {_show(value)} {_FIELD_HINT}"
    return None


def name_problem(what: str, value: object, *, hint: str = "") -> str | None:
    """A role or department name: `[a-z][a-z0-9_]{0,63}`."""
    problem = _text_problem(what, value)
    if problem is None and not NAME_PATTERN.fullmatch(str(value)):
        problem = (
            f"{what} {_show(value)} must start with a letter a-z and contain only a-z, 0-9 and _ "
            f"(at most 64 characters){' ' + hint if hint else ''}"
        )
    return problem


def action_problem(value: object) -> str | None:
    problem = _text_problem("action", value)
    if problem is None and value not in ACTIONS:
        problem = f"action {_show(value)} is not one of: {', '.join(sorted(ACTIONS))}"
    return problem


def _data_problem(obj: str, *, wildcard: bool) -> str | None:
    parts = obj[len(DATA_PREFIX) :].split("/")
    expected = "data/<share_class>/<classification>/<dataset_id>"
    if wildcard:
        expected += " or a prefix of it ending in '/*' (data/*, data/conditional/*, ...)"
    if wildcard and parts[-1] == "*":
        parts = parts[:-1]
        if len(parts) > 2:
            return f"object {obj!r}: a wildcard must stand for a whole path segment: {expected}"
    elif len(parts) != 3:
        return f"object {obj!r} must look like {expected}"
    checks = zip(
        parts, (SHARE_CLASSES, CLASSIFICATIONS), ("share class", "classification"), strict=False
    )
    for part, allowed, label in checks:
        if part not in allowed:
            return f"object {obj!r}: {label} {part!r} is not one of: {', '.join(allowed)}"
    if len(parts) == 3 and not _DATASET_ID.fullmatch(parts[2]):
        return (
            f"object {obj!r}: dataset id {parts[2]!r} must start with a-z or 0-9 and contain "
            "only a-z, 0-9 and _ . : - (at most 128 characters)"
        )
    return None


def object_problem(value: object, *, wildcard: bool) -> str | None:
    """An object of the vocabulary; rules (`wildcard=True`) may end in a `/*` prefix wildcard."""
    problem = _text_problem("object", value)
    if problem is not None:
        return problem
    obj = str(value)
    if len(obj) > MAX_OBJECT_LENGTH:
        return f"object is {len(obj)} characters long; at most {MAX_OBJECT_LENGTH} are allowed"
    if "*" in obj and not wildcard:
        return f"object {obj!r}: a request names one object; '*' is only for rules"
    if obj == "*":
        return "object '*' would match every object; name the object, or use data/* for all data"
    if "*" in obj and not (obj.endswith("/*") and obj.count("*") == 1):
        return f"object {obj!r}: '*' may only end the object, after a '/' (e.g. data/none/*)"
    if not _OBJECT_CHARS.fullmatch(obj):
        return f"object {obj!r} may contain only a-z, 0-9 and _ . / : - (rules may end in '*')"
    if obj in OBJECTS:
        return None
    if obj.startswith(DATA_PREFIX):
        return _data_problem(obj, wildcard=wildcard)
    return (
        f"object {obj!r} is not one of: {', '.join(sorted(OBJECTS))}, "
        "nor a data object data/<share_class>/<classification>/<dataset_id>"
    )


def purpose_condition_problem(value: object, obj: str) -> str | None:
    """A rule's purpose condition: `*`, `stated` or `approved`, and only on data objects."""
    problem = _text_problem("purpose", value)
    if problem is None and value not in PURPOSE_CONDITIONS:
        problem = f"purpose {_show(value)} is not one of: {', '.join(PURPOSE_CONDITIONS)}"
    if problem is None and value != ANY_PURPOSE and not obj.startswith(DATA_PREFIX):
        problem = f"a purpose condition applies to data objects (data/...), not to {obj!r}"
    return problem


def purpose_state_problem(value: object) -> str | None:
    problem = _text_problem("purpose", value)
    if problem is None and value not in PURPOSE_STATES:
        problem = f"purpose state {_show(value)} is not one of: {', '.join(PURPOSE_STATES)}"
    return problem


def data_parts(obj: str) -> tuple[str, str, str] | None:
    """`(share_class, classification, dataset_id)` of a data object, `None` for any other."""
    if not obj.startswith(DATA_PREFIX):
        return None
    parts = obj[len(DATA_PREFIX) :].split("/")
    if len(parts) != 3:
        return None
    return parts[0], parts[1], parts[2]


def object_patterns(obj: str) -> tuple[str, ...]:
    """Every rule object that can match the request object `obj` under `keyMatch`.

    The grammar allows a `*` only as a whole last path segment, so a data object
    `data/s/c/d` is matched by exactly `data/*`, `data/s/*`, `data/s/c/*` and itself, and a
    named object only by itself. The engine's index relies on this (a test checks it against
    Casbin's own `keyMatch`).
    """
    parts = data_parts(obj)
    if parts is None:
        return (obj,)
    share, classification, _ = parts
    return (
        f"{DATA_PREFIX}*",
        f"{DATA_PREFIX}{share}/*",
        f"{DATA_PREFIX}{share}/{classification}/*",
        obj,
    )


def pairing_problem(obj: str, action: str) -> str | None:
    """`query:*` actions apply to data objects, every other action to the named objects."""
    is_data = obj.startswith(DATA_PREFIX)
    if action in DATA_ACTIONS and not is_data:
        return f"action {action!r} applies to data objects (data/...), not to {obj!r}"
    if action not in DATA_ACTIONS and is_data:
        return (
            f"action {action!r} does not apply to data objects; use one of "
            f"{', '.join(sorted(DATA_ACTIONS))} on {obj!r}"
        )
    return None
