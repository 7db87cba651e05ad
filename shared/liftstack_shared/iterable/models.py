"""Pydantic models for Iterable's request and response bodies.

Field names are Iterable's own camelCase names (as in iterable-openapi.json), so a
model dumps straight to the wire format and reads like Iterable's documentation.

- Request models forbid unknown fields: a typo must fail here, not be sent.
- Response models allow and keep unknown fields and require only identifiers: Iterable
  adds fields over time and sometimes omits ones its spec calls required, and a read
  must not break on either. They never nest a request model (whose `extra="forbid"`
  would turn a new Iterable field into an error), accept an explicit null for any
  field with a default, and take numbers and strings where Iterable sends both (a
  numeric string for an int field, a number for a str field).

Where Iterable's OpenAPI spec and its official TypeScript client (`@iterable/api`,
whose zod schemas its integration tests run against the live API) disagree, these
models accept both: template dates (spec: date-time strings; live: epoch ms),
`totalTemplatesCount` (spec: object; live: number), getByClientTemplateId `locales`
(spec: objects {displayLanguage, languageTag}; live: locale strings).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


class Region(StrEnum):
    US = "US"
    EU = "EU"


# How an Iterable project identifies its users; Iterable calls them email-based,
# userID-based and hybrid projects. In a userID-based project every user is known by
# a userId (which may contain "@": "alice@corp" is a userId there, not an email).
# Iterable has no API that states a project's type, so a connection records it.
ProjectType = Literal["email", "userId", "hybrid"]
PROJECT_TYPES: tuple[ProjectType, ...] = ("email", "userId", "hybrid")


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


def epoch_ms(value: Any) -> Any:
    """A timestamp as epoch milliseconds, from what Iterable or its spec sends: a
    number, a numeric string, or a date-time string (RFC 3339, or Iterable's
    "2024-01-02 03:04:05 +00:00"). Anything unreadable is None (it is only metadata)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        for candidate in (text.replace("Z", "+00:00"), text.replace(" +", "+").replace(" -", "-")):
            try:
                moment = datetime.fromisoformat(candidate)
            except ValueError:
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
    return None


EpochMs = Annotated[int | None, BeforeValidator(epoch_ms)]


class ResponseModel(BaseModel):
    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        # An explicit null for an optional field (`"failedUpdates": null`) means "none",
        # not an error; required fields (identifiers) stay required.
        if isinstance(data, dict):
            optional = {n for n, f in cls.model_fields.items() if not f.is_required()}
            if any(data.get(n, ...) is None for n in optional):
                return {k: v for k, v in data.items() if not (v is None and k in optional)}
        return data


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
    createdAt: EpochMs = None  # epoch milliseconds
    description: str | None = None
    isGlobalSuppressionEnabled: bool | None = None


# --- templates ---------------------------------------------------------------------


class LinkParam(RequestModel):
    key: str
    value: str


class LinkParamInfo(ResponseModel):
    """A link parameter as email/get answers it (lenient, unlike `LinkParam`)."""

    key: str | None = None
    value: str | None = None


class TemplateSummary(ResponseModel):
    """`ApiTemplateResponse`, one entry of GET /api/templates."""

    templateId: int
    name: str | None = None
    # Epoch ms, as Iterable sends them; the spec's date-time strings are converted.
    createdAt: EpochMs = None
    updatedAt: EpochMs = None
    creatorUserId: str | None = None
    messageTypeId: int | None = None
    campaignId: int | None = None
    clientTemplateId: str | None = None


class TemplatesPage(ResponseModel):
    """`GetTemplatesResponse`."""

    templates: list[TemplateSummary]
    totalTemplatesCount: int | None = None  # "object" in the spec; a number in practice
    nextPageUrl: str | None = None
    previousPageUrl: str | None = None

    @field_validator("totalTemplatesCount", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        # A number or numeric string; the spec's "object" (or anything else) is unknown.
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
            return value
        return None


class TemplateEntry(ResponseModel):
    """`ApiTemplateEntry`, from templates/getByClientTemplateId. `locales`: the locale
    tags with content ("en"); Iterable sends strings, the spec objects
    {displayLanguage, languageTag}: both are read as the tag."""

    templateId: int
    campaignId: int | None = None
    locales: list[str] = []

    @field_validator("locales", mode="before")
    @classmethod
    def _locale_tags(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        tags: list[Any] = []
        for item in value:
            if isinstance(item, dict):
                item = item.get("languageTag") or item.get("locale") or item.get("displayLanguage")
                if item is None:
                    continue
            tags.append(item)
        return tags


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
    linkParams: list[LinkParamInfo] | None = None
    dataFeedId: int | float | None = None
    dataFeedIds: list[int | float] | None = None
    cacheDataFeed: Any = None
    mergeDataFeedContext: Any = None
    campaignDataFields: dict[str, Any] | None = None
    # ApiTemplateResponse per the spec; the official client types it `any`, so what
    # is not a template summary is kept as sent rather than refused.
    metadata: Annotated[TemplateSummary | Any, Field(union_mode="left_to_right")] = None


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
