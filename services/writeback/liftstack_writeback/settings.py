"""Writeback's settings: the common ones plus the knobs of its pipeline.

Every field is a `LIFTSTACK_*` environment variable like the common settings, e.g.
`LIFTSTACK_WRITEBACK_WINDOW=32`.
"""

from __future__ import annotations

from pydantic import Field

from liftstack_shared.settings import CommonSettings


class WritebackSettings(CommonSettings):
    port: int = 8103

    # Batches one instance processes at once. Requests are paced per project anyway;
    # the window only has to cover (rate x latency) so the pacer never idles: 4.5
    # req/s x ~1 s (request + Mongo bookkeeping) needs ~5, 16 leaves margin.
    writeback_window: int = Field(16, ge=1, le=1000)

    # 5xx / timeouts / connection errors: retries per request before the request's
    # users count as failed ("unavailable"), with exponential backoff and jitter.
    writeback_transient_retries: int = Field(5, ge=0)
    writeback_transient_base_delay: float = Field(0.5, ge=0)
    writeback_transient_max_delay: float = Field(20.0, ge=0)
    # 429 without Retry-After: backoff between these bounds. A 429 never fails users.
    writeback_rate_limit_base_delay: float = Field(1.0, ge=0)
    writeback_rate_limit_max_delay: float = Field(60.0, ge=0)
    # Minimum seconds between two recounts (saved summaries) of one run.
    writeback_progress_interval: float = Field(1.0, ge=0)
    # Tries of a batch that fails for its own fault (not an outage: those are waited
    # out) before it is dead-lettered (liftstack_shared.consumer.RetryPolicy).
    writeback_record_attempts: int = Field(5, ge=1)
    # A batch in flight when its partition is revoked gets this long to finish.
    writeback_revoke_grace: float = Field(10.0, ge=0)
    # Kafka group membership: how fast a dead instance's partitions move on.
    writeback_session_timeout_ms: int = Field(10_000, ge=1000)
    # Iterable's bulkUpdate limit per project, requests/s (published: 5). Raise it
    # only if Iterable has raised your project's limit. Paced at this x headroom.
    writeback_bulk_update_rate: float = Field(5.0, gt=0)
    # Slot documents of the distributed pacer older than this are deleted (only
    # slots from now on are ever claimed; the rest is kept for inspection).
    writeback_pacer_retention_s: float = Field(60.0, gt=0)

    @property
    def group_id(self) -> str:
        """Consumer group of every writeback instance of this stack."""
        return f"{self.topic_prefix}liftstack-writeback"
