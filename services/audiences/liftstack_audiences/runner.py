"""Runs syncs in the background of the HTTP service: one asyncio task per sync, a
bounded number at a time, each with a heartbeat so a sync whose process died can be
recognised (and retried) by any replica."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from liftstack_audiences import metrics
from liftstack_audiences.audiences import pick_audience
from liftstack_audiences.failures import is_known_failure, to_api_error
from liftstack_audiences.models import SyncError, SyncRecord
from liftstack_audiences.publisher import AudiencePublisher
from liftstack_audiences.settings import AudiencesSettings
from liftstack_audiences.state import Counts, SyncState
from liftstack_audiences.store import SizeCache, SyncStore
from liftstack_audiences.sync import AudienceSync, SyncTarget
from liftstack_shared.credentials import CredentialsSource, IterableCredentials
from liftstack_shared.iterable import (
    IterableAuthError,
    IterableBadRequest,
    IterableClient,
    IterableNotFound,
)
from liftstack_shared.messages import AudienceSyncProgress

log = logging.getLogger(__name__)

ClientFactory = Callable[[IterableCredentials], IterableClient]


def progress_message(record: SyncRecord) -> AudienceSyncProgress:
    return AudienceSyncProgress(
        sync_id=record.sync_id,
        workspace_id=record.workspace_id,
        connection_id=record.connection_id,
        list_id=record.list_id,
        status=record.status,
        members=record.members,
        invalid_skipped=record.invalid_skipped,
        duplicates_skipped=record.duplicates_skipped,
        error=f"{record.error.code}: {record.error.message}" if record.error else None,
        started_at=record.started_at,
        finished_at=record.finished_at,
    )


class SyncRunner:
    def __init__(
        self,
        settings: AudiencesSettings,
        store: SyncStore,
        sizes: SizeCache,
        credentials: CredentialsSource,
        publisher: AudiencePublisher,
        client_factory: ClientFactory,
    ) -> None:
        self._settings = settings
        self._store = store
        self._sizes = sizes
        self._credentials = credentials
        self._publisher = publisher
        self._client_factory = client_factory
        self._slots = asyncio.Semaphore(settings.audience_max_concurrent_syncs)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, sync_id: str) -> None:
        """Run a pending sync in the background (the record must be `pending`)."""
        task = asyncio.create_task(self._run(sync_id), name=f"audience-sync-{sync_id}")
        self._tasks[sync_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(sync_id, None))

    async def close(self) -> None:
        """Shutdown: interrupt running syncs; they are recorded as failed
        (`interrupted`) and resume from their checkpoint when retried."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def publish_progress(self, record: SyncRecord | None) -> None:
        if record is None:
            return
        try:
            await self._publisher.progress(progress_message(record))
        except Exception as exc:  # noqa: BLE001 - progress is informative; the record is the truth
            log.warning("audience sync %s: progress not published: %r", record.sync_id, exc)

    async def _run(self, sync_id: str) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(sync_id))
        try:
            async with self._slots:
                await self._execute(sync_id)
        except Exception:  # a background task has nobody to raise to
            log.exception("audience sync %s: unexpected error", sync_id)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, sync_id: str) -> None:
        while True:
            await asyncio.sleep(self._settings.audience_heartbeat_s)
            try:
                await self._store.heartbeat(sync_id)
            except Exception as exc:  # noqa: BLE001 - retried next beat
                log.warning("audience sync %s: heartbeat failed: %r", sync_id, exc)

    async def _execute(self, sync_id: str) -> None:
        record = await self._store.mark_running(sync_id)
        if record is None:
            return  # no longer pending: another replica took it
        await self.publish_progress(record)
        state = SyncState.for_sync(self._settings.audience_state_dir, sync_id)
        metrics.SYNCS_RUNNING.inc()
        try:
            counts = await self._stream(record, state)
        except asyncio.CancelledError:
            await self._fail(
                sync_id,
                state,
                SyncError(
                    code="interrupted",
                    message="The audiences service stopped during the sync; retry it to resume.",
                ),
            )
            raise
        except Exception as exc:
            if isinstance(exc, IterableAuthError):
                self._credentials.invalidate(record.connection_id)
            if not is_known_failure(exc):
                log.exception("audience sync %s failed unexpectedly", sync_id)
            error = to_api_error(exc, record.list_id)
            log.warning("audience sync %s failed: %s: %s", sync_id, error.code, error.message)
            await self._fail(sync_id, state, SyncError(code=error.code, message=error.message))
            return
        finally:
            metrics.SYNCS_RUNNING.dec()
        await self._complete(record, state, counts)

    async def _stream(self, record: SyncRecord, state: SyncState) -> Counts:
        """Run the sync itself with the connection's current key."""
        settings, sync_id = self._settings, record.sync_id
        target = SyncTarget(
            sync_id=sync_id,
            workspace_id=record.workspace_id,
            connection_id=record.connection_id,
            list_id=record.list_id,
            prefer_user_id=record.prefer_user_id,
            identity=record.identity,
        )
        credentials = await self._credentials.get(record.workspace_id, record.connection_id)
        async with self._client_factory(credentials) as client:
            try:
                return await AudienceSync(
                    target,
                    client,
                    self._publisher,
                    state,
                    batch_size=settings.audience_batch_size,
                    max_stream_attempts=settings.audience_max_stream_attempts,
                    first_batch_seq=record.batches,
                    on_progress=self._progress_reporter(sync_id),
                    on_stream_opened=lambda: self._store.stream_opened(sync_id),
                ).run()
            except (IterableBadRequest, IterableNotFound):
                # Iterable answers 400 for a list that does not exist: if the list
                # was deleted since the sync was requested, say so.
                pick_audience(await client.get_lists(), record.list_id)
                raise

    async def _complete(self, record: SyncRecord, state: SyncState, counts: Counts) -> None:
        final = await self._store.finish(record.sync_id, "completed", counts)
        # Only now is the member set no longer needed: had the record not been
        # written, a retry would re-read the list and re-send nothing.
        state.delete()
        await self._sizes.put(record.connection_id, record.list_id, counts.members, "sync")
        metrics.SYNCS_FINISHED.labels("completed").inc()
        metrics.LINES_SKIPPED.labels("invalid").inc(counts.invalid)
        metrics.LINES_SKIPPED.labels("duplicate").inc(counts.duplicates)
        log.info(
            "audience sync %s of list %s completed: %d members, %d invalid, %d duplicate lines",
            record.sync_id,
            record.list_id,
            counts.members,
            counts.invalid,
            counts.duplicates,
        )
        await self.publish_progress(final)

    async def _fail(self, sync_id: str, state: SyncState, error: SyncError) -> None:
        # The state file stays: a retry resumes from its checkpoint.
        counts = state.checkpoint()
        state.close()
        metrics.SYNCS_FINISHED.labels(error.code).inc()
        final = await self._store.finish(sync_id, "failed", counts, error)
        await self.publish_progress(final)

    def _progress_reporter(self, sync_id: str) -> Callable[[Counts], Awaitable[None]]:
        interval = self._settings.audience_progress_interval_s
        last = 0.0

        async def report(counts: Counts) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < interval:
                return
            last = now
            try:
                await self._store.progress(sync_id, counts)
            except Exception as exc:  # noqa: BLE001 - informative; the checkpoint is on disk
                log.warning("audience sync %s: progress not recorded: %r", sync_id, exc)
                return
            await self.publish_progress(await self._store.get(sync_id))

        return report
