"""The campaign: what the marketer set up and how far the loop got. Pure: the typed
document and the rules derived from it, no I/O.

One MongoDB document per campaign (store.py), one section per loop step:

    id, workspace_id, key (unique per workspace; the `lf_assignments.<key>` property),
    name, connection_id, variants (name, subject, preheader, html, weight), control,
    sync        the audience sync (the audiences service owns its progress)
    assignment  the hash split, published to `campaign.assignments` (here)
    template    generated / published by the templates service
    send        the sandbox's "send" (the Iterable campaign id events come back with)
    created_at, updated_at, created_by

Every write replaces one section with one `$set` (FerretDB has no transactions).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from liftstack_shared.recipients import Identity

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")

SyncStatus = Literal["pending", "running", "completed", "failed"]
AssignmentStatus = Literal["running", "completed", "failed"]
TemplateStatus = Literal["generated", "published"]
SendStatus = Literal["sending", "sent"]
Step = Literal["audience", "assign", "writeback", "template", "send", "results"]
# Writeback job states after which the loop moves on to the template.
WRITEBACK_DONE = ("completed", "completed_with_failures")


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")
    subject: str = Field(min_length=1, max_length=300)
    preheader: str = Field(default="", max_length=300)
    html: str = Field(min_length=1, max_length=200_000)
    weight: float = Field(default=1.0, gt=0, le=1000)


class CampaignCreate(BaseModel):
    """Step 1 of the wizard: name, key, connection, variants, control."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120)
    key: str = Field(description="Lowercase letters, digits and _; the profile property key.")
    connection_id: str = Field(min_length=1, max_length=200)
    variants: list[Variant] = Field(min_length=2, max_length=10)
    control: str | None = Field(default=None, description="A variant's name; default: the first variant.")
    readiness_threshold: float = Field(
        default=0.995, ge=0.5, le=1.0, description="Confirmed-write coverage (succeeded / assigned) needed to be ready"
    )

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        value = value.strip()
        if not KEY_RE.fullmatch(value):
            raise ValueError("use 1-64 lowercase letters, digits or _ (starting with a letter or digit)")
        return value

    @model_validator(mode="after")
    def _variants(self) -> CampaignCreate:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("variant names must be unique")
        if self.control is None:
            self.control = names[0]
        if self.control not in names:
            raise ValueError("control must be one of the variants")
        return self


class SyncSection(BaseModel):
    """The audience sync: the audiences service's record, as last read."""

    id: str
    status: SyncStatus
    list_id: int
    list_name: str | None = None
    members: int = 0
    invalid_skipped: int = 0
    duplicates_skipped: int = 0
    error: str | None = None
    requested_at: datetime
    started_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


class AssignmentSection(BaseModel):
    status: AssignmentStatus
    job_id: str
    total: int = 0
    counts: dict[str, int] = Field(default_factory=dict)
    # How the recipients were identified: how results recompute their variant.
    identity: Identity = "email"
    batch_count: int = 0
    # Recipients the readiness gate reads back from Iterable (plan.read_back_sample).
    sample: list[str] = Field(default_factory=list)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class TemplateSection(BaseModel):
    status: TemplateStatus
    name: str | None = None
    content_hash: str | None = None
    iterable_template_id: int | None = None
    published_at: datetime | None = None


class SendSection(BaseModel):
    iterable_campaign_id: int
    status: SendStatus
    sandbox_project_id: int | None = None
    at: datetime
    recipients: int | None = None
    sent: int | None = None
    skipped: int | None = None
    events: dict[str, int] | None = None
    deliveries: dict[str, Any] | None = None


class ReadinessOverride(BaseModel):
    """An Owner's "ready anyway", with why (kept on the campaign)."""

    by: str
    reason: str
    at: datetime


class Campaign(BaseModel):
    id: str
    workspace_id: str
    key: str
    name: str
    connection_id: str
    variants: list[Variant]
    control: str
    created_at: datetime
    updated_at: datetime
    created_by: str
    sync: SyncSection | None = None
    assignment: AssignmentSection | None = None
    template: TemplateSection | None = None
    send: SendSection | None = None
    readiness_threshold: float = 0.995
    readiness_override: ReadinessOverride | None = None

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    @property
    def weights(self) -> list[float]:
        return [v.weight for v in self.variants]

    @property
    def identity(self) -> Identity:
        return self.assignment.identity if self.assignment else "email"


def job_id_for(campaign: Campaign, sync: SyncSection) -> str:
    """One writeback job per (campaign, audience sync): re-publishing after a restart
    yields the same job and batches, which writeback treats as duplicates."""
    return f"{campaign.id}.{sync.id[:12]}"


def iterable_campaign_id(campaign_id: str) -> int:
    """The Iterable campaignId the sandbox send uses: stable per liftstack campaign."""
    digest = hashlib.sha256(campaign_id.encode()).digest()
    return 100_000_000 + int.from_bytes(digest[:4], "big") % 900_000_000


def current_step(campaign: Campaign, writeback_status: str | None) -> Step:
    """The first step of the loop that is not done yet."""
    if not campaign.sync or campaign.sync.status != "completed":
        return "audience"
    if not campaign.assignment or campaign.assignment.status != "completed":
        return "assign"
    if writeback_status not in WRITEBACK_DONE:
        return "writeback"
    if not campaign.template or campaign.template.status != "published":
        return "template"
    if not campaign.send or campaign.send.status != "sent":
        return "send"
    return "results"


# The sandbox send's simulated engagement, per variant position: the control first.
# Later variants do a little better, so the demo has lift to show.
DEMO_RATES: list[dict[str, float]] = [
    {"open": 0.30, "click": 0.060, "unsubscribe": 0.004, "conversion": 0.020},
    {"open": 0.36, "click": 0.085, "unsubscribe": 0.004, "conversion": 0.028},
    {"open": 0.33, "click": 0.070, "unsubscribe": 0.006, "conversion": 0.024},
    {"open": 0.28, "click": 0.050, "unsubscribe": 0.003, "conversion": 0.018},
]


def demo_rates(campaign: Campaign) -> dict[str, dict[str, float]]:
    """Each variant's simulated rates, by its position."""
    return {name: DEMO_RATES[i % len(DEMO_RATES)] for i, name in enumerate(campaign.variant_names)}
