"""Run every benchmark, or the ones named: `python -m bench [e2e audit ...] [--quick]`."""

from __future__ import annotations

import sys

from bench import audit, dp, e2e, policy, sandbox, tokens, verify

BENCHMARKS = {
    "e2e": e2e.main,
    "policy": policy.main,
    "sandbox": sandbox.main,
    "tokens": tokens.main,
    "audit": audit.main,
    "dp": dp.main,
    "verify": verify.main,
}


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or list(BENCHMARKS)  # flags: benchmarks
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    for name in names:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
