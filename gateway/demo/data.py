"""Synthetic records of three departments, generated in code (nothing is downloaded).

- market: the enterprise registry (one row per enterprise, USCC-like ids);
- tax: filings per enterprise and year (most active enterprises file most years);
- civil: residents (one row per person).

Districts differ a lot in size so that a realistic query has small groups that disclosure
control must withhold. A fixed seed makes every run the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DISTRICTS = (
    ("chaoyang", 0.20),
    ("haidian", 0.18),
    ("fengtai", 0.12),
    ("dongcheng", 0.08),
    ("xicheng", 0.08),
    ("tongzhou", 0.08),
    ("shunyi", 0.07),
    ("changping", 0.07),
    ("daxing", 0.06),
    ("fangshan", 0.04),
    ("mentougou", 0.015),
    ("huairou", 0.01),
    ("pinggu", 0.008),
    ("miyun", 0.0045),
    ("yanqing", 0.0004),
    ("shijingshan", 0.0001),
)
INDUSTRIES = (
    ("retail", 0.30),
    ("services", 0.25),
    ("manufacturing", 0.15),
    ("construction", 0.10),
    ("technology", 0.10),
    ("logistics", 0.06),
    ("agriculture", 0.04),
)
YEARS = tuple(range(2018, 2026))


@dataclass(frozen=True, slots=True)
class DemoData:
    enterprises: Path
    filings: Path
    residents: Path
    rows: dict[str, int]


def _choice(rng: np.random.Generator, table: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    names = np.array([name for name, _ in table])
    weights = np.array([w for _, w in table])
    return rng.choice(names, size=n, p=weights / weights.sum())


def enterprises(rng: np.random.Generator, n: int) -> pa.Table:
    serial = rng.permutation(n) + 10_000_000
    ids = np.char.add("91110000MA", np.char.zfill(serial.astype(str), 8))
    established = rng.integers(1995, 2025, size=n)
    status = np.where(rng.random(n) < 0.12, "revoked", "active")
    capital = np.round(rng.lognormal(mean=13.0, sigma=1.4, size=n), 2)
    return pa.table(
        {
            "enterprise_id": ids,
            "district": _choice(rng, DISTRICTS, n),
            "industry": _choice(rng, INDUSTRIES, n),
            "established_year": established.astype(np.int32),
            "status": status,
            "registered_capital": capital,
        }
    )


def filings(rng: np.random.Generator, registry: pa.Table) -> pa.Table:
    ids = registry.column("enterprise_id").to_numpy(zero_copy_only=False)
    established = registry.column("established_year").to_numpy()
    active = registry.column("status").to_numpy(zero_copy_only=False) == "active"
    diligence = np.where(active, rng.beta(8, 1.2, size=len(ids)), rng.beta(1, 4, size=len(ids)))
    parts_id, parts_year = [], []
    for year in YEARS:
        files = (established <= year) & (rng.random(len(ids)) < diligence)
        parts_id.append(ids[files])
        parts_year.append(np.full(int(files.sum()), year, dtype=np.int32))
    all_ids = np.concatenate(parts_id)
    revenue = np.round(rng.lognormal(mean=14.0, sigma=1.6, size=len(all_ids)), 2)
    return pa.table(
        {
            "enterprise_id": all_ids,
            "year": np.concatenate(parts_year),
            "revenue": revenue,
            "tax_paid": np.round(revenue * rng.uniform(0.01, 0.08, size=len(all_ids)), 2),
        }
    )


def residents(rng: np.random.Generator, n: int) -> pa.Table:
    ids = np.char.add("P", np.char.zfill((rng.permutation(n) + 1).astype(str), 9))
    return pa.table(
        {
            "person_id": ids,
            "district": _choice(rng, DISTRICTS, n),
            "birth_year": rng.integers(1930, 2025, size=n).astype(np.int32),
            "sex": rng.choice(np.array(["F", "M"]), size=n),
            "household_size": rng.integers(1, 7, size=n).astype(np.int32),
            "monthly_income": rng.integers(0, 60_000, size=n).astype(np.int64),
        }
    )


def licences(rng: np.random.Generator, registry: pa.Table) -> pa.Table:
    """Business licences (market), one per enterprise: published, non-personal."""
    n = registry.num_rows
    active = registry.column("status").to_numpy(zero_copy_only=False) == "active"
    status = np.where(active, np.where(rng.random(n) < 0.9, "valid", "expired"), "revoked")
    return pa.table(
        {
            "enterprise_id": registry.column("enterprise_id"),
            "district": registry.column("district"),
            "licence_status": status,
            "valid_until": rng.integers(2024, 2031, size=n).astype(np.int32),
        }
    )


def abnormal_taxpayers(rng: np.random.Generator, registry: pa.Table) -> pa.Table:
    """Enterprises the tax bureau listed as abnormal taxpayers (非正常户) per year: published."""
    ids = registry.column("enterprise_id").to_numpy(zero_copy_only=False)
    parts_id, parts_year = [], []
    for year in YEARS:
        listed = rng.random(len(ids)) < 0.02
        parts_id.append(ids[listed])
        parts_year.append(np.full(int(listed.sum()), year, dtype=np.int32))
    return pa.table({"enterprise_id": np.concatenate(parts_id), "year": np.concatenate(parts_year)})


def write_demo_data(
    data_dir: Path,
    *,
    enterprises_n: int = 200_000,
    residents_n: int = 500_000,
    seed: int = 20261122,
) -> DemoData:
    rng = np.random.default_rng(seed)
    registry = enterprises(rng, enterprises_n)
    tables = {
        "market/enterprise_registry.parquet": registry,
        "tax/filings.parquet": filings(rng, registry),
        "civil/residents.parquet": residents(rng, residents_n),
    }
    extra_rng = np.random.default_rng(seed + 1)  # the original three stay as they were
    tables["market/licences.parquet"] = licences(extra_rng, registry)
    tables["tax/abnormal_taxpayers.parquet"] = abnormal_taxpayers(extra_rng, registry)
    for relative, table in tables.items():
        path = data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        pq.write_table(table, path)
    return DemoData(
        enterprises=data_dir / "market/enterprise_registry.parquet",
        filings=data_dir / "tax/filings.parquet",
        residents=data_dir / "civil/residents.parquet",
        rows={k.split("/")[0]: v.num_rows for k, v in list(tables.items())[:3]},
    )
