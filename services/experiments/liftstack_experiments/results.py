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

Exposure: assigned is not exposed. A recipient whose write never succeeded has no
`lf_assignments.<key>` and renders the template's final `else`, the control, whatever
they were assigned. Where the send says which branch each recipient rendered (the
sandbox records the profile's value at render time: `exposure_of`), every
recipient whose rendered branch is not their assigned variant is "not written": they
get their own row and are left out of every variant's counts, the control's
included, so both sides of each comparison are "assigned and written". The
sample-ratio check then runs on the exposures.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

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


# --------------------------------------------------------------------- exposure


class SendRecord(BaseModel):
    """What one recipient got from a send (the sandbox's send record): `variant` is
    the value of `lf_assignments.<key>` in their profile when it rendered (None: not
    written)."""

    model_config = ConfigDict(extra="ignore")

    sendId: str | None = None
    email: str | None = None
    userId: str | None = None
    variant: str | None = None
    status: str  # "sent", or "skipped" when the template failed to render for them


class Exposure(BaseModel):
    """Who received what, from the send's own record."""

    # Recipients who rendered their assigned variant, per variant.
    exposed: dict[str, int]
    # Recipients who rendered something else (the control: not written), by the
    # variant they were assigned.
    not_written: dict[str, int]
    not_written_recipients: list[str] = Field(default_factory=list, exclude=True)


def exposure_of(campaign: Campaign, records: list[SendRecord]) -> Exposure:
    """Compare each recipient's rendered branch with their assignment. A recipient
    whose render failed (`skipped`) received nothing and counts in neither."""
    names = campaign.variant_names
    exposed = dict.fromkeys(names, 0)
    not_written = dict.fromkeys(names, 0)
    recipients: list[str] = []
    seen: set[str] = set()
    for record in records:
        recipient = recipient_key(record.email, record.userId, campaign.identity)
        if record.status != "sent" or recipient is None or recipient in seen:
            continue
        seen.add(recipient)
        assigned = assign_variant(campaign.key, recipient, names, campaign.weights)
        if record.variant == assigned:
            exposed[assigned] += 1
        else:
            not_written[assigned] += 1
            recipients.append(recipient)
    return Exposure(exposed=exposed, not_written=not_written, not_written_recipients=recipients)


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
    # Recipients who received this variant (rendered it); None until the send says.
    exposed: int | None = None
    metrics: dict[str, MetricCell]  # EventType value -> cell, in METRICS order


class NotWrittenRow(BaseModel):
    """Recipients whose write never succeeded: they received the control, and are in
    no variant's counts or lift."""

    recipients: int
    received: str  # the control's name
    assigned: dict[str, int]  # by the variant they were assigned
    metrics: dict[str, MetricCell]  # counts and rates only


class SampleRatio(BaseModel):
    basis: str  # "exposures" when the send says who got what, else "sends", or "assigned" until send events arrive
    p_value: float
    mismatch: bool


class ResultsTable(BaseModel):
    srm: SampleRatio
    events: int  # distinct events attributed to the campaign
    variants: list[VariantResults]
    not_written: NotWrittenRow | None = None  # None: no exposure record (or nobody)
    rate_basis: str = "assigned"  # rates are per "sends", or per "assigned" (exposed) recipient before sends arrive


# Before send events arrive the rates are per assigned recipient, with a denominator
# that is already complete while the events trickle in: not the stream of finished
# observations the confidence sequence is about, so no verdict is read from it.
WAITING_FOR_SENDS = SequentialInterval(
    difference=None,
    low=None,
    high=None,
    mde=None,
    verdict=Verdict.KEEP_RUNNING,
    text="keep running (no send events yet)",
)


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


def results_table(
    campaign: Campaign,
    counts: dict[tuple[str, str], int],
    events: int,
    exposure: Exposure | None = None,
    not_written_counts: dict[tuple[str, str], int] | None = None,
) -> ResultsTable:
    """`counts`: (variant, event type) -> unique recipients, by assigned variant.
    `exposure` and `not_written_counts` (the same counts of the not-written
    recipients alone): the send's record of who received what, when known."""
    assigned = campaign.assignment.counts if campaign.assignment else {}
    control = campaign.control
    names = campaign.variant_names
    left_out = not_written_counts or {}
    # Each variant's counts without its not-written recipients.
    counts = {key: n - left_out.get(key, 0) for key, n in counts.items()}
    sends_of = {name: counts.get((name, EventType.SEND), 0) for name in names}
    # Rates are per send; before any send event arrives, per exposed (or assigned) recipient.
    audience = {name: exposure.exposed[name] if exposure else int(assigned.get(name, 0)) for name in names}
    basis = "sends" if any(sends_of.values()) else "assigned"
    base_of = sends_of if basis == "sends" else audience
    rows: list[VariantResults] = []
    for name in names:
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
                cell.sequential = (
                    WAITING_FOR_SENDS
                    if basis != "sends"
                    else _sequential(
                        difference_sequence(
                            n,
                            base_of[name],
                            n_control,
                            base_of[control],
                            # The full audience of each arm: where the sequence is tuned to be narrowest.
                            planned_v=audience[name],
                            planned_c=audience[control],
                            variant=name,
                            control=control,
                            metric=NOUNS[event_type],
                            higher_is_better=event_type not in LOWER_IS_BETTER,
                        )
                    )
                )
            cells[str(event_type)] = cell
        rows.append(
            VariantResults(
                name=name,
                control=name == control,
                assigned=int(assigned.get(name, 0)),
                exposed=exposure.exposed[name] if exposure else None,
                metrics=cells,
            )
        )
    srm_basis = "exposures" if exposure else basis
    srm = sample_ratio_check([audience[n] if exposure else base_of[n] for n in names], campaign.weights)
    return ResultsTable(
        srm=SampleRatio(basis=srm_basis, p_value=srm.p_value, mismatch=srm.mismatch),
        events=events,
        variants=rows,
        not_written=_not_written_row(campaign, exposure, left_out),
        rate_basis=basis,
    )


def _not_written_row(
    campaign: Campaign, exposure: Exposure | None, left_out: dict[tuple[str, str], int]
) -> NotWrittenRow | None:
    if exposure is None or not sum(exposure.not_written.values()):
        return None
    total = {
        event_type: sum(left_out.get((n, event_type), 0) for n in campaign.variant_names) for event_type, _ in METRICS
    }
    sends = total[EventType.SEND]
    base = sends or sum(exposure.not_written.values())
    metrics = {
        str(event_type): MetricCell(
            count=total[event_type],
            rate=None if event_type == EventType.SEND else rate(total[event_type], base),
            lift=None,
        )
        for event_type, _ in METRICS
    }
    return NotWrittenRow(
        recipients=sum(exposure.not_written.values()),
        received=campaign.control,
        assigned={name: n for name, n in exposure.not_written.items() if n},
        metrics=metrics,
    )
