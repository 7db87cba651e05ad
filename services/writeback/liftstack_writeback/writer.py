"""One assignment batch -> `users/bulkUpdate` request(s) -> one outcome per user.

Each user gets `lf_assignments.<campaign key> = <variant key>` with
`mergeNestedObjects: true`, so the other campaigns' keys in `lf_assignments` survive.
Requests are packed to at most 1,000 users and under the 4 MB body cap; a batch
larger than that becomes several requests, each taking its own rate slot.

Failure policy, per request:
- 429: never a failure. The client honours Retry-After (or backs off) and retries;
  should it give up, we wait and send again. The job only takes longer.
- 5xx, timeouts, connection errors: the client retries with backoff; once its retries
  are spent the request's users fail with reason `unavailable` and the job goes on.
- 401/403: users fail with `unauthorized` (the caller drops cached credentials).
- other 4xx: users fail with `rejected`.
Per user (HTTP 200 with failedUpdates): Iterable's reason (invalid, not_found,
forgotten, conflict, invalid_data), or `field_dropped` when Iterable listed a field
the user carried (lf_assignments) in filteredOutFields: Iterable counts that user as
a success, but the template would render the control for them. None of these is
resubmitted (`DEFAULT_RETRYABLE` is empty: per the spec notFound* is for
subscribe/unsubscribe and conflict* is deterministic); the reason is recorded.
A failCount larger than the users Iterable names is kept as the batch's
`unattributed_failures`, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState

from liftstack_shared.iterable import (
    MAX_BODY_BYTES,
    MAX_USERS_PER_REQUEST,
    BulkUpdateResult,
    BulkUpdateUser,
    IterableAuthError,
    IterableBadRequest,
    IterableClient,
    IterableError,
    IterableRateLimited,
    IterableUnavailable,
    pack_users,
)
from liftstack_shared.messages import Assignment, AssignmentBatch
from liftstack_shared.retry import backoff
from liftstack_writeback.models import BatchOutcome

log = logging.getLogger(__name__)

ASSIGNMENTS_FIELD = "lf_assignments"
UNAVAILABLE = "unavailable"
UNAUTHORIZED = "unauthorized"
REJECTED = "rejected"
ERROR = "error"
# Longer identifiers can't be valid (emails are at most 254 characters) and could
# not be packed under the body cap: fail them without sending.
_MAX_IDENTIFIER = 10_000


def to_user(assignment: Assignment, campaign_key: str) -> BulkUpdateUser:
    fields = {ASSIGNMENTS_FIELD: {campaign_key: assignment.variant}}
    if assignment.email:
        return BulkUpdateUser(email=assignment.email, dataFields=fields, mergeNestedObjects=True)
    return BulkUpdateUser(userId=assignment.user_id, dataFields=fields, mergeNestedObjects=True)


def _upper_bound_bytes(users: list[BulkUpdateUser]) -> int:
    """A bound on the serialised body: every character escaped as a 6-byte \\u
    escape, plus generous room for keys and punctuation. Cheap, unlike serialising
    each user to measure it as `pack_users` must."""
    total = 64
    for u in users:
        ((key, value),) = u.dataFields[ASSIGNMENTS_FIELD].items()
        total += 6 * (len(u.email or u.userId or "") + len(key) + len(value)) + 128
    return total


@dataclass(frozen=True)
class WriterPolicy:
    # Used only when the client itself gave up on a 429 (it already waited a lot).
    rate_limit_base_delay: float = 1.0
    rate_limit_max_delay: float = 60.0


class BatchWriter:
    def __init__(self, policy: WriterPolicy | None = None) -> None:
        self.policy = policy or WriterPolicy()

    async def write(self, client: IterableClient, batch: AssignmentBatch) -> BatchOutcome:
        assignments = batch.assignments
        reasons: list[str | None] = [None] * len(assignments)
        indexed: list[tuple[int, BulkUpdateUser]] = []
        for i, assignment in enumerate(assignments):
            if len(assignment.email or assignment.user_id or "") > _MAX_IDENTIFIER:
                reasons[i] = "invalid"
            else:
                indexed.append((i, to_user(assignment, batch.campaign_key)))

        # One attempt per user: no per-user failure bulkUpdate reports is worth
        # resubmitting unchanged (see the module doc).
        failed, unattributed = await self._send_all(client, indexed)
        for i, reason in failed.items():
            reasons[i] = reason
        failures = [(assignments[i].recipient, r) for i, r in enumerate(reasons) if r is not None]
        if unattributed:
            log.warning(
                "writeback job %s batch %d: Iterable counted %d failures it named no user for",
                batch.job_id,
                batch.batch_seq,
                unattributed,
            )
        return BatchOutcome(users=len(assignments), failures=failures, unattributed_failures=unattributed)

    async def _send_all(
        self, client: IterableClient, indexed: list[tuple[int, BulkUpdateUser]]
    ) -> tuple[dict[int, str], int]:
        """Pack and send concurrently (the pacer spaces them): index -> reason of
        each failed user, and the failures Iterable counted without naming a user."""
        chunks: list[list[tuple[int, BulkUpdateUser]]] = []
        users = [u for _, u in indexed]
        if len(users) <= MAX_USERS_PER_REQUEST and _upper_bound_bytes(users) <= MAX_BODY_BYTES:
            chunks = [indexed]  # the usual case: one request, no need to measure
        else:
            start = 0
            for packed in pack_users(users):
                chunks.append(indexed[start : start + len(packed)])
                start += len(packed)
        results = await asyncio.gather(*(self._send(client, chunk) for chunk in chunks))
        merged: dict[int, str] = {}
        unattributed = 0
        for chunk_result, chunk_unattributed in results:
            merged.update(chunk_result)
            unattributed += chunk_unattributed
        return merged, unattributed

    async def _send(
        self, client: IterableClient, chunk: list[tuple[int, BulkUpdateUser]]
    ) -> tuple[dict[int, str], int]:
        """One request: index -> reason of each failed user, and the unattributed
        failures."""
        indexes = [i for i, _ in chunk]
        users = [u for _, u in chunk]
        try:
            result = await self._bulk_update(client, users)
        except IterableUnavailable as exc:
            log.warning("bulkUpdate of %d users failed after retries: %s", len(users), exc)
            return dict.fromkeys(indexes, UNAVAILABLE), 0
        except IterableAuthError as exc:
            log.error("bulkUpdate rejected the API key: %s", exc)
            return dict.fromkeys(indexes, UNAUTHORIZED), 0
        except IterableBadRequest as exc:
            log.error("bulkUpdate rejected a request of %d users: %s", len(users), exc)
            return dict.fromkeys(indexes, REJECTED), 0
        except IterableError as exc:
            log.error("bulkUpdate of %d users failed: %s", len(users), exc)
            return dict.fromkeys(indexes, ERROR), 0
        failed = {i: str(r) for i, r in zip(indexes, result.reasons) if r is not None}
        return failed, result.unattributed_fail_count

    async def _bulk_update(self, client: IterableClient, users: list[BulkUpdateUser]) -> BulkUpdateResult:
        """The request, sent again for as long as it is rate limited (a 429 never
        fails users): after Retry-After when Iterable sent one, else with backoff."""
        p = self.policy
        retrying = backoff(
            attempts=None,
            first_s=p.rate_limit_base_delay,
            max_s=p.rate_limit_max_delay,
            retry_on=(IterableRateLimited,),
        )
        retrying = retrying.copy(wait=_retry_after_or(retrying.wait), before_sleep=_log_rate_limited)
        async for attempt in retrying:
            with attempt:
                return await client.bulk_update(users, create_new_fields=True)
        raise AssertionError("unreachable: tenacity either returns or raises")


def _retry_after_or(fallback: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, IterableRateLimited) and exc.retry_after is not None:
            return exc.retry_after
        return fallback(state)

    return wait


def _log_rate_limited(state: RetryCallState) -> None:
    delay = state.next_action.sleep if state.next_action else 0.0
    log.warning(
        "bulkUpdate still rate limited after the client's retries; sending again in %.1fs (a 429 never fails users)",
        delay,
    )
