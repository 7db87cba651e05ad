"""Request and response bodies of the connections API (also its OpenAPI schemas).

Secrets arrive as SecretStr so they never appear in a repr, a log line or a
validation error; responses carry only masked hints.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from liftstack_shared.connections_client import DEFAULT_EVENT_TYPES, ProjectType, Region
from liftstack_shared.messages.engagement import EventType

NAME_MAX = 100
# Iterable keys (server-side, read-only, JavaScript, mobile) are 32 lowercase hex
# characters. Anything else is a paste error: reject it before storing or testing.
API_KEY_RE = re.compile(r"^[0-9a-f]{32}$")
# Sent by Iterable as an Authorization header value: visible ASCII, no spaces.
WEBHOOK_SECRET_RE = re.compile(r"^[\x21-\x7e]{16,512}$")
# An HTTP header name (RFC 9110 token), for Iterable's "Add HTTP header".
WEBHOOK_HEADER_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
# Headers a proxy, the HTTP stack or Iterable itself sets: never a secret's carrier.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "content-length",
        "content-encoding",
        "host",
        "connection",
        "transfer-encoding",
        "user-agent",
        "accept",
        "accept-encoding",
        "cookie",
        "forwarded",
        "te",
        "trailer",
        "upgrade",
        "via",
        "expect",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
    }
)


class Platform(StrEnum):
    ITERABLE = "iterable"


class ConnectionStatus(StrEnum):
    """The card's badge: Active (saved, not yet tested since its key or region last
    changed), Connected (last test passed), Error (last test failed)."""

    ACTIVE = "active"
    CONNECTED = "connected"
    ERROR = "error"


def clean_name(value: str) -> str:
    value = " ".join(value.split())
    if not value:
        raise ValueError("must not be empty")
    if len(value) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters")
    if any(unicodedata.category(c).startswith("C") for c in value):
        raise ValueError("must not contain control characters")
    return value


def name_key(name: str) -> str:
    """What uniqueness is checked on: "Production" and " production " are one name."""
    return " ".join(name.split()).casefold()


def _check_api_key(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value().strip()
    if not API_KEY_RE.fullmatch(raw):
        # Never echo the value: it may be a real key with a typo.
        raise ValueError(
            "doesn't look like an Iterable API key (expected 32 lowercase hexadecimal "
            "characters; copy it from Iterable > Integrations > API Keys)"
        )
    return SecretStr(raw)


def _check_webhook_secret(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value().strip()
    if not WEBHOOK_SECRET_RE.fullmatch(raw):
        raise ValueError("must be 16 to 512 visible ASCII characters without spaces")
    return SecretStr(raw)


def _check_webhook_header(value: str | None) -> str | None:
    if value is None:
        return None
    name = value.strip()
    if not WEBHOOK_HEADER_RE.fullmatch(name):
        raise ValueError("must be an HTTP header name: 1 to 64 letters, digits or -_.!#$%&'*+^`|~")
    if name.lower() in RESERVED_HEADERS:
        raise ValueError(f"{name} is set by HTTP itself or by Iterable; choose your own name")
    return name.lower()  # header names are case-insensitive


def _check_event_types(value: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(value))  # drop duplicates, keep the order given


# Iterable has no API that says which type a project is (its project settings do),
# so the person connecting it says so.
PROJECT_TYPE_HELP = (
    'How the Iterable project identifies users: "email" (email-based), "userId" '
    '(userID-based: every user has a userId, which may contain "@") or "hybrid". '
    "Audience syncs read members accordingly."
)

Name = Annotated[str, AfterValidator(clean_name)]
ApiKey = Annotated[SecretStr, AfterValidator(_check_api_key)]
WebhookSecret = Annotated[SecretStr | None, AfterValidator(_check_webhook_secret)]
WebhookHeader = Annotated[str | None, AfterValidator(_check_webhook_header)]
EventTypes = Annotated[list[EventType], Field(min_length=1), AfterValidator(_check_event_types)]


class ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    platform: Platform = Platform.ITERABLE
    name: Name = Field(description="Friendly label, unique within the workspace.")
    api_key: ApiKey = Field(description="Iterable API key (server-side key recommended).")
    webhook_secret: WebhookSecret = Field(
        default=None, description="Token Iterable sends with system webhooks (optional)."
    )
    webhook_header: WebhookHeader = Field(
        default=None,
        description='Name of a custom header (Iterable\'s "Add HTTP header") whose value'
        " is the webhook secret, e.g. X-Webhook-Secret (optional).",
    )
    region: Region = Region.US
    project_type: ProjectType = Field(default="email", description=PROJECT_TYPE_HELP)
    event_types: EventTypes = Field(default_factory=lambda: list(map(EventType, DEFAULT_EVENT_TYPES)))


class ConnectionUpdate(BaseModel):
    """Only the fields present change. `webhook_secret: null` removes the secret."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    api_key: ApiKey | None = None
    webhook_secret: WebhookSecret = None
    # `null` removes the custom header name.
    webhook_header: WebhookHeader = None
    region: Region | None = None
    project_type: ProjectType | None = Field(default=None, description=PROJECT_TYPE_HELP)
    event_types: EventTypes | None = None

    @field_validator("name", "api_key", "region", "project_type", "event_types", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Only the webhook secret can be removed; null elsewhere is a mistake.
        if value is None:
            raise ValueError("must not be null")
        return value


CheckResult = Literal["ok", "failed", "unverified", "missing"]


class PermissionCheck(BaseModel):
    """One thing liftstack needs from the key, as far as read-only calls can tell."""

    permission: str = Field(
        description="read_lists, read_users, read_templates, write_users, write_templates or webhook"
    )
    result: CheckResult
    message: str


class TestResult(BaseModel):
    ok: bool
    status: ConnectionStatus
    message: str = Field(description="What is wrong (or right), in plain words.")
    checks: list[PermissionCheck] = []
    region: Region
    suggested_region: Region | None = Field(
        default=None, description="Set when the key belongs to the other data center."
    )
    tested_at: datetime


class ConnectionSummary(BaseModel):
    """What every workspace member sees: enough to pick a connection for a campaign."""

    id: str
    name: str
    platform: Platform
    status: ConnectionStatus


class Connection(ConnectionSummary):
    """The full card, for Owners and Admins. Secrets only as masked hints."""

    region: Region
    project_type: ProjectType = Field(default="email", description=PROJECT_TYPE_HELP)
    api_key_hint: str = Field(description="The key's last 4 characters, masked.")
    webhook_secret_hint: str | None = None
    webhook_header: str | None = Field(
        default=None, description="Custom header that carries the webhook secret, if any."
    )
    webhook_url: str
    event_types: list[EventType]
    last_test: TestResult | None = None
    created_at: datetime
    updated_at: datetime


class ConnectionList(BaseModel):
    """Owners and Admins get full cards; Members get summaries."""

    connections: list[Connection] | list[ConnectionSummary]


def hint(secret: str) -> str:
    return "****" + secret[-4:]
