from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from liftstack_shared.bounds import INT64_MAX
from liftstack_shared.messages.base import Message
from liftstack_shared.recipients import recipient_key


class Assignment(BaseModel):
    """One recipient and the variant they were assigned. Email or userId, not both
    (Iterable's own rule for bulkUpdate)."""

    model_config = ConfigDict(extra="forbid")

    email: str | None = None
    user_id: str | None = None
    variant: str = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_identity(self) -> Assignment:
        if bool(self.email) == bool(self.user_id):
            raise ValueError("exactly one of email or user_id is required")
        return self

    @property
    def recipient(self) -> str:
        """The recipient's key (`liftstack_shared.recipients`)."""
        return recipient_key(self.email, self.user_id) or ""


class AssignmentBatch(Message):
    """`campaign.assignments`: one self-contained batch of a writeback job.

    A job is (campaign, connection, job_id); batches are numbered 0..batch_count-1 and
    together carry exactly `total_recipients` assignments, so the consumer knows when a
    job is complete without any other message.
    """

    job_id: str = Field(min_length=1, max_length=200)
    workspace_id: str = Field(min_length=1)
    connection_id: str = Field(min_length=1)
    campaign_key: str = Field(min_length=1, max_length=200)
    batch_seq: int = Field(ge=0, le=INT64_MAX)
    batch_count: int = Field(ge=1, le=INT64_MAX)
    total_recipients: int = Field(ge=0, le=INT64_MAX)
    # Which run of the job this batch belongs to (re-trigger increments it).
    run: int = Field(default=1, ge=1, le=INT64_MAX)
    assignments: list[Assignment]

    @model_validator(mode="after")
    def _seq_in_range(self) -> AssignmentBatch:
        if self.batch_seq >= self.batch_count:
            raise ValueError("batch_seq must be < batch_count")
        return self
