"""The sequential verdict under peeking, simulated (pure, numpy-vectorised).

A/A experiments (both arms at the same true rate) are looked at every 100
recipients, as a marketer refreshing the live results page would. The always-valid
interval must call a winner in at most 5% of them, however many looks; the
fixed-horizon 95% interval, looked at the same way, calls one far more often. Then
the power: with a real lift, how often the sequential verdict finds it by the end.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from liftstack_experiments.stats import Verdict, decide, difference_bounds, lift_over_control, sequential_mde

EXPERIMENTS = 2_000
RECIPIENTS = 10_000  # per experiment, alternating between the two arms
PEEK_EVERY = 100  # recipients
BASELINE = 0.05
Z95 = stats.norm.ppf(0.975)


def _peeks(rate_a: float, rate_b: float, seed: int) -> tuple[np.ndarray, ...]:
    """Cumulative (successes, trials) per arm at every look: arrays (experiments, looks)."""
    rng = np.random.default_rng(seed)
    per_arm = RECIPIENTS // 2
    step = PEEK_EVERY // 2
    a = rng.random((EXPERIMENTS, per_arm), dtype=np.float32) < rate_a
    b = rng.random((EXPERIMENTS, per_arm), dtype=np.float32) < rate_b
    looks = np.arange(step, per_arm + 1, step)
    s_a = np.cumsum(a, axis=1, dtype=np.int32)[:, looks - 1]
    s_b = np.cumsum(b, axis=1, dtype=np.int32)[:, looks - 1]
    n = np.broadcast_to(looks, s_a.shape)
    return s_a, s_b, n


def _sequential_verdicts(s_a, s_b, n) -> np.ndarray:
    """Variant B against control A at every look: the verdict the results page shows."""
    planned = RECIPIENTS // 2
    _, low, high = difference_bounds(s_b, n, s_a, n, planned, planned)
    mde = sequential_mde(BASELINE, planned, planned)
    return decide(low, high, mde)


def _fixed_horizon_significant(s_a, s_b, n) -> np.ndarray:
    """The fixed-horizon 95% lift interval (lift_over_control's delta method on the
    log ratio, vectorised) excludes 0 at that look."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log((s_b / n) / (s_a / n))
        se = np.sqrt((1 - s_b / n) / s_b + (1 - s_a / n) / s_a)
        return (s_a > 0) & (s_b > 0) & (np.abs(log_ratio) > Z95 * se)


def test_the_vectorised_fixed_horizon_interval_is_the_results_page_one():
    lift = lift_over_control(130, 1000, 100, 1000)
    assert lift.low is not None and lift.low > 0
    assert _fixed_horizon_significant(np.array([100]), np.array([130]), np.array([1000]))[0]
    lift = lift_over_control(120, 1000, 100, 1000)
    assert lift.low is not None and lift.low < 0
    assert not _fixed_horizon_significant(np.array([100]), np.array([120]), np.array([1000]))[0]


def test_peeking_aa_experiments_sequential_false_positives_stay_under_5_percent():
    s_a, s_b, n = _peeks(BASELINE, BASELINE, seed=1)
    verdicts = _sequential_verdicts(s_a, s_b, n)
    called = (verdicts == Verdict.VARIANT_WINS) | (verdicts == Verdict.CONTROL_WINS)
    sequential_fpr = called.any(axis=1).mean()
    naive_fpr = _fixed_horizon_significant(s_a, s_b, n).any(axis=1).mean()
    final_look_fpr = _fixed_horizon_significant(s_a, s_b, n)[:, -1].mean()
    no_difference = (verdicts[:, -1] == Verdict.NO_DIFFERENCE).mean()
    print(
        f"\nA/A, {EXPERIMENTS} experiments x {n.shape[1]} looks (every {PEEK_EVERY} of {RECIPIENTS} recipients,"
        f" rate {BASELINE:.0%}): sequential FPR {sequential_fpr:.2%}; naive fixed-horizon FPR at any look"
        f" {naive_fpr:.2%} (at the last look only {final_look_fpr:.2%}); 'no difference likely' at the end"
        f" {no_difference:.1%}"
    )
    assert sequential_fpr <= 0.05
    assert naive_fpr > 0.15  # the peeking problem, reproduced
    assert 0.03 < final_look_fpr < 0.07  # one look at a fixed size is fine


def test_a_real_lift_is_found_by_the_sequential_verdict():
    lifted = 0.07  # 5% -> 7%: a 40% relative lift, 2 points, on 5,000 per arm
    s_a, s_b, n = _peeks(BASELINE, lifted, seed=2)
    verdicts = _sequential_verdicts(s_a, s_b, n)
    won = (verdicts == Verdict.VARIANT_WINS).any(axis=1)
    wrong = (verdicts == Verdict.CONTROL_WINS).any(axis=1).mean()
    stopped_at = np.argmax(verdicts == Verdict.VARIANT_WINS, axis=1)[won]
    median_stop = int(np.median(stopped_at) + 1) * PEEK_EVERY
    print(
        f"\npower, {BASELINE:.0%} -> {lifted:.0%} on {RECIPIENTS} recipients: sequential {won.mean():.1%}"
        f" (median stop at {median_stop} recipients; wrong-way calls {wrong:.2%});"
        f" sequential MDE {sequential_mde(BASELINE, RECIPIENTS // 2, RECIPIENTS // 2):.2%} points"
    )
    assert won.mean() > 0.8
    assert wrong == 0
