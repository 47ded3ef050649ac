"""OpenDP measurements over the engine's exact, bounded aggregates. The only module importing
``opendp`` (submodules, once per process, with the ``contrib`` feature only).

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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

from sandbox.dp_plan import DpPlan, MeasureKind, Noise
from sandbox.errors import SandboxBug, TemplateRejected
from sandbox.results import ResultTable

ALPHA = 0.05  # 95 % intervals
I64 = 2**62  # engine sums are clipped into i64 before noise (a contraction: safe)
Key = tuple[object, ...]


@functools.cache
def _opendp() -> SimpleNamespace:
    """OpenDP's submodules, imported once (``opendp.prelude`` would pull scipy/sklearn)."""
    from opendp import (  # noqa: PLC0415
        accuracy,
        combinators,
        domains,
        measurements,
        measures,
        metrics,
    )
    from opendp.mod import enable_features  # noqa: PLC0415

    enable_features("contrib")  # never "floating-point" nor "honest-but-curious"
    return SimpleNamespace(
        accuracy=accuracy,
        combinators=combinators,
        domains=domains,
        measurements=measurements,
        measures=measures,
        metrics=metrics,
    )


@dataclass(frozen=True, slots=True)
class Primitive:
    label: str  # what it releases, e.g. "count", "sum:income"
    kind: str  # count | sum | nonnull | hist | keys
    columns: tuple[str, ...]  # engine output columns feeding it
    sensitivity: int
    divisor: int = 1  # fixed-point factor of sums
    alpha: tuple[int, int] = (1, 2)  # quantile: α as (a, d)


@dataclass(frozen=True, slots=True)
class Built:
    primitive: Primitive
    measurement: Any
    scale: float
    rho: Fraction
    delta: Fraction
    gaussian: bool
    threshold: int | None = None

    def half_width(self, alpha: float = ALPHA) -> float:
        """Half the width of the (1 - alpha) interval of one noisy value, in released units."""
        acc = _opendp().accuracy
        if self.gaussian:
            width = acc.discrete_gaussian_scale_to_accuracy(self.scale, alpha)
        else:
            width = acc.discrete_laplacian_scale_to_accuracy(self.scale, alpha)
        return float(width) / self.primitive.divisor


@dataclass(frozen=True, slots=True)
class DpRelease:
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]
    intervals: tuple[tuple[tuple[float, float] | None, ...], ...]  # per row, per measure column
    withheld: tuple[Key, ...]
    accuracy: dict[str, dict[str, Any]]
    rho: Fraction
    delta: Fraction


def primitives(plan: DpPlan) -> tuple[Primitive, ...]:
    r = plan.rows_per_unit
    out: list[Primitive] = []
    needs_count = plan.private_keys or any(m.kind is MeasureKind.COUNT for m in plan.measures)
    if needs_count:
        out.append(
            Primitive(
                "keys" if plan.private_keys else "count",
                "keys" if plan.private_keys else "count",
                ("n",),
                r,
            )
        )
    for i, m in enumerate(plan.measures):
        if m.kind in (MeasureKind.SUM, MeasureKind.MEAN):
            k = plan.fixed_point(m)
            assert m.lower is not None and m.upper is not None
            if (m.lower * k).denominator != 1 or (m.upper * k).denominator != 1:
                # the engine rounds clamped values to integers: a fractional bound ×k would
                # let ROUND pass it (0.5 → 1) and exceed the sensitivity below
                raise TemplateRejected(f"measure {m.name}: bounds have at most 3 decimals")
            if m.kind is MeasureKind.SUM:
                sens, divisor = r * m.magnitude * k, k
            else:  # centred and doubled (dp_plan): |2·x − (lo + hi)| ≤ hi − lo
                sens, divisor = r * (m.upper - m.lower) * k, 2 * k
            if sens.denominator != 1 or sens > I64:
                raise TemplateRejected(f"measure {m.name}: bounds too fine or too large")
            out.append(Primitive(f"sum:{m.name}", "sum", (f"s{i}",), int(sens), divisor))
            if m.kind is MeasureKind.MEAN:
                out.append(Primitive(f"nonnull:{m.name}", "nonnull", (f"c{i}",), r))
        elif m.kind is MeasureKind.HISTOGRAM:
            cols = tuple(f"h{i}_{b}" for b in range(len(m.bins) - 1))
            out.append(Primitive(f"hist:{m.name}", "hist", cols, r))
        elif m.kind is MeasureKind.QUANTILE:
            assert m.alpha is not None
            a, d = m.alpha.numerator, m.alpha.denominator
            cols = tuple(f"q{i}_{side}{j}" for j in range(len(m.bins)) for side in ("lt", "gt"))
            score_sens = r * max(a, d - a)
            out.append(Primitive(f"quantile:{m.name}", "quantile", cols, score_sens, 1, (a, d)))
    return tuple(out)


