from __future__ import annotations

import math
from collections import Counter

import pytest

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.plan import plan_assignments
from liftstack_experiments.stats import (
    Verdict,
    difference_sequence,
    lift_over_control,
    plan_campaign,
    sample_ratio_check,
    sequential_mde,
)
from liftstack_shared.messages import AudienceMember


def test_assignment_is_deterministic_and_follows_weights():
    recipients = [f"user{i}@example.com" for i in range(20_000)]
    first = [assign_variant("spring", r, ["A", "B"], [1, 3]) for r in recipients]
    again = [assign_variant("spring", r, ["A", "B"], [1, 3]) for r in recipients]
    assert first == again
    share_b = Counter(first)["B"] / len(recipients)
    assert 0.73 < share_b < 0.77
    # Another campaign splits the same people independently.
    other = [assign_variant("summer", r, ["A", "B"], [1, 3]) for r in recipients]
    assert sum(a != b for a, b in zip(first, other)) > 4000


def test_assignment_rejects_bad_weights():
    with pytest.raises(ValueError):
        assign_variant("c", "r", [])
    with pytest.raises(ValueError):
        assign_variant("c", "r", ["A", "B"], [0, 0])
    with pytest.raises(ValueError):
        assign_variant("c", "r", ["A", "B"], [1])


@pytest.mark.parametrize(
    "observed,weights,expected_p",
    [
        # chi2 = 3.841458820694124 on 1 dof is p = 0.05: counts that give it exactly.
        ([5098, 4902], [1, 1], 0.05),
        ([2500, 7500], [1, 3], 1.0),
        ([100, 100, 100], [1, 1, 1], 1.0),
    ],
)
def test_sample_ratio_p_values_match_the_chi_square_table(observed, weights, expected_p):
    assert sample_ratio_check(observed, weights).p_value == pytest.approx(expected_p, abs=2e-3)


def test_lift_and_interval():
    lift = lift_over_control(s_v=120, n_v=1000, s_c=100, n_c=1000)
    assert lift.lift == pytest.approx(0.2)
    assert lift.low < 0.2 < lift.high
    assert lift.low < 0  # 12% vs 10% on 1,000 each is not significant
    strong = lift_over_control(s_v=1200, n_v=10000, s_c=1000, n_c=10000)
    assert strong.low > 0
    assert lift_over_control(5, 10, 0, 10).lift is None


def _cell(s_v, n_v, s_c, n_c, planned=None, higher_is_better=True):
    planned = planned or max(n_v, n_c)
    return difference_sequence(
        s_v,
        n_v,
        s_c,
        n_c,
        planned_v=planned,
        planned_c=planned,
        variant="B",
        control="A",
        metric="clicks",
        higher_is_better=higher_is_better,
    )


def test_sequential_verdicts_say_what_the_interval_allows():
    win = _cell(1300, 10_000, 1000, 10_000)
    assert win.verdict == Verdict.VARIANT_WINS and win.text == "B beats A on clicks, safe to stop"
    assert win.low is not None and win.low > 0
    lose = _cell(1000, 10_000, 1300, 10_000)
    assert lose.verdict == Verdict.CONTROL_WINS and lose.text == "A beats B on clicks, safe to stop"
    # Fewer unsubscribes is better: the variant with more of them loses.
    unsub = _cell(1300, 10_000, 1000, 10_000, higher_is_better=False)
    assert unsub.verdict == Verdict.CONTROL_WINS
    # The same data as the fixed-horizon test below: 12% vs 10% on 1,000 each.
    assert _cell(120, 1000, 100, 1000).verdict == Verdict.KEEP_RUNNING
    # Equal rates at the full size: the interval is inside +-MDE.
    same = _cell(1000, 10_000, 1000, 10_000)
    assert same.verdict == Verdict.NO_DIFFERENCE and same.text.startswith("no difference likely at this size")
    assert same.mde is not None and same.high is not None and same.high < same.mde
    # Equal rates early in a big campaign: not yet.
    assert _cell(100, 1000, 100, 1000, planned=100_000).verdict == Verdict.KEEP_RUNNING
    # Nobody in an arm yet.
    empty = _cell(0, 0, 0, 0, planned=1000)
    assert empty.verdict == Verdict.KEEP_RUNNING and empty.low is None


