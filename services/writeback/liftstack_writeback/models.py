"""Writeback's domain: jobs, runs, batch outcomes and run summaries. Pure: no I/O,
no clock reads (a summary carries the time it was made, `as_of`).

Shared by the writer (which produces `BatchOutcome`s), the store (which persists
and sums them) and the service (which decides on re-triggers from `RunRecord`s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from liftstack_shared.messages import AssignmentBatch


class WritebackStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    FAILED = "failed"  # nobody succeeded


FINAL = frozenset(
    {
        WritebackStatus.COMPLETED,
        WritebackStatus.COMPLETED_WITH_FAILURES,
        WritebackStatus.FAILED,
    }
)
# Who made a run: the assignment engine's batches, or a re-trigger from the API.
ENGINE, RETRIGGER = "engine", "retrigger"
# The header fields a batch must agree on with its job.
_HEADER_FIELDS = ("workspace_id", "connection_id", "campaign_key", "batch_count", "total")


@dataclass(frozen=True)
class JobHeader:
    job_id: str
    workspace_id: str
    connection_id: str
    campaign_key: str
    batch_count: int
    total: int

    @classmethod
    def of(cls, batch: AssignmentBatch) -> JobHeader:
        return cls(
            batch.job_id,
            batch.workspace_id,
            batch.connection_id,
            batch.campaign_key,
            batch.batch_count,
            batch.total_recipients,
        )

    def mismatch(self, known: JobHeader) -> str | None:
        """Why a batch carrying this header disagrees with its job's recorded
        header `known` (the batch is a dead letter), or None."""
        diffs = [
            f"{name} {getattr(self, name)!r} != {getattr(known, name)!r}"
            for name in _HEADER_FIELDS
            if getattr(self, name) != getattr(known, name)
        ]
        return "batch disagrees with its job: " + ", ".join(diffs) if diffs else None


@dataclass(frozen=True)
class RunRecord:
    """A run as recorded: created by its first batch (engine) or by a re-trigger,
    which also notes when it finished publishing and the client's idempotency key."""

    job_id: str
    run: int
    created_by: str
    created_at: datetime | None
    published_at: datetime | None = None
    idempotency_key: str | None = None

    def age_s(self, now: datetime) -> float:
        return (now - self.created_at).total_seconds() if self.created_at else float("inf")


@dataclass
class BatchOutcome:
    """One batch of one run: every user succeeded or failed with one reason."""

    users: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (recipient, reason)
    # Failures Iterable counted (failCount) without naming the users: which users
    # they were is unknown, so they are counted apart, never dropped.
    unattributed_failures: int = 0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def succeeded(self) -> int:
        return self.users - self.failed

    def failed_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.failures:
            counts[reason] = counts.get(reason, 0) + 1
        return counts


@dataclass
class RunSummary:
    header: JobHeader
    run: int
    created_by: str
    status: WritebackStatus
    batches_done: int
    written: int
    succeeded: int
    failed: int
    failed_by_reason: dict[str, int]
    started_at: datetime | None
    finished_at: datetime | None
    # When these figures were counted: the end of an unfinished run's elapsed time.
    as_of: datetime
    unattributed_failures: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def total(self) -> int:
        return self.header.total

    @property
    def profiles_per_second(self) -> float:
        if self.started_at is None or self.written == 0:
            return 0.0
        end = self.finished_at or self.as_of
        elapsed = (end - self.started_at).total_seconds()
        return round(self.written / max(elapsed, 1e-3), 1)


def run_status(
    header: JobHeader, batches_done: int, succeeded: int, failed: int, created_by: str, unattributed: int = 0
) -> WritebackStatus:
    """A run's status from its summed outcomes."""
    if batches_done < header.batch_count:
        if batches_done == 0 and created_by == RETRIGGER:
            return WritebackStatus.PENDING
        return WritebackStatus.RUNNING
    if failed == 0 and unattributed == 0:
        return WritebackStatus.COMPLETED
    if succeeded == 0:
        return WritebackStatus.FAILED
    return WritebackStatus.COMPLETED_WITH_FAILURES
