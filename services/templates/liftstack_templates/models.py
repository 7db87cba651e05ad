"""The templates API's request and response bodies (also its OpenAPI schemas), and the
saved record of a campaign's template, which the store reads and writes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator

from liftstack_templates.generate import GeneratedTemplate, TemplateSpec


class TemplateRecord(BaseModel):
    """A campaign's spec, its generated source and where it is published."""

    workspace_id: str
    campaign_key: str
    spec: TemplateSpec
    generated: GeneratedTemplate
    generated_at: datetime
    generated_by: str | None = None
    client_template_id: str
    connection_id: str | None = None
    template_id: int | None = None
    published_hash: str | None = None
    published_at: datetime | None = None


class PublishRequest(BaseModel):
    connection_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,100}$")
    template: TemplateSpec
    force: bool = Field(default=False, description="Write even if the content is unchanged")


class PublishStatus(StrEnum):
    CREATED = "created"  # a new Iterable template, now ours
    UPDATED = "updated"  # our template got the new content
    UNCHANGED = "unchanged"  # it already had it: no call made


class PublishResult(BaseModel):
    campaign_key: str
    connection_id: str
    template_id: int
    client_template_id: str
    status: PublishStatus
    content_hash: str


class PreviewRequest(BaseModel):
    template: TemplateSpec | None = Field(default=None, description="Preview this spec")
    campaign_key: str | None = Field(default=None, description="Or the saved one")
    profile: dict[str, Any] = Field(default_factory=dict, description="Sample profile fields")

    @model_validator(mode="after")
    def _one_source(self) -> PreviewRequest:
        if (self.template is None) == (self.campaign_key is None):
            raise ValueError("give either template or campaign_key")
        return self


class VariantPreview(BaseModel):
    variant: str | None = Field(description="The assignment rendered; None: no assignment")
    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    error: str | None = Field(default=None, description="Why this recipient's send would fail")


class PreviewResponse(BaseModel):
    campaign_key: str
    content_hash: str
    previews: list[VariantPreview]
