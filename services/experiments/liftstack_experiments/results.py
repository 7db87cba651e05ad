"""Attribution and the results table. Pure: the consumer (consumers.py) and the
store (store.py) do the I/O.

Attribution: an engagement event's Iterable campaignId (or templateId) maps to the
liftstack campaign (store.py); the recipient's variant is then **recomputed** with
the same deterministic hash the assignment used (assign.py), from the same key
(`liftstack_shared.recipients.recipient_key`, with the campaign's identity). Nothing
per recipient is stored at assignment time, and the answer is the variant that was
written into the profile.

Counting: one `engaged` document per (campaign, event type, recipient), inserted
once; the table's counts are counts of those, so re-delivered and re-sent events
never count twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from liftstack_experiments.assign import assign_variant
from liftstack_experiments.campaigns import Campaign
from liftstack_experiments.stats import (
    Lift,
    Sequential,
    Verdict,
    difference_sequence,
    lift_over_control,
    rate,
    sample_ratio_check,
)
from liftstack_shared.messages import EngagementEvent, EventType
from liftstack_shared.recipients import recipient_key

# What the results table shows, in order; rates are per send.
METRICS: tuple[tuple[EventType, str], ...] = (
    (EventType.SEND, "Sends"),
    (EventType.OPEN, "Unique opens"),
    (EventType.CLICK, "Unique clicks"),
    (EventType.CONVERSION, "Conversions"),
    (EventType.UNSUBSCRIBE, "Unsubscribes"),
)
# What a verdict calls each metric ("B beats A on clicks").
NOUNS: dict[EventType, str] = {
    EventType.OPEN: "opens",
    EventType.CLICK: "clicks",
    EventType.CONVERSION: "conversions",
    EventType.UNSUBSCRIBE: "unsubscribes",
}
# Metrics where fewer is better.
LOWER_IS_BETTER = frozenset({EventType.UNSUBSCRIBE})


@dataclass(frozen=True)
class Attribution:
    campaign_id: str
    variant: str
    recipient: str

    def engaged_id(self, event_type: str) -> str:
        """The natural id of "this recipient did this once" (insert-once)."""
        return f"{self.campaign_id}|{event_type}|{self.recipient}"


def attribute(campaign: Campaign, event: EngagementEvent) -> Attribution | None:
    """The variant this event's recipient was assigned, or None if it names nobody."""
    recipient = recipient_key(event.email, event.user_id, campaign.identity)
    if recipient is None:
        return None
    variant = assign_variant(campaign.key, recipient, campaign.variant_names, campaign.weights)
    return Attribution(campaign.id, variant, recipient)


# ------------------------------------------------------------------------ the table


class LiftInterval(BaseModel):
    """Relative lift over the control with its 95% interval (None where undefined)."""

    lift: float | None
    low: float | None
    high: float | None


class SequentialInterval(BaseModel):
    """The always-valid 95% interval on the rate difference p_variant - p_control
    (absolute, in rate units) and the plain verdict read off it (stats.py)."""

    difference: float | None
    low: float | None
    high: float | None
    mde: float | None = Field(description="Smallest difference this campaign's full audience detects (80% power)")
    verdict: Verdict
    text: str = Field(description='e.g. "B beats A on clicks, safe to stop", "keep running"')


class MetricCell(BaseModel):
    count: int
    rate: float | None
    lift: LiftInterval | None  # fixed horizon; None for the control and for sends
    sequential: SequentialInterval | None = None  # None for the control and for sends


class VariantResults(BaseModel):
    name: str
    control: bool
    assigned: int
    metrics: dict[str, MetricCell]  # EventType value -> cell, in METRICS order


class SampleRatio(BaseModel):
    basis: str  # "sends", or "assigned" until send events arrive
    p_value: float
    mismatch: bool


class ResultsTable(BaseModel):
    srm: SampleRatio
    events: int  # distinct events attributed to the campaign
    variants: list[VariantResults]


def _interval(value: Lift | None) -> LiftInterval | None:
    return None if value is None else LiftInterval(lift=value.lift, low=value.low, high=value.high)


def _sequential(value: Sequential) -> SequentialInterval:
    return SequentialInterval(
        difference=value.difference,
        low=value.low,
        high=value.high,
        mde=value.mde,
        verdict=value.verdict,
        text=value.text,
    )


def results_table(campaign: Campaign, counts: dict[tuple[str, str], int], events: int) -> ResultsTable:
    """`counts`: (variant, event type) -> unique recipients."""
    assigned = campaign.assignment.counts if campaign.assignment else {}
    control = campaign.control
    sends_of = {name: counts.get((name, EventType.SEND), 0) for name in campaign.variant_names}
    # Rates are per send; before any send event arrives, per assigned recipient.
    basis = "sends" if any(sends_of.values()) else "assigned"
    base_of = sends_of if basis == "sends" else {name: int(assigned.get(name, 0)) for name in sends_of}
    rows: list[VariantResults] = []
    for name in campaign.variant_names:
        cells: dict[str, MetricCell] = {}
        for event_type, _label in METRICS:
            n = counts.get((name, event_type), 0)
            if event_type == EventType.SEND:
                cells[str(event_type)] = MetricCell(count=n, rate=None, lift=None)
                continue
            cell = MetricCell(count=n, rate=rate(n, base_of[name]), lift=None)
            if name != control:
                n_control = counts.get((control, event_type), 0)
                cell.lift = _interval(lift_over_control(n, base_of[name], n_control, base_of[control]))
                cell.sequential = _sequential(
                    difference_sequence(
                        n,
                        base_of[name],
                        n_control,
                        base_of[control],
                        # The full audience of each arm: where the sequence is tuned to be narrowest.
                        planned_v=int(assigned.get(name, 0)),
                        planned_c=int(assigned.get(control, 0)),
                        variant=name,
                        control=control,
                        metric=NOUNS[event_type],
                        higher_is_better=event_type not in LOWER_IS_BETTER,
                    )
                )
            cells[str(event_type)] = cell
        rows.append(
            VariantResults(name=name, control=name == control, assigned=int(assigned.get(name, 0)), metrics=cells)
        )
    srm = sample_ratio_check([base_of[name] for name in campaign.variant_names], campaign.weights)
    return ResultsTable(
        srm=SampleRatio(basis=basis, p_value=srm.p_value, mismatch=srm.mismatch), events=events, variants=rows
    )
