"""Exposure truth in the results table (pure): a recipient whose rendered branch is
not their assigned variant (their write failed, so they got the control) is in the
"not written" row and in no variant's counts; the sample-ratio check runs on
exposures. The live version, with the sandbox failing writes: tests/console/test_exposure_truth.py."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.campaigns import AssignmentSection, Campaign, Variant
from liftstack_experiments.results import SendRecord, exposure_of, results_table
from liftstack_shared.messages import EventType

NOW = datetime.now(UTC)


def _campaign(counts: dict[str, int]) -> Campaign:
    return Campaign(
        id="cmp_1",
        workspace_id="ws",
        key="spring",
        name="Spring",
        connection_id="c",
        variants=[Variant(name="A", subject="a", html="a"), Variant(name="B", subject="b", html="b")],
        control="A",
        created_at=NOW,
        updated_at=NOW,
        created_by="u",
        assignment=AssignmentSection(status="completed", job_id="j", counts=counts, identity="email"),
    )


def test_not_written_recipients_get_their_own_row_and_leave_every_lift():
    emails = [f"p{i}@example.com" for i in range(400)]
    assigned = {e: assign_variant("spring", e, ["A", "B"], [1.0, 1.0]) for e in emails}
    campaign = _campaign(dict(Counter(assigned.values())))
    # Every fifth recipient's write failed: no lf_assignments, so the control rendered.
    failed = set(emails[::5])
    records = [SendRecord(email=e, variant=None if e in failed else assigned[e], status="sent") for e in emails]
    records.append(SendRecord(email="p1@example.com", variant=assigned["p1@example.com"], status="sent"))  # repeated
    records.append(SendRecord(email="broken@example.com", variant=None, status="skipped"))  # render failed
    exposure = exposure_of(campaign, records)
    assert exposure.not_written == dict(Counter(assigned[e] for e in failed) | Counter({"A": 0, "B": 0}))
    assert sorted(exposure.not_written_recipients) == sorted(failed)
    written = Counter(assigned[e] for e in emails if e not in failed)
    assert exposure.exposed == {"A": written["A"], "B": written["B"]}

    # Everybody was sent; the not-written ones click a lot (under their assigned variant's hash).
    counts: dict[tuple[str, str], int] = Counter()
    not_written_counts: dict[tuple[str, str], int] = Counter()
    for e in emails:
        counts[(assigned[e], EventType.SEND)] += 1
        if e in failed:
            not_written_counts[(assigned[e], EventType.SEND)] += 1
            counts[(assigned[e], EventType.CLICK)] += 1
            not_written_counts[(assigned[e], EventType.CLICK)] += 1
    table = results_table(campaign, dict(counts), 0, exposure, dict(not_written_counts))
    rows = {row.name: row for row in table.variants}
    for name in ("A", "B"):
        assert rows[name].exposed == written[name]
        assert rows[name].metrics[EventType.SEND].count == written[name]
        assert rows[name].metrics[EventType.CLICK].count == 0  # none of the not-written clicks
    row = table.not_written
    assert row is not None and row.recipients == len(failed) and row.received == "A"
    assert row.metrics[EventType.SEND].count == len(failed)
    assert row.metrics[EventType.CLICK].rate == 1.0
    assert table.srm.basis == "exposures" and not table.srm.mismatch


def test_failures_in_one_variant_only_raise_the_sample_ratio_alarm_on_exposures():
    emails = [f"q{i}@example.com" for i in range(4000)]
    assigned = {e: assign_variant("spring", e, ["A", "B"], [1.0, 1.0]) for e in emails}
    campaign = _campaign(dict(Counter(assigned.values())))
    failed = {e for e in emails if assigned[e] == "B"}
    failed = set(sorted(failed)[: len(failed) // 4])  # a quarter of B's writes failed, none of A's
    records = [SendRecord(email=e, variant=None if e in failed else assigned[e], status="sent") for e in emails]
    exposure = exposure_of(campaign, records)
    assert results_table(campaign, {}, 0, exposure, {}).srm.mismatch
    # On assignments, the split looks fine: that is why the check runs on exposures.
    assert not results_table(campaign, {}, 0).srm.mismatch


def test_no_verdict_is_read_before_send_events_arrive():
    """Per assigned recipient the denominator is complete while events trickle in:
    zero clicks on 10,000 each would otherwise read as "no difference likely"."""
    campaign = _campaign({"A": 10_000, "B": 10_000})
    waiting = results_table(campaign, {("A", EventType.CLICK): 3, ("B", EventType.CLICK): 2}, 5)
    cell = waiting.variants[1].metrics[EventType.CLICK].sequential
    assert cell is not None and cell.verdict == "keep_running" and cell.text == "keep running (no send events yet)"
    sent = {("A", EventType.SEND): 10_000, ("B", EventType.SEND): 10_000}
    counted = results_table(campaign, {**sent, ("A", EventType.CLICK): 300, ("B", EventType.CLICK): 300}, 0)
    cell = counted.variants[1].metrics[EventType.CLICK].sequential
    assert cell is not None and cell.verdict == "no_difference" and cell.low is not None
