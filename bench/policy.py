"""Policy decision latency at 1k, 10k and 100k policy lines: insitu's `PolicyEngine` against the
reference `casbin.Enforcer` (which evaluates the matcher against every line).

The policies are synthetic but shaped like real ones: 40 roles, 300 departments and 3,000
datasets; most lines grant one department's role one action on one dataset or on a share
class / classification of data, some with a purpose condition, the rest grant named objects.
Requests are drawn from the same pools, so both outcomes occur. Every request timed on the
reference is also decided by the engine and the two must agree (a differential check); at
100k lines the reference takes ~0.3 s per decision, so it gets a few samples only.

    python -m bench policy          (or: python -m bench.policy --quick)
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import write_result
from policies import ACTIONS, CLASSIFICATIONS, OBJECTS, SHARE_CLASSES, PolicyEngine, Request, Rule
from policies.enforcer import new_enforcer
from policies.vocabulary import DATA_ACTIONS, PURPOSE_STATES

SIZES = (1_000, 10_000, 100_000)
ROLES = (*(f"role_{i:02d}" for i in range(38)), "analyst", "data_owner")
DEPARTMENTS = tuple(f"dept_{i:03d}" for i in range(300))
DATASETS = tuple(f"{DEPARTMENTS[i % 300]}.set_{i:04d}" for i in range(3_000))
NAMED_ACTIONS = tuple(sorted(ACTIONS - DATA_ACTIONS))
QUERY_ACTIONS = tuple(sorted(DATA_ACTIONS))


def dataset_object(rng: random.Random, dataset: str) -> str:
    return f"data/{rng.choice(SHARE_CLASSES)}/{rng.choice(CLASSIFICATIONS)}/{dataset}"


def generate_rules(n: int, seed: int = 1) -> list[Rule]:
    """`n` distinct valid rules shaped like a large real policy."""
    rng = random.Random(seed)
    rules: dict[Rule, None] = {}
    while len(rules) < n:
        department = rng.choice(DEPARTMENTS) if rng.random() < 0.97 else "*"
        role = rng.choice(ROLES)
        kind = rng.random()
        if kind < 0.7:
            obj = dataset_object(rng, rng.choice(DATASETS))
        elif kind < 0.8:
            share = rng.choice(SHARE_CLASSES)
            obj = rng.choice((f"data/{share}/*", f"data/{share}/{rng.choice(CLASSIFICATIONS)}/*"))
        else:
            obj = rng.choice(sorted(OBJECTS))
        if obj.startswith("data/"):
            purpose = rng.choice(("*", "*", "stated", "approved"))
            rule = Rule(role, department, obj, rng.choice(QUERY_ACTIONS), purpose)
        else:
            rule = Rule(role, department, obj, rng.choice(NAMED_ACTIONS))
        rules[rule] = None
    return list(rules)


def generate_requests(rules: list[Rule], n: int, seed: int = 2) -> list[Request]:
    """Requests from the same pools; half are aimed at a rule (so some are allowed)."""
    rng = random.Random(seed)
    requests = []
    for _ in range(n):
        if rng.random() < 0.5:
            rule = rng.choice(rules)
            obj = rule.obj
            if obj.endswith("*"):
                obj = obj[:-1] + "/".join(
                    [rng.choice(SHARE_CLASSES), rng.choice(CLASSIFICATIONS), rng.choice(DATASETS)][
                        obj.count("/") - 1 :
                    ]
                )
            department = rule.department if rule.department != "*" else rng.choice(DEPARTMENTS)
            roles: tuple[str, ...] = (rule.role, rng.choice(ROLES))
            action = rule.action
        else:
            obj = (
                dataset_object(rng, rng.choice(DATASETS))
                if rng.random() < 0.7
                else rng.choice(sorted(OBJECTS))
            )
            department = rng.choice(DEPARTMENTS)
            roles = tuple(rng.sample(ROLES, 2))
            action = rng.choice(QUERY_ACTIONS if obj.startswith("data/") else NAMED_ACTIONS)
        purpose = rng.choice(PURPOSE_STATES) if obj.startswith("data/") else "none"
        requests.append(Request(roles, department, obj, action, purpose))
    return requests


def reference_allows(enforcer: Any, request: Request) -> bool:
    return any(
        enforcer.enforce(role, request.department, request.obj, request.action, request.purpose)
        for role in request.roles
    )


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, (len(ordered) * 99) // 100)] * 1000,
        "n": len(ordered),
    }


def measure(size: int, *, engine_requests: int, reference_requests: int) -> dict[str, Any]:
    rules = generate_rules(size)
    start = time.perf_counter()
    engine = PolicyEngine.from_rules(rules, version=1)
    build_s = time.perf_counter() - start
    requests = generate_requests(rules, engine_requests)
    gc.collect()  # the garbage of building the engine, not of deciding
    for request in requests[:50]:  # warm up
        engine.decide(request)
    samples, allowed = [], 0
    for request in requests:
        t0 = time.perf_counter()
        decision = engine.decide(request)
        samples.append(time.perf_counter() - t0)
        allowed += decision.allowed
    reference = new_enforcer(rules)
    ref_samples, mismatches = [], 0
    for request in requests[:reference_requests]:
        t0 = time.perf_counter()
        expected = reference_allows(reference, request)
        ref_samples.append(time.perf_counter() - t0)
        mismatches += engine.decide(request).allowed is not expected
    return {
        "lines": size,
        "build_s": build_s,
        "engine": percentiles(samples),
        "reference": percentiles(ref_samples),
        "allowed_share": allowed / len(requests),
        "differential": {"compared": len(ref_samples), "mismatches": mismatches},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    quick = "--quick" in (argv or [])
    rows = []
    for size in SIZES:
        reference_n = {1_000: 300, 10_000: 60, 100_000: 5}[size]
        rows.append(
            measure(
                size,
                engine_requests=1_000 if quick else 5_000,
                reference_requests=max(3, reference_n // (5 if quick else 1)),
            )
        )
    table = Table(title="policy decisions: PolicyEngine vs reference casbin.Enforcer")
    for column in (
        "lines",
        "engine p50 ms",
        "engine p99 ms",
        "reference p50 ms",
        "reference p99 ms",
        "speed-up (p50)",
        "build s",
        "allowed",
        "differential",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        e, r = row["engine"], row["reference"]
        table.add_row(
            f"{row['lines']:,}",
            f"{e['p50_ms']:.3f}",
            f"{e['p99_ms']:.3f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['p50_ms'] / e['p50_ms']:.0f}x",
            f"{row['build_s']:.2f}",
            f"{row['allowed_share']:.0%}",
            f"{row['differential']['mismatches']} of {row['differential']['compared']} differ",
        )
    console = Console(width=160)
    console.print(table)
    payload = {"target": "p99 < 1 ms per decision at 100,000 lines", "sizes": rows}
    path = write_result("policy", payload)
    console.print(f"wrote {path}")
    if any(row["differential"]["mismatches"] for row in rows):
        raise SystemExit("the engine decided differently from the reference Enforcer")
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
