"""Generators of valid rules and requests for the policies tests (seeded random and hypothesis).

Names come from small pools so that random rules and requests actually meet.
"""

from __future__ import annotations

import random

from casbin.util import key_match
from hypothesis import strategies as st

from policies import ACTIONS, CLASSIFICATIONS, OBJECTS, PURPOSE_STATES, SHARE_CLASSES, Request, Rule
from policies.vocabulary import DATA_ACTIONS, PURPOSE_CONDITIONS

ROLES = ("analyst", "data_owner", "auditor", "security_officer", "admin", "r2")
DEPARTMENTS = ("market", "tax", "civil", "social_security")
DATASETS = ("market.registry", "tax.filings", "civil.residents")
NAMED_ACTIONS = tuple(sorted(ACTIONS - DATA_ACTIONS))
QUERY_ACTIONS = tuple(sorted(DATA_ACTIONS))


def data_objects() -> list[str]:
    return [
        f"data/{sc}/{cl}/{ds}" for sc in SHARE_CLASSES for cl in CLASSIFICATIONS for ds in DATASETS
    ]


def data_patterns() -> list[str]:
    """Every data object and every `/*` prefix of one."""
    patterns = ["data/*"]
    patterns += [f"data/{sc}/*" for sc in SHARE_CLASSES]
    patterns += [f"data/{sc}/{cl}/*" for sc in SHARE_CLASSES for cl in CLASSIFICATIONS]
    return patterns + data_objects()


def random_rule(rng: random.Random) -> Rule:
    department = rng.choice((*DEPARTMENTS, "*", "*"))
    purpose = "*"
    if rng.random() < 0.5:
        obj, action = rng.choice(data_patterns()), rng.choice(QUERY_ACTIONS)
        purpose = rng.choice(PURPOSE_CONDITIONS)
    else:
        obj, action = rng.choice(sorted(OBJECTS)), rng.choice(NAMED_ACTIONS)
    return Rule(rng.choice(ROLES), department, obj, action, purpose)


def random_request(rng: random.Random) -> Request:
    roles = tuple(rng.sample(ROLES, rng.randint(0, 3)))
    obj = rng.choice(data_objects() + sorted(OBJECTS))
    return Request(
        roles=roles,
        department=rng.choice((*DEPARTMENTS, "elsewhere")),
        obj=obj,
        action=rng.choice(sorted(ACTIONS)),
        purpose=rng.choice(PURPOSE_STATES),
    )


def grants(rule: Rule, role: str, request: Request) -> bool:
    """An independent reading of the matcher in model.conf, for checking a reported rule."""
    return (
        rule.role == role
        and rule.department in ("*", request.department)
        and key_match(request.obj, rule.obj)
        and rule.action == request.action
        and (
            rule.purpose in ("*", request.purpose)
            or (rule.purpose == "stated" and request.purpose == "approved")
        )
    )


names = st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)
rules = st.builds(
    Rule,
    role=names,
    department=st.one_of(st.just("*"), names),
    obj=st.sampled_from(sorted(OBJECTS)),
    action=st.sampled_from(NAMED_ACTIONS),
) | st.builds(
    Rule,
    role=names,
    department=st.one_of(st.just("*"), names),
    obj=st.sampled_from(data_patterns()),
    action=st.sampled_from(QUERY_ACTIONS),
    purpose=st.sampled_from(PURPOSE_CONDITIONS),
)