def _fit(
    build: Callable[[float], Any], d_in: Any, start: float, share: Fraction
) -> tuple[Any, float]:
    """The measurement at the smallest scale ≥ ``start`` (in small steps) whose map fits."""
    scale = start
    for step in range(80):
        m = build(scale)
        if _rho_of(m.map(d_in)) <= share:
            return m, scale
        scale *= 1 + 2.0 ** (-40 + step)
    raise SandboxBug("no noise scale fits the privacy share")


def _rho_of(value: Any) -> Fraction:
    """The ρ (or ε) part of a map's output, exactly as the float OpenDP returned."""
    first = value[0] if isinstance(value, tuple) else value
    return Fraction(float(first))


def _build(plan: DpPlan, p: Primitive, share: Fraction) -> Built:
    od = _opendp()
    dd, dm, dmet = od.domains, od.measurements, od.metrics
    vec = dd.vector_domain(dd.atom_domain(T="i64"))
    if p.kind == "quantile":
        return _build_quantile(plan, p, share)
    if p.kind == "keys":
        assert plan.delta is not None
        keyed = dd.map_domain(dd.atom_domain(T="String"), dd.atom_domain(T="i64"))
        metric = dmet.l02inf_distance(dmet.absolute_distance(T="i64"))
        d_in = (plan.contributed_groups, p.sensitivity, p.sensitivity)
        start = p.sensitivity / math.sqrt(2 * float(share))
        threshold = plan.threshold or _smallest_threshold(keyed, metric, d_in, start, plan.delta)

        def build_t(scale: float) -> Any:
            return dm.make_gaussian_threshold(keyed, metric, scale=scale, threshold=threshold)

        m, scale = _fit(build_t, d_in, start, share)
        rho, delta = m.map(d_in)
        if Fraction(float(delta)) > plan.delta:
            raise TemplateRejected("the threshold is too low for the template's delta")
        return Built(p, m, scale, Fraction(float(rho)), Fraction(float(delta)), True, threshold)
    if plan.budget.noise is Noise.GAUSSIAN:
        metric = dmet.l2_distance(T="i64")
        start = p.sensitivity / math.sqrt(2 * float(share))
        m, scale = _fit(
            lambda s: dm.make_gaussian(vec, metric, scale=s), p.sensitivity, start, share
        )
        return Built(p, m, scale, _rho_of(m.map(p.sensitivity)), Fraction(0), True)
    metric = dmet.l1_distance(T="i64")
    m, scale = _fit(
        lambda s: dm.make_laplace(vec, metric, scale=s),
        p.sensitivity,
        p.sensitivity / float(share),
        share,
    )
    rho = _rho_of(od.combinators.make_pureDP_to_zCDP(m).map(p.sensitivity))
    return Built(p, m, scale, rho, Fraction(0), False)


def _build_quantile(plan: DpPlan, p: Primitive, share: Fraction) -> Built:
    od = _opendp()
    vec = od.domains.vector_domain(od.domains.atom_domain(T="i64"))
    metric = od.metrics.linf_distance(T="i64", monotonic=False)
    gaussian = plan.budget.noise is Noise.GAUSSIAN
    if gaussian:
        measure = od.measures.zero_concentrated_divergence()
        start = p.sensitivity / math.sqrt(2 * float(share))
    else:
        measure = od.measures.max_divergence()
        start = 2 * p.sensitivity / float(share)

    def build(scale: float) -> Any:
        return od.measurements.make_noisy_max(vec, metric, measure, scale=scale, negate=True)

    m, scale = _fit(build, p.sensitivity, start, share)
    if gaussian:
        rho = _rho_of(m.map(p.sensitivity))
    else:
        rho = _rho_of(od.combinators.make_pureDP_to_zCDP(m).map(p.sensitivity))
    return Built(p, m, scale, rho, Fraction(0), gaussian)


def quantile_scores(lt: Sequence[int], gt: Sequence[int], alpha: tuple[int, int]) -> list[int]:
    """|(d − a)·#(x < c) − a·#(x > c)| per candidate c: 0 where c is the α-quantile."""
    a, d = alpha
    return [abs((d - a) * below - a * above) for below, above in zip(lt, gt, strict=True)]


def _smallest_threshold(domain: Any, metric: Any, d_in: Any, scale: float, delta: Fraction) -> int:
    dm = _opendp().measurements
    low, high = 1, 10**9
    while low < high:
        mid = (low + high) // 2
        m = dm.make_gaussian_threshold(domain, metric, scale=scale, threshold=mid)
        if Fraction(float(m.map(d_in)[1])) <= delta:
            high = mid
        else:
            low = mid + 1
    return low


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
