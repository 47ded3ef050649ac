"""SmartNoise SQL on the benchmark file (runs in .venv-peers/smartnoise)."""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import snsql
from snsql import Privacy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--query", choices=["count", "mean"], required=True)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    meta = {
        "bench": {
            "bench": {
                "people": {
                    "max_ids": 1,
                    "row_privacy": False,
                    "censor_dims": False,
                    "rows": args.rows,
                    "person_id": {"type": "string", "private_id": True},
                    "district": {"type": "string"},
                    "income": {"type": "int", "lower": 0, "upper": 100_000},
                }
            }
        }
    }
    start = time.perf_counter()
    df = pd.read_parquet(args.data)
    # AVG is charged as SUM + COUNT (2 ε): halve ε so both queries cost the same total ε.
    epsilon = args.epsilon if args.query == "count" else args.epsilon / 2
    reader = snsql.from_df(df, privacy=Privacy(epsilon=epsilon, delta=1e-9), metadata=meta)
    setup = time.perf_counter() - start
    expr = "COUNT(*)" if args.query == "count" else "AVG(income)"
    sql = f"SELECT district, {expr} AS value FROM bench.people GROUP BY district"  # noqa: S608
    times, released = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        rows = reader.execute(sql)
        times.append(time.perf_counter() - start)
        released.append({str(r[0]): float(r[1]) for r in rows[1:]})
    print(json.dumps({"setup_s": setup, "query_s": times, "released": released}))


if __name__ == "__main__":
    main()
