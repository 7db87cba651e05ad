"""Results arithmetic: rates, the fixed-horizon lift interval, the sample-ratio
check, always-valid (sequential) inference with a plain verdict, and the campaign
setup's minimum-detectable-effect calculator. Pure functions; the distributions
come from scipy.

Two intervals, both at 95%, answer different questions:

- **Fixed-horizon** (`lift_over_control`): the relative lift rate_v / rate_c - 1 with
  the delta-method interval on the log of the ratio (Katz et al. 1978, via
  `scipy.stats.contingency.relative_risk`). Valid if it is looked at once, at a size
  fixed in advance. A live page that is refreshed is looked at many times, and the
  chance that one of those looks excludes zero by luck is far above 5%
  (tests/experiments/test_sequential_simulation.py prints it).
- **Always-valid** (`difference_sequence`): a confidence sequence for the absolute
  difference of the two rates, d = p_v - p_c, that holds at every look at once:
  P(d is inside the interval at every sample size) >= 95%. Verdicts are read off it,
  so a marketer may refresh as often as they like and stop when it says so.

The confidence sequence is the two-sided normal-mixture boundary (the mixture SPRT
of Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests", KDD; the boundary of
Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist., eq. (14); its plug-in-variance validity from
Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas 2024, "Time-uniform central limit theory
and asymptotic confidence sequences", Ann. Statist.). With V the variance of the
estimate d̂ = p̂_v - p̂_c at the current sizes and a N(0, τ²) mixture over d, the
mixture likelihood ratio is sqrt(V / (V + τ²)) · exp(τ² d̂² / (2 V (V + τ²))); it
exceeds 1/α with probability at most α ever (Ville's inequality), and inverting it
gives

    d ∈ d̂ ± sqrt( V (V + τ²) / τ² · log((V + τ²) / (V α²)) ).

The mixing variance τ² = MIXING_RATIO · V_planned, with V_planned the variance of d̂
once the whole planned audience is counted: that minimises the half-width at the
planned size (d/dx of (1 + 1/x)(log(1 + x) - 2 log α) = 0, x ≈ 8.2 at α = 0.05), so
the sequence is narrowest when the campaign is complete, where it is 3.0 standard
errors wide each side rather than the fixed-horizon 1.96.

The variances use the Agresti–Caffo adjusted rates ((s + 1) / (n + 2)), so the first
looks, with a handful of events, don't have a variance of zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel
from scipy import optimize, stats
from scipy.stats.contingency import relative_risk

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
# The power the minimum detectable effect is quoted at.
POWER = 0.80


def rate(successes: int, trials: int) -> float | None:
    return successes / trials if trials else None


# ------------------------------------------------------------ fixed horizon


@dataclass(frozen=True)
class Lift:
    """Relative lift of a variant's rate over the control's, with its fixed-horizon
    95% interval (delta method on the log ratio). None where undefined."""

    lift: float | None
    low: float | None
    high: float | None


def lift_over_control(s_v: int, n_v: int, s_c: int, n_c: int) -> Lift:
    if not n_v or not n_c or not s_c:
        return Lift(None, None, None)
    point = (s_v / n_v) / (s_c / n_c) - 1
    if not s_v:  # the log ratio is -inf: no interval
        return Lift(point, None, None)
    interval = relative_risk(s_v, n_v, s_c, n_c).confidence_interval(CONFIDENCE)
    return Lift(point, float(interval.low) - 1, float(interval.high) - 1)


@dataclass(frozen=True)
class SampleRatio:
    chi2: float
    p_value: float
    mismatch: bool  # p < threshold: the split isn't what was configured


def sample_ratio_check(observed: Sequence[int], weights: Sequence[float], threshold: float = 0.001) -> SampleRatio:
    """Chi-square goodness of fit of observed counts against the configured split
    (`scipy.stats.chisquare`). The conventional SRM alarm is p < 0.001."""
    total = sum(observed)
    if total == 0 or len(observed) < 2:
        return SampleRatio(0.0, 1.0, False)
    weight_sum = sum(weights)
    expected = [total * w / weight_sum for w in weights]
    result = stats.chisquare(list(observed), expected)
    chi2, p = float(result.statistic), float(result.pvalue)
    return SampleRatio(chi2, p, p < threshold)


# --------------------------------------------------------------- sequential


def _optimal_mixing_ratio(alpha: float) -> float:
    """x = τ² / V that minimises the half-width at V: the root of x = log(1 + x) - 2 log α."""
    return float(optimize.brentq(lambda x: x - math.log1p(x) + 2 * math.log(alpha), 1e-9, 1e3))


MIXING_RATIO = _optimal_mixing_ratio(ALPHA)  # ≈ 8.2


def sequence_half_width(variance: Any, mixing_variance: Any, alpha: float = ALPHA) -> Any:
    """Half-width of the normal-mixture confidence sequence (see the module docstring);
    numpy arrays in, arrays out."""
    v = np.asarray(variance, dtype=float)
    tau2 = np.asarray(mixing_variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(v * (v + tau2) / tau2 * np.log((v + tau2) / (v * alpha**2)))


def _adjusted(successes: Any, trials: Any) -> Any:
    return (np.asarray(successes, dtype=float) + 1) / (np.asarray(trials, dtype=float) + 2)


def difference_bounds(
    s_v: Any, n_v: Any, s_c: Any, n_c: Any, planned_v: Any, planned_c: Any, alpha: float = ALPHA
) -> tuple[Any, Any, Any]:
    """(d̂, low, high) of the always-valid interval for p_v - p_c, element-wise over
    numpy arrays (the simulation test runs thousands of experiments at once).
    `planned_*`: the arm's size once the campaign is complete (sets τ²). An arm with
    no trials yet gives NaN bounds."""
    n_v, n_c = np.asarray(n_v, dtype=float), np.asarray(n_c, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = np.asarray(s_v) / n_v - np.asarray(s_c) / n_c
        q_v, q_c = _adjusted(s_v, n_v), _adjusted(s_c, n_c)
        var_v, var_c = q_v * (1 - q_v), q_c * (1 - q_c)
        variance = var_v / n_v + var_c / n_c
        # The planned size is never below what has been counted.
        planned = var_v / np.maximum(planned_v, n_v) + var_c / np.maximum(planned_c, n_c)
        half = sequence_half_width(variance, MIXING_RATIO * planned, alpha)
    empty = (n_v <= 0) | (n_c <= 0)
    half = np.where(empty, np.nan, half)
    return point, point - half, point + half


class Verdict(StrEnum):
    VARIANT_WINS = "variant_wins"
    CONTROL_WINS = "control_wins"
    NO_DIFFERENCE = "no_difference"
    KEEP_RUNNING = "keep_running"


@dataclass(frozen=True)
class Sequential:
    """The always-valid interval on p_v - p_c and what it lets a marketer say."""

    difference: float | None
    low: float | None
    high: float | None
    # The smallest |difference| this campaign's full audience detects (sequential
    # test, 80% power), at the control's observed rate.
    mde: float | None
    verdict: Verdict
    text: str


def decide(low: Any, high: Any, mde: Any, higher_is_better: bool = True) -> Any:
    """The verdict of each always-valid interval [low, high] on p_v - p_c (arrays):

    - VARIANT_WINS: the interval lies wholly on the variant's better side of 0
      (above 0, or below 0 for a metric where lower is better, i.e. unsubscribes).
      With 95% probability no such claim is ever wrong however often one looks.
    - CONTROL_WINS: wholly on the control's better side.
    - NO_DIFFERENCE: it contains 0 and lies inside (-mde, +mde): every difference
      this audience could detect is ruled out, so there is nothing left to find at
      this size (with 95% probability, if the true difference is at least the MDE,
      this is never said).
    - KEEP_RUNNING: otherwise, and while an arm has no recipients (NaN bounds).
    """
    low, high, mde = np.asarray(low), np.asarray(high), np.asarray(mde)
    above, below = low > 0, high < 0
    inside = (low > -mde) & (high < mde)
    return np.select(
        [above, below, inside],
        [
            Verdict.VARIANT_WINS if higher_is_better else Verdict.CONTROL_WINS,
            Verdict.CONTROL_WINS if higher_is_better else Verdict.VARIANT_WINS,
            Verdict.NO_DIFFERENCE,
        ],
        default=Verdict.KEEP_RUNNING,
    )


def verdict_text(verdict: Verdict, variant: str, control: str, metric: str, mde: float | None) -> str:
    if verdict == Verdict.VARIANT_WINS:
        return f"{variant} beats {control} on {metric}, safe to stop"
    if verdict == Verdict.CONTROL_WINS:
        return f"{control} beats {variant} on {metric}, safe to stop"
    if verdict == Verdict.NO_DIFFERENCE:
        size = f" (any difference is under {mde * 100:.2f} points)" if mde is not None else ""
        return f"no difference likely at this size{size}"
    return "keep running"


def difference_sequence(
    s_v: int,
    n_v: int,
    s_c: int,
    n_c: int,
    *,
    planned_v: int,
    planned_c: int,
    variant: str,
    control: str,
    metric: str,
    higher_is_better: bool = True,
) -> Sequential:
    """The always-valid interval and verdict of one variant against the control on one metric."""
    point, low, high = (float(x) for x in difference_bounds(s_v, n_v, s_c, n_c, planned_v, planned_c))
    baseline = float(_adjusted(s_c, n_c))
    mde = sequential_mde(baseline, max(planned_v, n_v), max(planned_c, n_c)) if n_v and n_c else None
    verdict = Verdict(str(decide(low, high, mde if mde is not None else 0.0, higher_is_better)))
    finite = not math.isnan(low)
    return Sequential(
        difference=point if n_v and n_c else None,
        low=low if finite else None,
        high=high if finite else None,
        mde=mde,
        verdict=verdict,
        text=verdict_text(verdict, variant, control, metric, mde),
    )


# -------------------------------------------------------- setup calculator


def _standard_error(baseline: float, n_v: float, n_c: float) -> float:
    return math.sqrt(baseline * (1 - baseline) * (1 / n_v + 1 / n_c))


def fixed_horizon_mde(baseline: float, n_v: float, n_c: float, power: float = POWER) -> float:
    """Smallest |p_v - p_c| a single look at these sizes detects (two-sided, 95%)."""
    z = stats.norm.ppf(1 - ALPHA / 2) + stats.norm.ppf(power)
    return float(z * _standard_error(baseline, n_v, n_c))


def sequential_mde(
    baseline: float, n_v: float, n_c: float, power: float = POWER, planned_v: float = 0, planned_c: float = 0
) -> float:
    """Smallest |p_v - p_c| the always-valid interval excludes 0 for, with `power`, by
    the time n_v and n_c are counted (τ² set by the planned sizes, default these).
    Conservative: it counts only the last look, not an earlier crossing."""
    se = _standard_error(baseline, n_v, n_c)
    planned_se = _standard_error(baseline, max(planned_v, n_v), max(planned_c, n_c))
    half = float(sequence_half_width(se**2, MIXING_RATIO * planned_se**2))
    return float(half + stats.norm.ppf(power) * se)


class ArmPlan(BaseModel):
    variant: str
    recipients: int
    # None when this arm or the control gets under one recipient (a weight near 0):
    # there is nothing to detect with.
    mde_absolute: float | None  # sequential, 80% power
    mde_relative: float | None  # over the baseline
    fixed_horizon_mde_absolute: float | None
    # Recipients of the whole audience counted before a true lift of `expected_lift`
    # is called with 80% power; None without an expected lift, or if the audience is too small.
    recipients_to_answer: int | None


class CampaignPlan(BaseModel):
    """The setup calculator's answer (the experiments API's `POST .../campaign-plan`)."""

    audience: int
    baseline_rate: float
    writeback_seconds: float  # the whole audience written at the Iterable budget
    arms: list[ArmPlan]


def plan_campaign(
    audience: int,
    baseline_rate: float,
    variants: Sequence[str],
    weights: Sequence[float],
    control: str,
    profiles_per_second: float,
    expected_lift: float | None = None,
) -> CampaignPlan:
    """What a campaign of this size can find, per variant against the control, and
    how long writing its audience takes. Every recipient is written before the send,
    so the answer comes no sooner than `writeback_seconds` plus the engagement's own time."""
    total_weight = sum(weights)
    size = {name: audience * w / total_weight for name, w in zip(variants, weights)}
    n_c = size[control]
    arms = []
    for name in variants:
        if name == control:
            continue
        n_v = size[name]
        testable = n_v >= 1 and n_c >= 1
        mde = _finite(sequential_mde(baseline_rate, n_v, n_c)) if testable else None
        arms.append(
            ArmPlan(
                variant=name,
                recipients=round(n_v),
                mde_absolute=mde,
                mde_relative=_finite(mde / baseline_rate) if mde is not None else None,
                fixed_horizon_mde_absolute=_finite(fixed_horizon_mde(baseline_rate, n_v, n_c)) if testable else None,
                recipients_to_answer=_recipients_to_answer(baseline_rate, n_v, n_c, audience, expected_lift),
            )
        )
    return CampaignPlan(
        audience=audience,
        baseline_rate=baseline_rate,
        writeback_seconds=audience / profiles_per_second,
        arms=arms,
    )


def _finite(value: float) -> float | None:
    """JSON has no NaN or infinity (pydantic would send null for a float field)."""
    return value if math.isfinite(value) else None


def _recipients_to_answer(
    baseline: float, n_v: float, n_c: float, audience: int, expected_lift: float | None
) -> int | None:
    """The share f of the audience at which the sequential MDE falls to the expected
    difference, times the audience."""
    if expected_lift is None or n_v < 1 or n_c < 1:
        return None
    target = abs(expected_lift) * baseline

    def gap(share: float) -> float:
        return sequential_mde(baseline, share * n_v, share * n_c, planned_v=n_v, planned_c=n_c) - target

    if gap(1.0) > 0:
        return None
    low = 1.0 / min(n_v, n_c)
    if gap(low) <= 0:
        return math.ceil(low * audience)
    return math.ceil(float(optimize.brentq(gap, low, 1.0)) * audience)
