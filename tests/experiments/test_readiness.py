"""The readiness gate's rules (pure): each condition, and the Owner's override."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from liftstack_experiments.campaigns import AssignmentSection, Campaign, ReadinessOverride, Variant
from liftstack_experiments.plan import read_back_sample
from liftstack_experiments.readiness import ReadBack, WritebackFacts, evaluate

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SETTLE = 600.0


def _campaign(total: int = 1000, threshold: float = 0.995) -> Campaign:
    return Campaign(
        id="cmp_1",
        workspace_id="ws",
        key="k",
        name="n",
        connection_id="c",
        variants=[Variant(name="A", subject="a", html="a"), Variant(name="B", subject="b", html="b")],
        control="A",
        created_at=NOW,
        updated_at=NOW,
        created_by="u",
        assignment=AssignmentSection(status="completed", job_id="j", total=total, sample=["a@x.com"]),
        readiness_threshold=threshold,
    )


def _done(succeeded: int, ago_s: float = 3600) -> WritebackFacts:
    return WritebackFacts(status="completed", succeeded=succeeded, finished_at=NOW - timedelta(seconds=ago_s))


ALL_READ = ReadBack(sampled=20, matched=20)


def test_ready_when_every_condition_holds():
    readiness = evaluate(_campaign(), _done(1000), ALL_READ, NOW, SETTLE)
    assert readiness.ready and readiness.blocked_by == [] and all(c.ok for c in readiness.conditions)
    assert [c.name for c in readiness.conditions] == ["coverage", "writeback_idle", "read_back", "settled"]


def test_coverage_below_the_threshold_blocks_and_says_how_far():
    readiness = evaluate(_campaign(), _done(980), ALL_READ, NOW, SETTLE)
    assert not readiness.ready and readiness.blocked_by == ["coverage"]
    assert "980 of 1,000" in readiness.conditions[0].detail and "99.5%" in readiness.conditions[0].detail
    # The threshold is per campaign.
    assert evaluate(_campaign(threshold=0.98), _done(980), ALL_READ, NOW, SETTLE).ready
    # Exactly at the threshold is enough.
    assert evaluate(_campaign(), _done(995), ALL_READ, NOW, SETTLE).ready


def test_a_run_in_progress_a_missing_read_back_and_a_fresh_write_block():
    running = WritebackFacts(status="running", succeeded=1000, finished_at=None)
    assert evaluate(_campaign(), running, None, NOW, SETTLE).blocked_by == ["writeback_idle", "read_back", "settled"]
    stale = ReadBack(sampled=20, matched=19, mismatched=["b@x.com"])
    blocked = evaluate(_campaign(), _done(1000), stale, NOW, SETTLE)
    assert blocked.blocked_by == ["read_back"] and "b@x.com" in blocked.conditions[2].detail
    failed = ReadBack(sampled=20, matched=0, error="HTTP 401")
    assert evaluate(_campaign(), _done(1000), failed, NOW, SETTLE).blocked_by == ["read_back"]
    assert evaluate(_campaign(), _done(1000, ago_s=60), ALL_READ, NOW, SETTLE).blocked_by == ["settled"]
    assert evaluate(_campaign(), None, None, NOW, SETTLE).blocked_by == [
        "coverage",
        "writeback_idle",
        "read_back",
        "settled",
    ]


def test_an_owners_override_makes_it_ready_and_keeps_what_blocked():
    campaign = _campaign().model_copy(
        update={"readiness_override": ReadinessOverride(by="owner-1", reason="known bad addresses", at=NOW)}
    )
    readiness = evaluate(campaign, _done(980), ALL_READ, NOW, SETTLE)
    assert readiness.ready and readiness.blocked_by == ["coverage"]
    assert readiness.override is not None and readiness.override.reason == "known bad addresses"


def test_read_back_sample_is_reproducible_and_spread():
    recipients = {f"p{i}@x.com" for i in range(1000)}
    first = read_back_sample("job-1", recipients)
    assert len(first) == 20 and first == read_back_sample("job-1", recipients)
    assert set(first) != set(read_back_sample("job-2", recipients))
    assert read_back_sample("job-1", {"only@x.com"}) == ["only@x.com"]
