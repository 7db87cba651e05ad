"""Ingest's own settings on top of the shared ones (all `LIFTSTACK_*` env vars)."""

from __future__ import annotations

from pydantic import Field

from liftstack_shared.settings import CommonSettings


class IngestSettings(CommonSettings):
    port: int = 8102

    # Iterable's system-webhook bodies are a few KB; anything this large is not one.
    webhook_max_body_bytes: int = Field(default=256 * 1024, gt=0)
    # A webhook must fail with 503 within this bound when Kafka doesn't ack, so
    # Iterable retries instead of hanging on us (and we never 2xx an unstored event).
    publish_timeout_s: float = Field(default=5.0, gt=0)
    # How long start-up waits for Kafka before serving anyway (webhooks answer 503
    # until the broker connects in the background).
    kafka_connect_wait_s: float = Field(default=15.0, ge=0)
    # Connection lookups (webhook token -> connection) are cached this long;
    # `connection.changed` drops entries sooner.
    connections_cache_ttl_s: float = Field(default=30.0, ge=0)

    # The Events page read model. Running the consumer in the gateway process is the
    # simple default; a deployment can split it out by turning it off on gateways.
    events_consumer_enabled: bool = True
    # Recent events (and so the dedupe window for Iterable retries) are kept this long.
    events_retention_hours: int = Field(default=7 * 24, ge=1)
    events_prune_interval_s: float = Field(default=600.0, gt=0)
    events_consumer_batch: int = Field(default=500, ge=1)
