"""The experiments API's request and response bodies (what the console's pages and
its `/api/...` JSON are built from). Campaign sections are campaigns.py's models;
the results table is results.py's."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from liftstack_experiments.campaigns import (
    AssignmentSection,
    SendSection,
    Step,
    SyncSection,
    TemplateSection,
)
from liftstack_experiments.downstream import Audience, WritebackRun
from liftstack_shared.bounds import INT64_MAX


class CampaignCreated(BaseModel):
    id: str
    key: str


class CampaignSummary(BaseModel):
    id: str
    name: str
    key: str
    connection_id: str
    variants: list[str]
    list_name: str | None = None
    created_at: datetime


class CampaignList(BaseModel):
    campaigns: list[CampaignSummary]


class VariantSummary(BaseModel):
    name: str
    weight: float
    subject: str
    preheader: str


class WritebackProgress(WritebackRun):
    """The writeback job's current run, plus the runs before it (re-triggers)."""

    previous_runs: list[WritebackRun] = Field(default_factory=list)


class CampaignState(BaseModel):
    """Every step's state, refreshed from the services that own them."""

    id: str
    name: str
    key: str
    connection_id: str
    control: str
    variants: list[VariantSummary]
    created_at: datetime
    step: Step
    sync: SyncSection | None
    assignment: AssignmentSection | None
    writeback: WritebackProgress | None
    # Why the writeback's progress could not be read just now (the step stays).
    writeback_error: str | None = None
    template: TemplateSection | None
    send: SendSection | None
    # The sandbox send's simulated rates per variant; None: no sandbox to send from.
    sandbox_rates: dict[str, dict[str, float]] | None = None


class AudienceList(BaseModel):
    audiences: list[Audience]


class SyncBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    list_id: int = Field(ge=0, le=INT64_MAX)
    list_name: str | None = Field(default=None, max_length=500)


class AssignStarted(BaseModel):
    started: bool = Field(description="False: an assignment is already running or done.")


class SendBody(BaseModel):
    """Options of the sandbox's simulated send (all optional)."""

    model_config = ConfigDict(extra="forbid")

    rates: dict[str, dict[str, float]] | None = None
    seed: int = Field(default=0, ge=0, le=INT64_MAX)
    duplicates_rate: float = Field(default=0.0, ge=0, le=1)
    reorder: bool = False


class PlanVariant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    weight: float = Field(default=1.0, gt=0, le=1000)


class PlanBody(BaseModel):
    """The setup calculator's inputs: how many recipients, the control's expected
    rate, the variants and their weights (the control among them)."""

    model_config = ConfigDict(extra="forbid")

    audience: int = Field(ge=2, le=1_000_000_000)
    baseline_rate: float = Field(gt=0, lt=1, description="The control's expected rate, e.g. 0.03 for 3% clicks")
    variants: list[PlanVariant] = Field(min_length=2, max_length=10)
    control: str | None = Field(default=None, description="A variant's name; default: the first variant.")
    expected_lift: float | None = Field(
        default=None, gt=0, le=10, description="Relative lift to size for (0.1 = +10%); gives recipients_to_answer"
    )

    @model_validator(mode="after")
    def _control(self) -> PlanBody:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the variants")
        return self


class OverrideBody(BaseModel):
    """An Owner's "ready anyway": why, in words (recorded on the campaign)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500)
