"""OpenDP measurements over the engine's exact, bounded aggregates. With ``sandbox.dp.build``
(which builds them), the only modules importing ``opendp`` (submodules, once per process,
with the ``contrib`` feature only).

A plan's release is a set of *primitives*, each an integer vector the engine computed:

| primitive | engine columns | L1 = L2 sensitivity (one unit: ≤ R rows in ≤ min(G, R) groups) |
|---|---|---|
| count of rows per group | ``n`` | R |
| clamped sum of a measure | ``s<i>`` (fixed point ×k) | R · max(|lower|, |upper|) · k |
| centred sum of a mean | ``s<i>`` = Σ 2·x − (lower + upper), ×k | R · (upper − lower) · k |
| non-NULL count of a mean | ``c<i>`` | R |
| histogram bins | ``h<i>_<b>`` (one vector over groups × bins) | R |
| private keys (threshold) | ``n`` as a key → count map | (l0, l2, l∞) = (min(G, R), R, R) |
| quantile scores per group | ``q<i>_lt<j>``, ``q<i>_gt<j>`` | L∞ = R · max(a, d − a) for α = a/d |

A quantile's score for candidate c is |(d − a)·#(x < c) − a·#(x > c)| (0 at the α-quantile);
one added row moves each score by at most max(a, d − a), in either direction, so OpenDP's
``make_noisy_max`` (negated: lowest score wins) runs with a non-monotonic L∞ metric, once per
group. A unit's R rows are split over its groups (r₁ + … ≤ R), and the maps are linear (ε)
or quadratic (ρ) in the distance, so the booked map at R covers every group together.

The run's cost is split evenly over the primitives. Each measurement is built once per plan
(``mechanism()`` caches it) with the noise scale whose privacy map fits its share, and the
booked cost is the sum of the maps in zCDP (ρ; Laplace measurements are converted with
``make_pureDP_to_zCDP``), plus δ from key selection. zCDP composes by adding ρ.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from sandbox.dp.build import ALPHA, I64, Built, _build, primitives, quantile_scores
from sandbox.dp.plan import DpPlan, MeasureKind, Noise
from sandbox.errors import SandboxBug
from sandbox.results import ResultTable

Key = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class DpRelease:
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]
    intervals: tuple[tuple[tuple[float, float] | None, ...], ...]  # per row, per measure column
    withheld: tuple[Key, ...]
    accuracy: dict[str, dict[str, Any]]
    rho: Fraction
    delta: Fraction


@dataclass(frozen=True, slots=True)
class Mechanism:
    """Every measurement of one plan, built once; ``release`` applies them to one result."""

    plan: DpPlan
    built: tuple[Built, ...]

    @property
    def rho(self) -> Fraction:
        return sum((b.rho for b in self.built), Fraction(0))

    @property
    def delta(self) -> Fraction:
        return sum((b.delta for b in self.built), Fraction(0))

    def release(
        self,
        table: ResultTable,
        *,
        keys: Sequence[Key] | None,
        candidates: Sequence[Key] | None = None,
    ) -> DpRelease:
        """Noise for ``table`` (the plan's exact aggregates). ``keys``: the public key set
        (None with private key selection); ``candidates``: keys to list as withheld when
        key selection drops them (only when they are public)."""
        plan = self.plan
        width = len(plan.group_by)
        index = {c: i for i, c in enumerate(table.columns)}
        exact: dict[Key, tuple[object, ...]] = {tuple(r[:width]): r for r in table.rows}
        released: dict[str, list[Any]] = {}
        if plan.private_keys:
            first = self.built[0]
            counts = {json.dumps(list(k)): _clip(row[index["n"]]) for k, row in exact.items()}
            noisy = first.measurement(counts)
            cells = sorted((tuple(json.loads(k)) for k in noisy), key=_order)
            released["n"] = [noisy[json.dumps(list(c))] for c in cells]
            rest = self.built[1:]
        else:
            if keys is None:
                raise SandboxBug("a public-key release needs its key set")
            cells = [tuple(k) for k in keys] if plan.group_by else [()]
            rest = self.built
        for b in rest:
            if b.primitive.kind == "quantile":
                released[b.primitive.label] = [self._select(b, exact.get(c), index) for c in cells]
                continue
            vector = [
                _clip(exact[c][index[col]]) if c in exact else 0
                for c in cells
                for col in b.primitive.columns
            ]
            noisy_vector = b.measurement(vector) if vector else []
            per = len(b.primitive.columns)
            for j, col in enumerate(b.primitive.columns):
                released[col] = noisy_vector[j::per]
        return self._assemble(cells, released, candidates)

    def expected_accuracy(self) -> dict[str, dict[str, Any]]:
        """Per released column, the noise and the 95 % half-width every cell will get, known
        before any data is read (the scales depend on the plan and cost only). A mean's
        interval depends on its group's noisy count: its sum's and count's half-widths at
        97.5 % are given instead; a quantile has no interval."""
        plan = self.plan
        by_label = {b.primitive.label: b for b in self.built}
        count_b = by_label.get("keys") or by_label.get("count")
        out: dict[str, dict[str, Any]] = {}
        for m in plan.measures:
            if m.kind is MeasureKind.COUNT:
                assert count_b is not None
                out[m.name] = {"scale": count_b.scale, "ci95_half_width": count_b.half_width()}
            elif m.kind is MeasureKind.SUM:
                b = by_label[f"sum:{m.name}"]
                k = b.primitive.divisor
                out[m.name] = {"scale": b.scale / k, "ci95_half_width": b.half_width()}
            elif m.kind is MeasureKind.HISTOGRAM:
                b = by_label[f"hist:{m.name}"]
                for j in range(len(m.bins) - 1):
                    label = f"{m.name}[{_edge(m.bins[j])},{_edge(m.bins[j + 1])})"
                    out[label] = {"scale": b.scale, "ci95_half_width": b.half_width()}
            elif m.kind is MeasureKind.QUANTILE:
                b = by_label[f"quantile:{m.name}"]
                out[m.name] = {"scale": b.scale, "ci95_half_width": None}
            else:
                sb, cb = by_label[f"sum:{m.name}"], by_label[f"nonnull:{m.name}"]
                out[m.name] = {
                    "ci95_half_width": None,
                    "sum_ci975_half_width": sb.half_width(ALPHA / 2),
                    "count_ci975_half_width": cb.half_width(ALPHA / 2),
                }
        return out

    @staticmethod
    def _select(b: Built, row: tuple[object, ...] | None, index: dict[str, int]) -> int:
        cols = b.primitive.columns
        counts = [0] * len(cols) if row is None else [_clip(row[index[c]]) for c in cols]
        scores = quantile_scores(counts[0::2], counts[1::2], b.primitive.alpha)
        return int(b.measurement(scores))

    def _assemble(
        self, cells: list[Key], released: dict[str, list[Any]], candidates: Sequence[Key] | None
    ) -> DpRelease:
        plan = self.plan
        by_label = {b.primitive.label: b for b in self.built}
        count_b = by_label.get("keys") or by_label.get("count")
        columns: list[str] = list(plan.group_by)
        accuracy: dict[str, dict[str, Any]] = {}
        values: list[list[object]] = [list(c) for c in cells]
        intervals: list[list[tuple[float, float] | None]] = [[] for _ in cells]
        noise = (
            "gaussian" if plan.budget.noise is Noise.GAUSSIAN or plan.private_keys else "laplace"
        )

        def put(column: str, b: Built, vals: list[Any], divisor: int = 1) -> None:
            a = b.half_width()
            columns.append(column)
            accuracy[column] = {"noise": noise, "scale": b.scale / divisor, "ci95_half_width": a}
            for row, iv, v in zip(values, intervals, vals, strict=True):
                x = v if divisor == 1 else v / divisor
                row.append(x)
                iv.append((x - a, x + a))

        for i, m in enumerate(plan.measures):
            if m.kind is MeasureKind.COUNT:
                assert count_b is not None
                put(m.name, count_b, released["n"])
            elif m.kind is MeasureKind.SUM:
                b = by_label[f"sum:{m.name}"]
                put(m.name, b, released[f"s{i}"], b.primitive.divisor)
            elif m.kind is MeasureKind.QUANTILE:
                b = by_label[f"quantile:{m.name}"]
                columns.append(m.name)
                accuracy[m.name] = {
                    "noise": "noisy max over the candidates (exponential mechanism)",
                    "scale": b.scale,
                    "candidates": [float(c) for c in m.bins],
                }
                for row, iv, pick in zip(
                    values, intervals, released[b.primitive.label], strict=True
                ):
                    c = m.bins[pick]
                    row.append(int(c) if c.denominator == 1 else float(c))
                    iv.append(None)
            elif m.kind is MeasureKind.HISTOGRAM:
                b = by_label[f"hist:{m.name}"]
                for k in range(len(m.bins) - 1):
                    label = f"{m.name}[{_edge(m.bins[k])},{_edge(m.bins[k + 1])})"
                    put(label, b, released[f"h{i}_{k}"])
            else:
                self._mean(m, i, by_label, released, columns, accuracy, values, intervals, noise)
        withheld: tuple[Key, ...] = ()
        if plan.private_keys and candidates is not None:
            kept = set(cells)
            withheld = tuple(
                sorted((tuple(c) for c in candidates if tuple(c) not in kept), key=_order)
            )
        return DpRelease(
            columns=tuple(columns),
            rows=tuple(tuple(r) for r in values),
            intervals=tuple(tuple(iv) for iv in intervals),
            withheld=withheld,
            accuracy=accuracy,
            rho=self.rho,
            delta=self.delta,
        )

    @staticmethod
    def _mean(  # noqa: PLR0917
        m: Any,
        i: int,
        by_label: dict[str, Built],
        released: dict[str, list[Any]],
        columns: list[str],
        accuracy: dict[str, dict[str, Any]],
        values: list[list[object]],
        intervals: list[list[tuple[float, float] | None]],
        noise: str,
    ) -> None:
        sb, cb = by_label[f"sum:{m.name}"], by_label[f"nonnull:{m.name}"]
        k = sb.primitive.divisor
        lo, hi = float(m.lower), float(m.upper)
        mid = (lo + hi) / 2
        a_s, a_c = sb.half_width(ALPHA / 2), cb.half_width(ALPHA / 2)  # union bound: 95 %
        columns.append(m.name)
        accuracy[m.name] = {
            "noise": noise,
            "sum_scale": sb.scale / k,
            "count_scale": cb.scale,
            "interval": "95 % from the sum and count intervals at 97.5 % each, within the bounds",
        }
        for row, iv, s_raw, c in zip(
            values, intervals, released[f"s{i}"], released[f"c{i}"], strict=True
        ):
            s = s_raw / k  # Σ (x − mid): the primitive's divisor is 2k
            if c <= 0:
                row.append(None)
                iv.append((lo, hi))
                continue
            row.append(min(max(mid + s / c, lo), hi))
            if c - a_c <= 0:
                iv.append((lo, hi))
                continue
            ends = [mid + (s + ds) / (c + dc) for ds in (-a_s, a_s) for dc in (-a_c, a_c)]
            iv.append((max(lo, min(ends)), min(hi, max(ends))))


def _edge(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else repr(float(value))


def _order(key: Key) -> tuple[tuple[int, str], ...]:
    return tuple((0, "") if v is None else (1, f"{type(v).__name__}:{v}") for v in key)


def _clip(value: object) -> int:
    if value is None:
        return 0
    if type(value) is not int:
        raise SandboxBug("a dp aggregate is not an integer")
    return max(-I64, min(I64, value))


@functools.lru_cache(maxsize=256)
def mechanism(plan: DpPlan) -> Mechanism:
    """The plan's measurements, built once per template version (plans are hashable)."""
    prims = primitives(plan)
    budget = plan.budget.epsilon if plan.budget.epsilon is not None else plan.budget.rho
    assert budget is not None
    share = budget / len(prims)
    return Mechanism(plan, tuple(_build(plan, p, share) for p in prims))
