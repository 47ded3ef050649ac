"""OpenDP's polars Context on the benchmark file (runs in .venv-peers/opendp)."""

from __future__ import annotations

import argparse
import json
import time

import opendp.prelude as dp
import polars as pl

dp.enable_features("contrib")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--query", choices=["count", "mean"], required=True)
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    times, released = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        ctx = dp.Context.compositor(
            data=pl.scan_parquet(args.data),
            privacy_unit=dp.unit_of(contributions=1),
            privacy_loss=dp.loss_of(epsilon=args.epsilon),
            split_evenly_over=1,
            margins=[
                dp.polars.Margin(by=["district"], invariant="keys", max_length=args.rows),
                dp.polars.Margin(by=[], max_length=args.rows),
            ],
        )
        if args.query == "count":
            agg = dp.len(signed=True).alias("value")
        else:
            agg = pl.col("income").fill_null(0).dp.mean(bounds=(0, 100_000)).alias("value")
        frame = ctx.query().group_by("district").agg(agg).release().collect()
        times.append(time.perf_counter() - start)
        released.append({str(r["district"]): float(r["value"]) for r in frame.to_dicts()})
    print(json.dumps({"setup_s": 0.0, "query_s": times, "released": released}))


if __name__ == "__main__":
    main()
