"""HTTP request/response shapes (also what the sync record looks like in Mongo)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from liftstack_audiences.identifiers import ProjectIdentity

SyncStatus = Literal["pending", "running", "completed", "failed"]
AudienceType = Literal["list", "segment"]
SizeSource = Literal["iterable", "sync"]


class AudienceSize(BaseModel):
    list_id: int
    size: int | None = None
    # "iterable": lists/{id}/size; "sync": members of the last completed sync.
    size_source: SizeSource | None = None
    size_as_of: datetime | None = None


class Audience(BaseModel):
    id: int
    name: str
    type: AudienceType  # Standard lists are "list", Dynamic lists are "segment"
    iterable_type: str
    created_at: datetime | None = None
    # Only what is already known (cache or past syncs); never fetched on listing.
    size: int | None = None
    size_source: SizeSource | None = None
    size_as_of: datetime | None = None


class AudienceList(BaseModel):
    audiences: list[Audience]


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Hybrid projects: return the userId instead of the email when a user has both.
    prefer_user_id: bool = False
    # The Iterable project's type. Omitted: the connection's `project_type` (what
    # callers should do). Given: it must agree with the connection's, else 400
    # `identity_mismatch`; a sync read under the wrong type would publish userIds as
    # emails (or the reverse) and write assignments to the wrong profiles.
    # "userId": every getUsers line is a userId (also one containing "@").
    identity: ProjectIdentity | None = None


class SyncError(BaseModel):
    code: str
    message: str


class SyncRecord(BaseModel):
    sync_id: str
    workspace_id: str
    connection_id: str
    list_id: int
    list_name: str | None = None
    list_type: AudienceType | None = None
    prefer_user_id: bool = False
    identity: ProjectIdentity = "email"
    status: SyncStatus
    members: int = 0
    invalid_skipped: int = 0
    duplicates_skipped: int = 0
    batches: int = 0
    # Runs of this sync id (the first plus retries).
    runs: int = 0
    # getUsers streams opened across all runs (restarts after a broken stream).
    stream_attempts: int = 0
    error: SyncError | None = None
    requested_by: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Heartbeat: a pending/running sync not updated for a while is presumed dead.
    updated_at: datetime


class SyncAccepted(BaseModel):
    sync_id: str
    status: SyncStatus
    # True when an active sync of the same audience was returned instead of a new one.
    existing: bool = False
    links: dict[str, str] = Field(default_factory=dict)
