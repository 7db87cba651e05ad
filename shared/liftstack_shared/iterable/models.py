"""Pydantic models for Iterable's request and response bodies.

Field names are Iterable's own camelCase names (as in iterable-openapi.json), so a
model dumps straight to the wire format and reads like Iterable's documentation.

- Request models forbid unknown fields: a typo must fail here, not be sent.
- Response models allow and keep unknown fields and require only identifiers: Iterable
  adds fields over time and sometimes omits ones its spec calls required, and a read
  must not break on either.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class Region(StrEnum):
    US = "US"
    EU = "EU"


class ListType(StrEnum):
    STANDARD = "Standard"
    DYNAMIC = "Dynamic"
    SUPPRESSION = "Suppression"
    INTERNAL = "Internal"


class TemplateType(StrEnum):
    BASE = "Base"
    BLAST = "Blast"
    TRIGGERED = "Triggered"
    WORKFLOW = "Workflow"


class MessageMedium(StrEnum):
    EMAIL = "Email"
    PUSH = "Push"
    IN_APP = "InApp"
    SMS = "SMS"


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_body(self) -> dict[str, Any]:
        # Only what the caller set: Iterable treats an omitted field as "leave alone"
        # while an explicit null may clear it.
        return self.model_dump(mode="json", exclude_none=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- generic -----------------------------------------------------------------------


class ApiResponse(ResponseModel):
    """`IterableApiResponse`: `{"msg", "code", "params"}`."""

    msg: str = ""
    code: str | None = None
    params: Any = None

    def ids_in_msg(self) -> list[int]:
        """Ids Iterable reports only inside `msg` (templates/email/upsert answers
        "... IDs: 123, 456"). Empty when the message names none."""
        match = re.search(r"IDs?\s*:\s*([\d,\s]+)", self.msg)
        return [int(x) for x in re.findall(r"\d+", match.group(1))] if match else []


# --- users -------------------------------------------------------------------------


class UserFields(ResponseModel):
    """`GetUserFieldsResponse`: field name -> Iterable type name ("string", "long", ...)."""

    fields: dict[str, Any]


# --- lists -------------------------------------------------------------------------


class IterableList(ResponseModel):
    """`ListDetails`. Dynamic lists are segments."""

    id: int
    name: str
    # `ListType | str`: an unknown future list type must not break listing.
    listType: ListType | str
    createdAt: int | None = None  # epoch milliseconds
    description: str | None = None
    isGlobalSuppressionEnabled: bool | None = None


# --- templates ---------------------------------------------------------------------


class LinkParam(RequestModel):
    key: str
    value: str


class TemplateSummary(ResponseModel):
    """`ApiTemplateResponse`, one entry of GET /api/templates."""

    templateId: int
    name: str | None = None
    # The spec says date-time strings; Iterable has been seen sending epoch ms. Kept raw.
    createdAt: int | str | None = None
    updatedAt: int | str | None = None
    creatorUserId: str | None = None
    messageTypeId: int | None = None
    campaignId: int | None = None
    clientTemplateId: str | None = None


class TemplatesPage(ResponseModel):
    """`GetTemplatesResponse`."""

    templates: list[TemplateSummary]
    totalTemplatesCount: Any = None  # "object" in the spec; a number in practice
    nextPageUrl: str | None = None
    previousPageUrl: str | None = None


class TemplateLocale(ResponseModel):
    displayLanguage: str | None = None
    languageTag: str | None = None


class TemplateEntry(ResponseModel):
    """`ApiTemplateEntry`, from templates/getByClientTemplateId."""

    templateId: int
    campaignId: int | None = None
    locales: list[TemplateLocale] | None = None


class EmailTemplate(ResponseModel):
    """`ApiEmailTemplateModel` as returned by templates/email/get."""

    templateId: int
    name: str | None = None
    clientTemplateId: str | None = None
    subject: str | None = None
    preheaderText: str | None = None
    fromName: str | None = None
    fromEmail: str | None = None
    replyToEmail: str | None = None
    html: str | None = None
    plainText: str | None = None
    locale: str | None = None
    isDefaultLocale: bool | None = None
    messageTypeId: int | float | None = None
    creatorUserId: str | None = None
    ccEmails: list[str] | None = None
    bccEmails: list[str] | None = None
    googleAnalyticsCampaignName: str | None = None
    linkParams: list[LinkParam] | None = None
    dataFeedId: int | float | None = None
    dataFeedIds: list[int | float] | None = None
    cacheDataFeed: Any = None
    mergeDataFeedContext: Any = None
    campaignDataFields: dict[str, Any] | None = None
    metadata: TemplateSummary | None = None


class _EmailContent(RequestModel):
    """Fields upsert and update share, with the spec's types for both."""

    name: str | None = None
    subject: str | None = None
    preheaderText: str | None = None
    fromName: str | None = None
    fromEmail: str | None = None
    replyToEmail: str | None = None
    html: str | None = None
    plainText: str | None = None
    locale: str | None = None
    isDefaultLocale: bool | None = None
    creatorUserId: str | None = None
    ccEmails: list[str] | None = None
    bccEmails: list[str] | None = None
    googleAnalyticsCampaignName: str | None = None
    linkParams: list[LinkParam] | None = None
    dataFeedIds: list[int | float] | None = None


class EmailTemplateUpsert(_EmailContent):
    """`UpsertEmailTemplateModel` for POST templates/email/upsert. Only
    `clientTemplateId` is required; Iterable updates every template that matches."""

    clientTemplateId: str
    messageTypeId: int | None = None
    dataFeedId: int | None = None
    cacheDataFeed: dict[str, Any] | None = None
    mergeDataFeedContext: bool | None = None


class EmailTemplateUpdate(_EmailContent):
    """`ApiEmailTemplateModel` as the body of POST templates/email/update: only the
    fields set are changed on the template `templateId`."""

    templateId: int
    clientTemplateId: str | None = None
    messageTypeId: int | float | None = None
    dataFeedId: int | float | None = None
    campaignDataFields: dict[str, Any] | None = None
    # "object" in this model of the spec (a boolean in the upsert model).
    cacheDataFeed: dict[str, Any] | None = None
    mergeDataFeedContext: dict[str, Any] | None = None


# --- webhooks ----------------------------------------------------------------------


class Webhook(ResponseModel):
    """`ApiWebhookResponse`."""

    id: int
    endpoint: str
    authType: str | None = None
    enabled: bool | None = None
    blastSendEnabled: bool | None = None
    triggeredSendEnabled: bool | None = None
    channelIds: list[Any] | None = None
    messageTypeIds: list[Any] | None = None
