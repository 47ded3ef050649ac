"""Run every benchmark, or the ones named: `python -m bench [e2e audit ...] [--quick]`."""

from __future__ import annotations

import sys

from bench import (
    audit,
    differencing,
    dp,
    e2e,
    fairness,
    load,
    open_results,
    policy,
    sandbox,
    spark,
    tokens,
    verify,
)

BENCHMARKS = {
    "e2e": e2e.main,
    "policy": policy.main,
    "sandbox": sandbox.main,
    "tokens": tokens.main,
    "audit": audit.main,
    "dp": dp.main,
    "verify": verify.main,
    "open": open_results.main,
    "fairness": fairness.main,
    "differencing": differencing.main,
    "load": load.main,
}
# Needs Java and a Spark Connect server (started for it): run it by name, `python -m bench spark`.
ON_REQUEST = {"spark": spark.main}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ON_REQUEST:  # its own flags: `python -m bench spark --rows N`
        ON_REQUEST[argv[0]](argv[1:])
        return 0
    names = [a for a in argv if not a.startswith("-")] or list(BENCHMARKS)  # flags: benchmarks
    known = {**BENCHMARKS, **ON_REQUEST}
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    for name in names:
        known[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
