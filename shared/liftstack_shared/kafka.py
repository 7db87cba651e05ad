"""Kafka plumbing shared by every service: the FastStream broker, topic creation,
and a readiness probe.

Producers are idempotent with acks=all: a publish returns only once every in-sync
replica has the message, which is what lets ingest answer 2xx only for durable events.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import ALL_TOPICS, Topic

log = logging.getLogger(__name__)


def make_broker(settings: CommonSettings, client_id: str) -> KafkaBroker:
    """A FastStream Kafka broker whose publishers wait for acks from all replicas."""
    return KafkaBroker(
        # A list: FastStream takes one string as one host, and a cluster's bootstrap
        # is several ("host1:9092,host2:9092").
        bootstrap_hosts(settings.kafka_bootstrap),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        request_timeout_ms=15_000,
        logger=logging.getLogger(f"liftstack.{client_id}.kafka"),
    )


def bootstrap_hosts(bootstrap: str) -> list[str]:
    """ "h1:9092, h2:9092" -> ["h1:9092", "h2:9092"]."""
    return [host.strip() for host in bootstrap.split(",") if host.strip()]


async def ensure_topics(settings: CommonSettings, topics: tuple[Topic, ...] = ALL_TOPICS) -> None:
    """Create the topics this stack uses, with their partition counts and the
    settings' replication (`topic_replication_factor`, `topic_min_insync_replicas`).
    Idempotent: existing topics are left as they are."""
    configs: dict[str, str] = {}
    if settings.topic_min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(settings.topic_min_insync_replicas)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                settings.topic(t.name),
                num_partitions=t.partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs=configs,
            )
            for t in topics
            if settings.topic(t.name) not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it between list and create
            log.info("created topics %s", [t.name for t in missing])
    finally:
        await admin.close()


async def kafka_ready(bootstrap: str, timeout_s: float = 60.0) -> None:
    """Wait until the cluster answers a metadata request, or raise TimeoutError."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: BLE001 - closing a never-started client
                pass
        await asyncio.sleep(0.5)
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout_s}s: {last!r}")
