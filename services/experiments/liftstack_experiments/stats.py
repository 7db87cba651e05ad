"""Results arithmetic: rates, lift over control with a confidence interval, and a
sample-ratio-mismatch check. Pure functions, no dependencies beyond `math`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Lift:
    """Relative lift of a variant's rate over the control's, with a 95% interval
    (Katz log method for a ratio of two proportions). None where undefined."""

    lift: float | None
    low: float | None
    high: float | None


def rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials else None


def lift_over_control(s_v: int, n_v: int, s_c: int, n_c: int) -> Lift:
    if not n_v or not n_c or not s_c:
        return Lift(None, None, None)
    r_v, r_c = s_v / n_v, s_c / n_c
    point = r_v / r_c - 1
    if not s_v:
        return Lift(point, None, None)
    se = math.sqrt((1 - r_v) / s_v + (1 - r_c) / s_c)
    log_ratio = math.log(r_v / r_c)
    return Lift(point, math.exp(log_ratio - Z95 * se) - 1, math.exp(log_ratio + Z95 * se) - 1)


@dataclass(frozen=True)
class SampleRatio:
    chi2: float
    p_value: float
    mismatch: bool  # p < threshold: the split isn't what was configured


def sample_ratio_check(observed: Sequence[int], weights: Sequence[float], threshold: float = 0.001) -> SampleRatio:
    """Chi-square goodness of fit of observed counts against the configured split.
    The conventional SRM alarm is p < 0.001."""
    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return SampleRatio(0.0, 1.0, False)
    weight_sum = sum(weights)
    chi2 = 0.0
    for count, weight in zip(observed, weights):
        expected = total * weight / weight_sum
        if expected > 0:
            chi2 += (count - expected) ** 2 / expected
    p = chi2_survival(chi2, len(observed) - 1)
    return SampleRatio(chi2, p, p < threshold)


def chi2_survival(x: float, dof: int) -> float:
    """P(X >= x) for X ~ chi-square(dof): the regularised upper incomplete gamma
    Q(dof/2, x/2), by series or continued fraction (Numerical Recipes 6.2)."""
    if x <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefix = -z + a * math.log(z) - math.lgamma(a)
    if z < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(1000):
            n += 1
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = z + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)
