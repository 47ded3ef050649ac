"""Random requests and rules under insitu's Casbin model, for node-casbin to decide too.

`build_case()` is deterministic (a seeded generator): the packaged default policy plus random
rules drawn from the rule grammar (roles, departments or `*`, plain objects, data objects with
prefix wildcards, actions, purpose conditions), and random requests (one to three roles, a
department, an object, an action, a purpose state). node-casbin's answer is kept in
`fixtures/node_casbin.json`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from policies import (
    ACTIONS,
    CLASSIFICATIONS,
    OBJECTS,
    PURPOSE_STATES,
    SHARE_CLASSES,
    InvalidRequest,
    InvalidRule,
    PolicyEngine,
    Request,
    Rule,
    data_object,
    default_rules,
)
from policies.enforcer import model_text

FIXTURE = Path(__file__).parent / "fixtures" / "node_casbin.json"
SEED = 20261206
RANDOM_RULES = 300
REQUESTS = 5_000
ROLES = ("analyst", "owner", "officer", "auditor", "admin", "guest")
DEPARTMENTS = ("market", "tax", "civil", "stats")
DATASETS = ("market.registry", "tax.filings", "civil.residents", "stats.survey")


def _data(rng: random.Random) -> str:
    return data_object(rng.choice(SHARE_CLASSES), rng.choice(CLASSIFICATIONS), rng.choice(DATASETS))


def _rule_object(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return rng.choice(sorted(OBJECTS))
    parts = _data(rng).split("/")
    keep = rng.randint(1, 4)  # data/*, data/<share>/*, data/<share>/<class>/*, or exact
    return "/".join(parts[:keep]) + ("/*" if keep < 4 else "")


def _rules(rng: random.Random) -> list[Rule]:
    rules = list(default_rules())
    wanted = len(rules) + RANDOM_RULES
    while len(rules) < wanted:
        obj = _rule_object(rng)
        try:
            rules.append(
                Rule(
                    rng.choice(ROLES),
                    rng.choice((*DEPARTMENTS, "*")),
                    obj,
                    rng.choice(sorted(ACTIONS)),
                    rng.choice(("*", "stated", "approved")) if obj.startswith("data") else "*",
                )
            )
        except InvalidRule:
            continue
    return rules


def _requests(rng: random.Random) -> list[Request]:
    requests: list[Request] = []
    while len(requests) < REQUESTS:
        obj = _data(rng) if rng.random() < 0.7 else rng.choice(sorted(OBJECTS))
        try:
            requests.append(
                Request(
                    tuple(rng.sample(ROLES, rng.randint(1, 3))),
                    rng.choice(DEPARTMENTS),
                    obj,
                    rng.choice(sorted(ACTIONS)),
                    rng.choice(PURPOSE_STATES),
                )
            )
        except InvalidRequest:
            continue
    return requests


def build_case() -> dict[str, Any]:
    rng = random.Random(SEED)
    rules = _rules(rng)
    requests = _requests(rng)
    return {
        "model": model_text(),
        "rules": [list(rule.fields()) for rule in rules],
        "requests": [
            {
                "roles": list(r.roles),
                "department": r.department,
                "obj": r.obj,
                "action": r.action,
                "purpose": r.purpose,
            }
            for r in requests
        ],
    }


def pycasbin_decisions(case: dict[str, Any], limit: int | None = None) -> list[bool]:
    """insitu's own decisions (PyCasbin behind `PolicyEngine`) for the case's requests."""
    engine = PolicyEngine.from_rules([Rule(*fields) for fields in case["rules"]], version=1)
    return [
        engine.decide(
            Request(tuple(r["roles"]), r["department"], r["obj"], r["action"], r["purpose"])
        ).allowed
        for r in case["requests"][:limit]
    ]
