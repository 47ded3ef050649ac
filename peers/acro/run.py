"""Run ACRO (the SACRO output checker) over fixed tables; write what it flags as fixtures.

Runs in its own virtualenv (`make peers-acro`): ACRO pins pandas <= 2.3.3, insitu uses
pandas 3. Each fixture holds the table's rows, ACRO's thresholds and, for a crosstab of
district × industry (counts, and sums of `capital`), the checks ACRO failed per cell.
`tests/integration/test_disclosure_acro_parity.py` asserts insitu withholds every flagged
cell that it would release. Usage: python peers/acro/run.py OUTPUT_DIR
"""

from __future__ import annotations

import json
import logging
import random
import sys
from pathlib import Path

import pandas as pd
from acro import ACRO
from acro.version import __version__ as acro_version

DISTRICTS = ("north", "south", "east", "west", "centre")
INDUSTRIES = ("retail", "mining", "farming", "services")


def table(name: str, seed: int) -> list[tuple[str, str, str, float]]:
    """Rows (enterprise_id, district, industry, capital): cells of very different sizes,
    some with one or two dominant contributors."""
    rng = random.Random(seed)  # noqa: S311 - fixed synthetic data, not security
    rows = []
    n = 0
    for d, district in enumerate(DISTRICTS):
        for i, industry in enumerate(INDUSTRIES):
            size = rng.choice((0, 1, 2, 3, 5, 8, 9, 10, 11, 15, 30)) if (d + i) % 7 else 40
            dominant = rng.random() < 0.3
            for j in range(size):
                capital = float(rng.randint(10, 500))
                if dominant and j == 0:
                    capital *= rng.choice((20, 60, 400))
                if dominant and j == 1 and rng.random() < 0.5:
                    capital *= 30
                rows.append((f"{name[:1].upper()}{n:05d}", district, industry, capital))
                n += 1
    return rows


def flags(outcome: pd.DataFrame) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for district, row in outcome.iterrows():
        for industry, text in row.items():
            checks = [c.strip() for c in str(text).split(";") if c.strip() and c.strip() != "ok"]
            if checks:
                out[f"{district}|{industry}"] = sorted(checks)
    return out


def main(out_dir: Path) -> None:
    logging.disable(logging.INFO)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, seed in (("skewed", 7), ("small_cells", 11), ("mixed", 23)):
        rows = table(name, seed)
        frame = pd.DataFrame(rows, columns=["enterprise_id", "district", "industry", "capital"])
        checker = ACRO(suppress=False)
        checker.crosstab(frame.district, frame.industry)
        checker.crosstab(frame.district, frame.industry, values=frame.capital, aggfunc="sum")
        counts, sums = (checker.results.get(k) for k in checker.results.get_keys()[-2:])
        config = checker.config
        fixture = {
            "peer": f"acro {acro_version}",
            "thresholds": {
                "min_group_size": config["safe_threshold"],
                "dominance": {"n": config["safe_nk_n"], "k": config["safe_nk_k"]},
                "p_percent": config["safe_pratio_p"] * 100,
            },
            "columns": ["enterprise_id", "district", "industry", "capital"],
            "rows": [list(r) for r in rows],
            "flags": {"count": flags(counts.outcome), "sum": flags(sums.outcome)},
        }
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
        print(
            f"{path}: {len(rows)} rows, flagged cells: "
            f"count {len(fixture['flags']['count'])}, sum {len(fixture['flags']['sum'])}"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
