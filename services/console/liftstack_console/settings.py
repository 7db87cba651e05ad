"""Console settings: the common ones plus where the other services answer."""

from __future__ import annotations

from liftstack_shared.settings import CommonSettings


class ConsoleSettings(CommonSettings):
    port: int = 8080

    # Where the console calls the other services (with the signed-in user's JWT).
    ingest_url: str = "http://127.0.0.1:8102"
    writeback_url: str = "http://127.0.0.1:8103"
    templates_url: str = "http://127.0.0.1:8104"
    audiences_url: str = "http://127.0.0.1:8105"
    # The Iterable sandbox's admin API (the demo's "send from Iterable"). Unset in a
    # deployment against real Iterable: the wizard then stops at "ready to send".
    sandbox_url: str | None = None

    # Demo sign-in: liftstack has no identity service here, so the console mints
    # JWTs for one demo workspace (Owner or Member). Off in a real deployment.
    demo_signin: bool = True
    demo_workspace: str = "ws-demo"
    # Secure cookies need HTTPS; the local stack is plain HTTP.
    cookie_secure: bool = False

    # Consumer group of the results counter (engagement.events).
    results_group: str = "console-results"
    # The console's own MongoDB database (campaigns, results); default
    # "<mongo_db>_console". Separate on purpose: FerretDB on SQLite has one writer per
    # database file, and the results counter writes in bursts exactly when ingest's
    # Events page consumer does; apart, neither waits on (or times out on) the other.
    console_mongo_db: str = ""

    @property
    def console_db(self) -> str:
        return self.console_mongo_db or f"{self.mongo_db}_console"
