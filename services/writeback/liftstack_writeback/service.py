"""Composition root: MongoDB, the Kafka producer, the pacer, clients, the consumer,
and the re-trigger operation the HTTP API offers."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from liftstack_shared.consumer import MessageGuard, RetryPolicy
from liftstack_shared.credentials import CredentialsSource
from liftstack_shared.iterable import Endpoint, Limit
from liftstack_shared.kafka import ensure_topics
from liftstack_shared.messages import Assignment, AssignmentBatch, DeadLetter, WritebackProgress, utcnow
from liftstack_shared.mongo import database, make_mongo_client
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER, WRITEBACK_PROGRESS
from liftstack_writeback.clients import IterableClients
from liftstack_writeback.consumer import OrderedConsumer
from liftstack_writeback.jobs import RETRIGGER, JobHeader, JobStore, RunSummary
from liftstack_writeback.pacer import MongoPacer
from liftstack_writeback.processor import BATCHES, CLASSIFIER, BatchProcessor
from liftstack_writeback.progress import ProgressTracker
from liftstack_writeback.settings import WritebackSettings
from liftstack_writeback.writer import BatchWriter, WriterPolicy

log = logging.getLogger(__name__)

# A re-trigger whose publishing was interrupted may be resumed after this long
# (sooner, it is probably still publishing).
RESUME_AFTER_S = 60.0


@dataclass(frozen=True)
class RetriggerResult:
    summary: RunSummary
    # False: an earlier call with the same idempotency key created this run.
    created: bool


class RetriggerRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WritebackService:
    def __init__(self, settings: WritebackSettings, credentials: CredentialsSource) -> None:
        self.settings = settings
        self.credentials = credentials
        # Names this process in outcome documents (who wrote which batch).
        self.instance = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"
        self.mongo: AsyncMongoClient = make_mongo_client(settings)
        db = database(self.mongo, settings)
        self.store = JobStore(db)
        self.pacer = MongoPacer(
            db["writeback_pacer"],
            headroom=settings.iterable_rate_headroom,
            limits={Endpoint.BULK_UPDATE: Limit(settings.writeback_bulk_update_rate, 1)},
            retention_s=settings.writeback_pacer_retention_s,
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="liftstack-writeback",
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=15_000,
        )
        self.clients = IterableClients(settings, credentials, self.pacer)
        self.progress = ProgressTracker(self.store, self._publish_progress, settings.writeback_progress_interval)
        writer = BatchWriter(
            WriterPolicy(
                rate_limit_base_delay=settings.writeback_rate_limit_base_delay,
                rate_limit_max_delay=settings.writeback_rate_limit_max_delay,
            )
        )
        self.processor = BatchProcessor(
            store=self.store,
            clients=self.clients,
            writer=writer,
            progress=self.progress,
            instance=self.instance,
        )
        self.guard = MessageGuard(
            consumer="writeback",
            dead_letters=self._publish_dead_letter,
            classifier=CLASSIFIER,
            policy=RetryPolicy(attempts=settings.writeback_record_attempts),
        )
        self.consumer = OrderedConsumer(
            bootstrap=settings.kafka_bootstrap,
            topic=settings.topic(CAMPAIGN_ASSIGNMENTS.name),
            group_id=settings.group_id,
            handler=self.processor.handle,
            guard=self.guard,
            window=settings.writeback_window,
            revoke_grace_s=settings.writeback_revoke_grace,
            session_timeout_ms=settings.writeback_session_timeout_ms,
        )
        self._started = False

    async def start(self, consume: bool = True) -> None:
        await self.store.setup()
        await ensure_topics(self.settings, (CAMPAIGN_ASSIGNMENTS, WRITEBACK_PROGRESS, WRITEBACK_DEADLETTER))
        await self.producer.start()
        if consume:
            await self.consumer.start()
        self._started = consume

    async def stop(self) -> None:
        """Graceful: in-flight batches finish and are committed."""
        if self._started:
            await self.consumer.stop()
        await self._close()

    async def abort(self) -> None:
        """Crash-like (tests): in-flight work is dropped, nothing more is committed."""
        if self._started:
            await self.consumer.abort()
        await self._close()

    async def _close(self) -> None:
        await self.progress.aclose()
        await self.clients.aclose()
        await self.producer.stop()
        await self.credentials.aclose()
        await self.mongo.close()

    # --- publishing ----------------------------------------------------------------

    async def _publish_progress(self, progress: WritebackProgress) -> None:
        await self.producer.send_and_wait(
            self.settings.topic(WRITEBACK_PROGRESS.name),
            progress.to_bytes(),
            key=progress.job_id.encode(),
        )

    async def _publish_dead_letter(self, letter: DeadLetter) -> None:
        await self.producer.send_and_wait(
            self.settings.topic(WRITEBACK_DEADLETTER.name),
            letter.to_bytes(),
            key=letter.key.encode() if letter.key else None,
        )
        BATCHES.labels("dead_letter").inc()

    # --- health --------------------------------------------------------------------

    async def check_kafka(self) -> None:
        if self._started and not self.consumer.alive:
            raise RuntimeError("the consumer loop has stopped")
        # A metadata request is a real round trip to the cluster.
        await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 5)

    async def check_mongo(self) -> None:
        await asyncio.wait_for(self.mongo.admin.command("ping"), 5)

    # --- re-trigger ----------------------------------------------------------------

    async def retrigger(self, header: JobHeader, idempotency_key: str | None = None) -> RetriggerResult:
        """Re-run a finished job from the beginning: its stored assignments are
        published again as run N+1, through the same topic, partition, pacer and
        counting as the first run. Writing a value a profile already has is harmless.

        If publishing a re-trigger was interrupted, calling again resumes it
        (re-publishing is safe: batches already recorded for the run are skipped).

        With an `idempotency_key`, a repeated call (a client retrying after a lost
        response) answers the run that key created instead of starting another."""
        summaries = await self.store.summaries(header)
        if not summaries:
            raise RetriggerRefused("job_not_started", "The job has no run yet.")
        if idempotency_key is not None:
            for run_doc, summary in summaries:
                if run_doc.get("idempotency_key") == idempotency_key:
                    return await self._replay(header, run_doc, summary)
        last_doc, last = summaries[-1]
        resume = False
        if last.finished:
            run = last.run + 1
        elif (
            last.created_by == RETRIGGER and last_doc.get("published_at") is None and _age_s(last_doc) > RESUME_AFTER_S
        ):
            run, resume = last.run, True
        else:
            raise RetriggerRefused("job_running", f"Run {last.run} is still {last.status}; re-trigger it once it ends.")
        batches = await self.store.stored_batches(header)
        if batches is None:
            raise RetriggerRefused("assignments_unavailable", "The job's assignments are not all stored.")
        if not resume and not await self.store.create_retrigger_run(header.job_id, run, idempotency_key):
            winner = await self.store.run_doc(header.job_id, run)
            same_request = (
                winner is not None and idempotency_key is not None and winner.get("idempotency_key") == idempotency_key
            )
            if same_request:
                # A concurrent retry of this very request created it.
                existing = await self.store.summarize_run(header.job_id, run)
                assert existing is not None
                return RetriggerResult(existing, created=False)
            raise RetriggerRefused("retrigger_in_progress", "The job is being re-triggered already.")
        return RetriggerResult(await self._publish_run(header, run, batches), created=True)

    async def _replay(self, header: JobHeader, run_doc: dict[str, Any], summary: RunSummary) -> RetriggerResult:
        """The answer to a repeated re-trigger: the run it created, whose publishing
        is finished here if the first attempt was interrupted long enough ago."""
        if run_doc.get("published_at") is None and _age_s(run_doc) > RESUME_AFTER_S:
            batches = await self.store.stored_batches(header)
            if batches is not None:
                summary = await self._publish_run(header, summary.run, batches)
        return RetriggerResult(summary, created=False)

    async def _publish_run(self, header: JobHeader, run: int, batches: list[list[Assignment]]) -> RunSummary:
        topic = self.settings.topic(CAMPAIGN_ASSIGNMENTS.name)
        key = header.connection_id.encode()
        sends = []
        for seq, assignments in enumerate(batches):
            message = AssignmentBatch(
                job_id=header.job_id,
                workspace_id=header.workspace_id,
                connection_id=header.connection_id,
                campaign_key=header.campaign_key,
                batch_seq=seq,
                batch_count=header.batch_count,
                total_recipients=header.total,
                run=run,
                assignments=assignments,
            )
            sends.append(await self.producer.send(topic, message.to_bytes(), key=key))
        await asyncio.gather(*sends)
        await self.store.mark_published(header.job_id, run)
        log.info("writeback job %s re-triggered as run %d (%d batches)", header.job_id, run, len(batches))
        summary = await self.store.summarize_run(header.job_id, run)
        assert summary is not None
        return summary


def _age_s(run_doc: dict[str, Any]) -> float:
    created = run_doc.get("created_at")
    return (utcnow() - created).total_seconds() if created else float("inf")
