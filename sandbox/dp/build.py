"""OpenDP measurements for a ``dp`` plan's primitives, built with the noise scale whose privacy
map fits each primitive's share of the cost (see ``sandbox.dp.measure`` for the table of
primitives and sensitivities). With ``dp_measure``, the only module importing ``opendp``
(submodules, once per process, with the ``contrib`` feature only).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

from sandbox.dp.plan import DpPlan, MeasureKind, Noise
from sandbox.errors import SandboxBug, TemplateRejected

ALPHA = 0.05  # 95 % intervals
I64 = 2**62  # engine sums are clipped into i64 before noise (a contraction: safe)


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


def primitives(plan: DpPlan) -> tuple[Primitive, ...]:
    r = plan.rows_per_unit
    out: list[Primitive] = []
    if plan.counts_rows:
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
