"""The readiness gate: whether the campaign may be sent in Iterable. Pure: the
service (service.py) gathers the writeback run and the read-back (iterable_probe.py)
and passes the clock in.

"Writeback completed" is not "profiles ready": a recipient whose write failed gets the
control, and Iterable applies bulk updates asynchronously (a large sync can take about
ten minutes to show). So the gate holds until every condition does:

- `coverage`: confirmed writes (succeeded / assigned) at or above the campaign's
  threshold (default 99.5%);
- `writeback_idle`: no writeback run in progress (a re-trigger included);
- `read_back`: every sampled recipient's profile, read back through Iterable's user
  lookup, shows the variant they were assigned;
- `settled`: at least the settle time since the last write finished.

An Owner may override it, with a reason, which is recorded and shown.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from liftstack_experiments.campaigns import Campaign, ReadinessOverride

ConditionName = Literal["coverage", "writeback_idle", "read_back", "settled"]
RUNNING = ("pending", "running")


class Condition(BaseModel):
    name: ConditionName
    ok: bool
    detail: str


class ReadBack(BaseModel):
    """The sampled profiles, read back from Iterable."""

    sampled: int
    matched: int
    # Sampled recipients whose profile lacks their variant (at most a few, for the wizard).
    mismatched: list[str] = Field(default_factory=list)
    error: str | None = None  # Iterable could not be asked


class WritebackFacts(BaseModel):
    """What the gate needs of the writeback job's current run (None: no run yet)."""

    status: str
    succeeded: int
    finished_at: datetime | None


class Readiness(BaseModel):
    ready: bool
    conditions: list[Condition]
    # Names of the conditions that don't hold (empty when ready on its own).
    blocked_by: list[ConditionName]
    override: ReadinessOverride | None = None


def evaluate(
    campaign: Campaign,
    writeback: WritebackFacts | None,
    read_back: ReadBack | None,
    now: datetime,
    settle_s: float,
) -> Readiness:
    assigned = campaign.assignment.total if campaign.assignment else 0
    conditions = [
        _coverage(writeback, assigned, campaign.readiness_threshold),
        _idle(writeback),
        _read_back(read_back),
        _settled(writeback, now, settle_s),
    ]
    blocked = [c.name for c in conditions if not c.ok]
    override = campaign.readiness_override
    return Readiness(
        ready=not blocked or override is not None, conditions=conditions, blocked_by=blocked, override=override
    )


def _coverage(writeback: WritebackFacts | None, assigned: int, threshold: float) -> Condition:
    succeeded = writeback.succeeded if writeback else 0
    share = succeeded / assigned if assigned else 0.0
    ok = assigned > 0 and share >= threshold
    detail = f"{succeeded:,} of {assigned:,} recipients written ({share:.1%}; needs {threshold:.1%})"
    return Condition(name="coverage", ok=ok, detail=detail)


def _idle(writeback: WritebackFacts | None) -> Condition:
    if writeback is None:
        return Condition(name="writeback_idle", ok=False, detail="writeback has not started")
    if writeback.status in RUNNING:
        return Condition(name="writeback_idle", ok=False, detail=f"a writeback run is {writeback.status}")
    return Condition(name="writeback_idle", ok=True, detail=f"no writeback run in progress ({writeback.status})")


def _read_back(read_back: ReadBack | None) -> Condition:
    if read_back is None:
        return Condition(name="read_back", ok=False, detail="not read back yet (after writeback finishes)")
    if read_back.error:
        return Condition(name="read_back", ok=False, detail=f"Iterable could not be read: {read_back.error}")
    ok = read_back.sampled > 0 and read_back.matched == read_back.sampled
    detail = f"{read_back.matched} of {read_back.sampled} sampled profiles show their variant in Iterable"
    if read_back.mismatched:
        detail += " (not yet: " + ", ".join(read_back.mismatched) + ")"
    return Condition(name="read_back", ok=ok, detail=detail)


def _settled(writeback: WritebackFacts | None, now: datetime, settle_s: float) -> Condition:
    if writeback is None or writeback.finished_at is None or writeback.status in RUNNING:
        return Condition(name="settled", ok=False, detail="the last write has not finished")
    waited = (now - writeback.finished_at).total_seconds()
    ok = waited >= settle_s
    detail = f"last write {waited:,.0f} s ago (Iterable applies bulk updates asynchronously; settle {settle_s:,.0f} s)"
    return Condition(name="settled", ok=ok, detail=detail)
