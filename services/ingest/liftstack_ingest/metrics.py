"""Prometheus metrics of the webhook gateway (default registry, served at /metrics).
Labels are bounded: liftstack event types and fixed reason codes, never connection
ids or Iterable's free-form event names."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECEIVED = Counter(
    "liftstack_ingest_webhooks_received_total",
    "Webhook requests that reached a known connection.",
)
PUBLISHED = Counter(
    "liftstack_ingest_webhooks_published_total",
    "Events acknowledged by Kafka on engagement.events, by event type.",
    ["event_type"],
)
FILTERED = Counter(
    "liftstack_ingest_webhooks_filtered_total",
    "Known events the connection is not configured to process, by event type.",
    ["event_type"],
)
UNKNOWN = Counter(
    "liftstack_ingest_webhooks_unknown_total",
    "Events with an event name liftstack does not know (accepted, not published).",
)
REJECTED = Counter(
    "liftstack_ingest_webhooks_rejected_total",
    "Webhook requests answered with an error, by reason"
    " (unknown_connection, bad_secret, missing_secret, oauth2_client_credentials_unsupported,"
    " body_too_large, invalid_json,"
    " invalid_payload, missing_event_name, missing_user, kafka_unavailable).",
    ["reason"],
)
PUBLISH_SECONDS = Histogram(
    "liftstack_ingest_publish_seconds",
    "Time from publish to Kafka's acknowledgement (acks=all) for one event.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OBSERVATIONS_DROPPED = Counter(
    "liftstack_ingest_observations_dropped_total",
    "Best-effort ingest.observations messages that could not be published.",
)
READ_MODEL_EVENTS = Counter(
    "liftstack_ingest_read_model_events_total",
    "Messages the Events page consumer applied, by result (counted, duplicate, deadlettered).",
    ["result"],
)
PUBLISH_REFUSED = Counter(
    "liftstack_ingest_publish_refused_total",
    "Webhooks answered 503 at once because Kafka was known to be down.",
)
