"""The audiences service's own settings (env vars with the LIFTSTACK_ prefix)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field

from liftstack_shared.settings import CommonSettings


class AudiencesSettings(CommonSettings):
    port: int = 8105

    # Members per `audience.members` message. 1,000 x a 254-char email stays well
    # under Kafka's default 1 MB message limit.
    audience_batch_size: int = Field(default=1000, ge=1, le=3000)
    # Where each running sync keeps its de-duplication set and checkpoint (one SQLite
    # file per sync). Mount a volume here so a retry after a restart resumes instead
    # of re-sending everything. Default: <system temp>/liftstack-audiences.
    audience_state_dir: Path = Path(tempfile.gettempdir()) / "liftstack-audiences"
    # State files of syncs that never finished are deleted at start-up after this.
    audience_state_retention_s: float = Field(default=24 * 3600, gt=0)
    # getUsers attempts per run when the stream breaks or Iterable answers 5xx.
    # The client paces getUsers at 5/min per project, so 5 attempts span ~1 minute.
    audience_max_stream_attempts: int = Field(default=5, ge=1)
    audience_max_concurrent_syncs: int = Field(default=4, ge=1)
    # Progress (Mongo record + `audience.progress`) is written at most this often.
    audience_progress_interval_s: float = Field(default=1.0, ge=0)
    # A pending/running sync whose heartbeat is older than this is considered dead
    # (its process went away) and may be retried.
    audience_heartbeat_s: float = Field(default=10.0, gt=0)
    audience_stale_after_s: float = Field(default=60.0, gt=0)
    # Sizes from lists/{id}/size (5 req/min) are cached this long.
    audience_size_ttl_s: float = Field(default=900.0, ge=0)
    # How long a size request may wait for the 5/min budget before answering 429.
    audience_size_wait_s: float = Field(default=20.0, gt=0)
