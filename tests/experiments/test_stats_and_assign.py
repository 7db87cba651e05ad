from __future__ import annotations

from collections import Counter

import pytest

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.plan import plan_assignments
from liftstack_experiments.stats import chi2_survival, lift_over_control, sample_ratio_check
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
    "x,dof,expected",
    [
        (3.841458820694124, 1, 0.05),
        (10.827566170662733, 1, 0.001),
        (5.991464547107979, 2, 0.05),
        (0.5, 3, 0.918891411654),
        (30.0, 4, 4.89e-06),
    ],
)
def test_chi2_survival_matches_tables(x, dof, expected):
    assert chi2_survival(x, dof) == pytest.approx(expected, rel=1e-3)


def test_lift_and_interval():
    lift = lift_over_control(s_v=120, n_v=1000, s_c=100, n_c=1000)
    assert lift.lift == pytest.approx(0.2)
    assert lift.low < 0.2 < lift.high
    assert lift.low < 0  # 12% vs 10% on 1,000 each is not significant
    strong = lift_over_control(s_v=1200, n_v=10000, s_c=1000, n_c=10000)
    assert strong.low > 0
    assert lift_over_control(5, 10, 0, 10).lift is None


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
