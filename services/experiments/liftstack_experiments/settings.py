"""Experiments settings: the common ones plus where the services of the campaign loop answer."""

from __future__ import annotations

from liftstack_shared.settings import CommonSettings


class ExperimentsSettings(CommonSettings):
    port: int = 8106

    # The services the campaign loop drives, always as the signed-in user (their
    # bearer token is forwarded, so each service applies its own role rules).
    writeback_url: str = "http://127.0.0.1:8103"
    templates_url: str = "http://127.0.0.1:8104"
    audiences_url: str = "http://127.0.0.1:8105"
    # The Iterable sandbox's admin API (the demo's "send from Iterable"). Unset in a
    # deployment against real Iterable: the loop then stops at "ready to send".
    sandbox_url: str | None = None

    # Profiles written per second at the project's Iterable budget, for the setup
    # calculator's writeback time: bulkUpdate's 5 req/s x 1,000 users at writeback's
    # 90% pacing (services/writeback/README.md measures 4,480/s on the sandbox).
    writeback_profiles_per_second: float = 4500.0

    # The readiness gate: time since the last write before a campaign is ready
    # (Iterable applies bulk updates asynchronously; large syncs can take about ten
    # minutes to show).
    readiness_settle_s: float = 600.0

    # Consumer group of the results counter (engagement.events).
    results_group: str = "experiments-results"
    # The service's own MongoDB database (campaigns, results); default
    # "<mongo_db>_experiments". Separate on purpose: FerretDB on SQLite has one writer
    # per database file, and the results counter writes in bursts exactly when
    # ingest's Events page consumer does; apart, neither waits on (or times out on)
    # the other.
    experiments_mongo_db: str = ""

    @property
    def experiments_db(self) -> str:
        return self.experiments_mongo_db or f"{self.mongo_db}_experiments"
