"""The connections service's settings: the common ones plus what is its own."""

from __future__ import annotations

from pydantic import Field

from liftstack_shared.settings import CommonSettings


class ConnectionsSettings(CommonSettings):
    port: int = 8101
    # How long a replaced webhook secret stays valid, so ingest keeps accepting events
    # signed with it while the customer updates Iterable's system webhook settings.
    webhook_secret_grace_s: int = Field(default=24 * 3600, ge=0)
    # Upper bound on one connection test (all its Iterable calls together).
    test_timeout_s: float = Field(default=30.0, gt=0)
