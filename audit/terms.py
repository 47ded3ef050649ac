"""Review terms: what an entry can be found by (who, what, on whose data, decided how).

Terms are derived from the event and used only to find entries; they are not hashed, and a
verifier recomputes them from the entry body. The store indexes them after the entry is durable,
off the append path (`SqlAuditLog.index_terms`), and a query finds entries not yet indexed by
reading them (`SqlAuditLog.query`), so answers are complete either way.

    type:<event type>          subject:<actor subject>    department:<actor department>
    decision:allowed|denied    template:<id>              dataset:<id>
    provider:<department>      manager:<department>       job:<id>

The responsible parties (谁提供/谁管理/谁使用谁负责): the *user* is the acting department
(`department:`), the *providers* are the departments holding the datasets (`details.providers`),
the *managers* the departments whose data owners approved the template version
(`details.managers`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from audit.events import Event

__all__ = ["FIELDS", "MAX_TERM", "term", "terms_of"]

MAX_TERM: Final = 200
FIELDS: Final = (
    "type",
    "subject",
    "department",
    "decision",
    "template",
    "dataset",
    "provider",
    "manager",
    "job",
)
_LISTS: Final = {"datasets": "dataset", "providers": "provider", "managers": "manager"}
_SCALARS: Final = {"template": "template", "dataset": "dataset", "job": "job"}
_KEYS: Final = (*_LISTS.items(), *_SCALARS.items())


def term(field: str, value: str) -> str:
    """The term for `field` = `value` (ValueError for an unknown field)."""
    if field not in FIELDS:
        raise ValueError(f"unknown review field {field!r}; known: {', '.join(FIELDS)}")
    return f"{field}:{value}"


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        yield from (v for v in value if isinstance(v, str))


def terms_of(event: Event) -> list[str]:
    """The distinct terms of `event`, sorted; values too long to index are left out."""
    found = {
        "type:" + event.type,
        "subject:" + event.actor.subject,
        "department:" + event.actor.department,
        "decision:allowed" if event.allowed else "decision:denied",
    }
    details = event.details
    for key, field in _KEYS:
        value = details.get(key)
        if value is not None:
            found.update(f"{field}:{v}" for v in _strings(value))
    return sorted(t for t in found if len(t) <= MAX_TERM)
