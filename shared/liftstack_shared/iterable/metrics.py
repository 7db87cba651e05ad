"""Prometheus metrics for Iterable traffic (default registry, served by every
service's /metrics). Labels are bounded: endpoint names, status codes, reasons."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "liftstack_iterable_requests_total",
    "Iterable API responses and transport failures, by endpoint and status"
    " (HTTP code, or 'timeout' / 'connection_error').",
    ["endpoint", "status"],
)
REQUEST_SECONDS = Histogram(
    "liftstack_iterable_request_seconds",
    "Time to the response headers of one Iterable API attempt.",
    ["endpoint"],
)
RETRIES = Counter(
    "liftstack_iterable_retries_total",
    "Iterable API attempts retried, by reason (rate_limited, server_error, timeout, connection_error).",
    ["endpoint", "reason"],
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "liftstack_iterable_rate_limit_wait_seconds",
    "Seconds spent waiting for rate-limit budget: 'limiter' is our own bucket,"
    " 'retry_after' and 'backoff' follow a 429.",
    ["endpoint", "source"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
BACKOFF_SECONDS = Histogram(
    "liftstack_iterable_backoff_seconds",
    "Seconds slept before retrying a 5xx, timeout or connection error.",
    ["endpoint", "reason"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
BULK_USERS = Counter(
    "liftstack_iterable_bulk_update_users_total",
    "Users submitted to users/bulkUpdate, by outcome (ok or a failure reason).",
    ["outcome"],
)
