"""One audience sync: stream getUsers -> validate -> de-duplicate -> publish batches ->
completion message with the exact count.

Restarts. getUsers cannot resume mid-stream (no cursor, no pagination), so a broken
stream is re-read from the start (after a short backoff, liftstack_shared.retry). The
de-duplication set (state.py) holds exactly the members Kafka has acknowledged for
this sync, so re-read members are skipped, not re-sent. Lines up to the committed
checkpoint were already counted (as members, invalid or duplicates); while replaying
them nothing is counted again, but a member not yet in the set (the list changed
between attempts) is still published. The same holds when a failed sync is retried
later with the same sync id and state file.

Memory: one batch of members plus the SQLite page cache, whatever the list size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol

from tenacity import RetryCallState

from liftstack_audiences import metrics
from liftstack_audiences.identifiers import ProjectIdentity, parse_identifier
from liftstack_audiences.publisher import AudiencePublisher
from liftstack_audiences.state import Counts, SyncState
from liftstack_shared.iterable import IterableUnavailable
from liftstack_shared.messages import AudienceMember, AudienceMembersBatch, AudienceSyncCompleted
from liftstack_shared.retry import backoff

log = logging.getLogger(__name__)

# Between stream attempts (on top of the client's getUsers pacing, 5 per minute per
# project, which already spaces them out against real Iterable).
RESTART_FIRST_S = 0.2
RESTART_MAX_S = 2.0


class MemberSource(Protocol):
    """What the sync needs from the Iterable client."""

    def iter_list_users(self, list_id: int, prefer_user_id: bool = False) -> AsyncGenerator[str, None]: ...


@dataclass(frozen=True)
class SyncTarget:
    sync_id: str
    workspace_id: str
    connection_id: str
    list_id: int
    prefer_user_id: bool = False
    identity: ProjectIdentity = "email"

    @property
    def user_ids(self) -> bool:
        """Ask getUsers for userIds: asked for, or the project is userID-based."""
        return self.prefer_user_id or self.identity == "userId"


class AudienceSync:
    def __init__(
        self,
        target: SyncTarget,
        source: MemberSource,
        publisher: AudiencePublisher,
        state: SyncState,
        *,
        batch_size: int = 1000,
        max_stream_attempts: int = 5,
        first_batch_seq: int = 0,
        on_progress: Callable[[Counts], Awaitable[None]] | None = None,
        on_stream_opened: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.target = target
        self._source = source
        self._publisher = publisher
        self._state = state
        self._batch_size = batch_size
        self._max_attempts = max_stream_attempts
        self._first_batch_seq = first_batch_seq
        self._on_progress = on_progress
        self._on_stream_opened = on_stream_opened

    async def run(self) -> Counts:
        """Publish every member, then the completion message; return the final counts.
        Raises IterableError (after `max_stream_attempts` for a failing stream) or the
        Kafka error that stopped a publish; the state is then at the last acked batch."""
        counts = await self._stream_with_restarts()
        t = self.target
        await self._publisher.completed(
            AudienceSyncCompleted(
                sync_id=t.sync_id,
                workspace_id=t.workspace_id,
                connection_id=t.connection_id,
                list_id=t.list_id,
                batch_count=counts.batches,
                member_count=counts.members,
                invalid_skipped=counts.invalid,
                duplicates_skipped=counts.duplicates,
            )
        )
        return counts

    async def _stream_with_restarts(self) -> Counts:
        """`_stream_once`, re-read from the start after a broken stream or a 5xx, up to
        `max_stream_attempts` times in all."""
        retrying = backoff(
            attempts=self._max_attempts,
            first_s=RESTART_FIRST_S,
            max_s=RESTART_MAX_S,
            retry_on=(IterableUnavailable,),
        ).copy(before_sleep=self._log_restart)
        async for attempt in retrying:
            with attempt:
                return await self._stream_once()
        raise AssertionError("unreachable: tenacity returns or raises")

    def _log_restart(self, state: RetryCallState) -> None:
        metrics.STREAM_RESTARTS.inc()
        log.warning(
            "audience sync %s: getUsers stream of list %s failed (%s); attempt %d/%d,"
            " re-reading from the start and skipping members already published",
            self.target.sync_id,
            self.target.list_id,
            state.outcome.exception() if state.outcome else None,
            state.attempt_number + 1,
            self._max_attempts,
        )

    async def _stream_once(self) -> Counts:
        # No state file although batches were sent (a retry on another host): every
        # member is sent again, numbered after the batches already sent, so batch
        # numbers stay unique; consumers dedupe the members by (sync_id, member).
        committed = self._state.checkpoint() or Counts(batches=self._first_batch_seq)
        counts = committed.copy()
        replay_until = committed.lines  # lines a previous attempt already accounted for
        index = 0
        batch: list[AudienceMember] = []
        self._state.begin()
        try:
            if self._on_stream_opened:
                await self._on_stream_opened()
            lines = self._source.iter_list_users(self.target.list_id, self.target.user_ids)
            async with aclosing(lines):
                async for line in lines:
                    replaying = index < replay_until
                    index += 1
                    if not replaying:
                        counts.lines += 1
                    identifier = parse_identifier(line, self.target.user_ids, self.target.identity)
                    if identifier is None:
                        if not replaying:
                            counts.invalid += 1
                        continue
                    if not self._state.add(identifier.key):
                        # In the set: a duplicate line, or (replaying) already published.
                        if not replaying:
                            counts.duplicates += 1
                        continue
                    batch.append(identifier.member)
                    counts.members += 1
                    if len(batch) >= self._batch_size:
                        await self._flush(batch, counts)
                        batch = []
            if batch:
                await self._flush(batch, counts)
            # Lines after the last batch (invalid or duplicates) count too.
            self._state.commit(counts)
            return counts
        except BaseException:
            # Un-acked members leave the set; counters fall back to the checkpoint.
            self._state.rollback()
            raise

    async def _flush(self, batch: list[AudienceMember], counts: Counts) -> None:
        t = self.target
        message = AudienceMembersBatch.model_construct(
            sync_id=t.sync_id,
            workspace_id=t.workspace_id,
            connection_id=t.connection_id,
            list_id=t.list_id,
            batch_seq=counts.batches,
            members=batch,
        )
        publish = asyncio.ensure_future(self._publisher.members(message))
        try:
            await asyncio.shield(publish)
        except asyncio.CancelledError:
            # Shutdown mid-publish: wait for Kafka's answer, so the set on disk ends
            # up matching what Kafka has and a retry re-sends nothing.
            with contextlib.suppress(Exception):
                await publish
            if publish.done() and not publish.cancelled() and publish.exception() is None:
                counts.batches += 1
                self._state.commit(counts)
            raise
        counts.batches += 1
        self._state.commit(counts)
        self._state.begin()
        metrics.MEMBERS_PUBLISHED.inc(len(batch))
        if self._on_progress:
            await self._on_progress(counts.copy())