def test_the_always_valid_interval_is_wider_than_the_fixed_horizon_one():
    seq = _cell(1300, 10_000, 1000, 10_000)
    fixed_half = 1.959964 * ((0.13 * 0.87 + 0.1 * 0.9) / 10_000) ** 0.5
    assert seq.high is not None and seq.low is not None
    assert (seq.high - seq.low) / 2 > 1.4 * fixed_half


def test_campaign_plan_mde_and_writeback_time():
    plan = plan_campaign(90_000, 0.03, ["A", "B", "C"], [1, 1, 1], "A", 4500, expected_lift=0.3)
    assert plan.writeback_seconds == pytest.approx(20.0)
    assert [arm.variant for arm in plan.arms] == ["B", "C"]
    arm = plan.arms[0]
    assert arm.recipients == 30_000
    assert arm.mde_absolute == pytest.approx(sequential_mde(0.03, 30_000, 30_000))
    assert arm.fixed_horizon_mde_absolute < arm.mde_absolute
    assert arm.mde_relative == pytest.approx(arm.mde_absolute / 0.03)
    # A 30% lift is above the ~17% MDE: answered before the whole audience is in.
    assert arm.recipients_to_answer is not None and arm.recipients_to_answer < 90_000
    # A 5% lift is not answerable at this size.
    small = plan_campaign(90_000, 0.03, ["A", "B"], [1, 1], "A", 4500, expected_lift=0.05)
    assert small.arms[0].recipients_to_answer is None
    # Twice the audience: a smaller MDE.
    assert plan_campaign(180_000, 0.03, ["A", "B"], [1, 1], "A", 4500).arms[0].mde_absolute < (
        plan_campaign(90_000, 0.03, ["A", "B"], [1, 1], "A", 4500).arms[0].mde_absolute
    )


def test_sample_ratio_check():
    assert not sample_ratio_check([5010, 4990], [1, 1]).mismatch
    assert sample_ratio_check([5400, 4600], [1, 1]).mismatch
    assert not sample_ratio_check([2500, 7500], [1, 3]).mismatch


def test_user_id_members_are_assigned_by_user_id_even_with_an_at_sign():
    """A userID-based project's members arrive as userIds (`alice@corp` included):
    each becomes a userId assignment, split on `userId:<id>` as results recompute it."""
    members = [AudienceMember(user_id="alice@corp"), AudienceMember(user_id="bob@corp.example")]
    plan = plan_assignments(
        job_id="j",
        workspace_id="ws",
        connection_id="c",
        campaign_key="k",
        variants=["A", "B"],
        weights=[1.0, 1.0],
        members=members,
    )
    assignments = plan.batches[0].assignments
    assert [(a.user_id, a.email) for a in assignments] == [("alice@corp", None), ("bob@corp.example", None)]
    assert plan.identity == "user_id"
    for a in assignments:
        assert a.variant == assign_variant("k", f"userId:{a.user_id}", ["A", "B"], [1.0, 1.0])


def test_the_calculator_never_answers_nan_and_says_when_an_arm_is_too_small():
    tiny = plan_campaign(1_000, 0.03, ["A", "B"], [1, 1e-9], "A", 4500, expected_lift=0.1)
    (arm,) = tiny.arms
    assert arm.recipients == 0
    assert arm.mde_absolute is None and arm.mde_relative is None and arm.fixed_horizon_mde_absolute is None
    assert arm.recipients_to_answer is None
    for baseline in (1e-300, 1e-108, 0.5, 1 - 1e-12):
        for audience in (2, 3, 1_000_000_000):
            plan = plan_campaign(audience, baseline, ["A", "B", "C"], [1000, 1, 1e-6], "A", 4500, expected_lift=10)
            for arm in plan.arms:
                for value in (arm.mde_absolute, arm.mde_relative, arm.fixed_horizon_mde_absolute):
                    assert value is None or math.isfinite(value)
            plan.model_dump_json()  # serialisable as the API sends it
