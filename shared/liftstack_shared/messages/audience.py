from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from liftstack_shared.bounds import Int64
from liftstack_shared.messages.base import Message, utcnow


class AudienceMember(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = None
    user_id: str | None = None


class AudienceMembersBatch(Message):
    """`audience.members`: members of one sync, in order (batch_seq from 0)."""

    kind: Literal["members"] = "members"
    sync_id: str
    workspace_id: str
    connection_id: str
    list_id: Int64
    batch_seq: int = Field(ge=0)
    members: list[AudienceMember]


class AudienceSyncCompleted(Message):
    """`audience.members`: the last message of a sync, with the exact member count."""

    kind: Literal["completed"] = "completed"
    sync_id: str
    workspace_id: str
    connection_id: str
    list_id: Int64
    batch_count: int
    member_count: int
    invalid_skipped: int
    duplicates_skipped: int
    at: datetime = Field(default_factory=utcnow)


class AudienceSyncProgress(Message):
    """`audience.progress`: a snapshot of one audience sync."""

    sync_id: str
    workspace_id: str
    connection_id: str
    list_id: Int64
    status: Literal["pending", "running", "completed", "failed"]
    members: int = 0
    invalid_skipped: int = 0
    duplicates_skipped: int = 0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    at: datetime = Field(default_factory=utcnow)
