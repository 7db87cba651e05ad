"""Prometheus metrics (served on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

MEMBERS_PUBLISHED = Counter("liftstack_audience_members_published_total", "Audience members published to Kafka.")
LINES_SKIPPED = Counter(
    "liftstack_audience_lines_skipped_total",
    "getUsers lines not published, by reason (counted when a sync completes).",
    ["reason"],
)
STREAM_RESTARTS = Counter(
    "liftstack_audience_stream_restarts_total",
    "getUsers streams re-read from the start after breaking or failing.",
)
SYNCS_FINISHED = Counter(
    "liftstack_audience_syncs_total",
    "Audience syncs finished, by outcome (error code).",
    ["outcome"],
)
SYNCS_RUNNING = Gauge("liftstack_audience_syncs_running", "Audience syncs running now.")
