from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from liftstack_shared.messages.base import Message, utcnow


class WritebackStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED = "failed"


class WritebackProgress(Message):
    """`writeback.progress`: a snapshot of one run of a writeback job."""

    job_id: str
    run: int = 1
    workspace_id: str
    connection_id: str
    campaign_key: str
    status: WritebackStatus
    total: int
    written: int = 0  # users whose outcome is known (succeeded + failed)
    succeeded: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)
    # Failures Iterable counted (bulkUpdate failCount) without naming which users:
    # not in `failed` (those users are unknown), surfaced rather than dropped.
    unattributed_failures: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    profiles_per_second: float = 0.0
    at: datetime = Field(default_factory=utcnow)
