"""The whole liftstack, live, for browser and end-to-end tests: every service and the
Iterable sandbox as real processes (as `./liftstack up` runs them), on free ports,
against this session's Kafka topics and MongoDB database, seeded with the demo
workspace exactly as `./liftstack up` seeds it.

Each process logs to test-artifacts/logs/<name>.log (kept for CI).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from liftstack_console.seed import DemoSeed, seed_demo
from liftstack_shared.auth import Role
from liftstack_shared.settings import CommonSettings
from tests.fixtures.asgi import free_port
from tests.fixtures.identity import IdentityProvider

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
LOGS = ARTIFACTS / "logs"

# name -> python module; the sandbox reads LIFTSTACK_SANDBOX_PORT, the rest LIFTSTACK_PORT.
SERVICES = {
    "iterable-sandbox": "liftstack_sandbox",
    "connections": "liftstack_connections",
    "ingest": "liftstack_ingest",
    "writeback": "liftstack_writeback",
    "templates": "liftstack_templates",
    "audiences": "liftstack_audiences",
    "experiments": "liftstack_experiments",
    "console": "liftstack_console",
}
DEMO_MEMBERS = int(os.environ.get("LIFTSTACK_TEST_DEMO_MEMBERS", "3000"))
# The identity provider's users (deploy/local/idp/users.json) belong to these two.
WORKSPACE_A = "ws-demo"
WORKSPACE_B = "ws-second"


@dataclass
class LiveStack:
    settings: CommonSettings
    urls: dict[str, str]
    seed: DemoSeed
    api_key: str
    webhook_secret: str
    idp: IdentityProvider
    # A connection of workspace B, which no user of A may see.
    second_connection_id: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def console(self) -> str:
        return self.urls["console"]

    @property
    def sandbox(self) -> str:
        return self.urls["iterable-sandbox"]

    def token(self, role: Role = Role.OWNER, workspace: str | None = None) -> str:
        """A user access token of the session's identity provider."""
        return self.idp.token(f"test-{role}", workspace or self.seed.workspace_id, role)

    def console_client(self) -> httpx.Client:
        """An HTTP client of the console that sends the console's own Origin, as the
        console's pages do (its CSRF check refuses state changes from elsewhere)."""
        return httpx.Client(base_url=self.console, timeout=60, headers={"Origin": self.console})

    @contextmanager
    def signed_in_client(self, login: str) -> Iterator[httpx.Client]:
        """A console client signed in through the identity provider as `login`."""
        with self.console_client() as http:
            done = self.idp.sign_in(http, login)
            assert done.status_code == 200 and "lf_session" in http.cookies, (done.status_code, done.url)
            yield http

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}; see {LOGS / (name + '.log')}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _drop_own_dbs(settings: CommonSettings) -> None:
    """The console's and the experiments service's own databases."""
    from pymongo import MongoClient

    client: MongoClient[dict[str, object]] = MongoClient(settings.mongo_url, serverSelectionTimeoutMS=5000)
    try:
        for suffix in ("_console", "_experiments"):
            client.drop_database(f"{settings.mongo_db}{suffix}")
    except Exception:  # noqa: BLE001 - best effort, like the session database's drop
        pass
    finally:
        client.close()


def _second_workspace_connection(connections_url: str, idp: IdentityProvider) -> str:
    """Workspace B's connection (no webhook: the sandbox's sends stay A's alone)."""
    token = idp.token("seed-owner-b", WORKSPACE_B, Role.OWNER, ttl_s=600)
    r = httpx.post(
        f"{connections_url}/v1/workspaces/{WORKSPACE_B}/connections",
        timeout=30,
        headers={"Authorization": f"Bearer {token}"},
        json={
            "name": "Workspace B's Iterable",
            "api_key": secrets.token_hex(16),
            "webhook_secret": secrets.token_urlsafe(24),
            "region": "US",
            "event_types": ["open"],
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="session")
def live_stack(
    kafka_topics: CommonSettings, identity_provider: IdentityProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    settings = kafka_topics
    idp = identity_provider
    LOGS.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in SERVICES}
    # The provider's client is registered for this console address.
    ports["console"] = idp.console_port
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    env = {
        **os.environ,
        "LIFTSTACK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LIFTSTACK_MONGO_URL": settings.mongo_url,
        "LIFTSTACK_MONGO_DB": settings.mongo_db,
        "LIFTSTACK_TOPIC_PREFIX": settings.topic_prefix,
        "LIFTSTACK_MASTER_KEYS": settings.master_keys.get_secret_value(),
        "LIFTSTACK_OIDC_ISSUER": idp.issuer,
        "LIFTSTACK_OIDC_JWKS_URL": idp.jwks_url,
        "LIFTSTACK_OIDC_AUDIENCE": idp.audience,
        "LIFTSTACK_SERVICE_TOKEN": settings.service_token.get_secret_value(),
        "LIFTSTACK_CONNECTIONS_URL": urls["connections"],
        "LIFTSTACK_INGEST_PUBLIC_URL": urls["ingest"],
        "LIFTSTACK_INGEST_URL": urls["ingest"],
        "LIFTSTACK_WRITEBACK_URL": urls["writeback"],
        "LIFTSTACK_TEMPLATES_URL": urls["templates"],
        "LIFTSTACK_AUDIENCES_URL": urls["audiences"],
        "LIFTSTACK_EXPERIMENTS_URL": urls["experiments"],
        "LIFTSTACK_SANDBOX_URL": urls["iterable-sandbox"],
        "LIFTSTACK_ITERABLE_BASE_URL": urls["iterable-sandbox"],
        "LIFTSTACK_AUDIENCE_STATE_DIR": str(tmp_path_factory.mktemp("audience-state")),
        "LIFTSTACK_LOG_LEVEL": "INFO",
        # The sandbox applies bulk updates at once: a short settle for the readiness gate.
        "LIFTSTACK_READINESS_SETTLE_S": "1",
        # Injected Iterable outages (the Re-trigger test) fail a batch in seconds.
        "LIFTSTACK_WRITEBACK_TRANSIENT_RETRIES": "1",
        "LIFTSTACK_WRITEBACK_TRANSIENT_BASE_DELAY": "0.05",
        "LIFTSTACK_WRITEBACK_TRANSIENT_MAX_DELAY": "0.2",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, module in SERVICES.items():
            port_var = "LIFTSTACK_SANDBOX_PORT" if name == "iterable-sandbox" else "LIFTSTACK_PORT"
            # Only the console is the provider's client (and knows its secret).
            own = (
                {
                    "LIFTSTACK_OIDC_CLIENT_ID": idp.client_id,
                    "LIFTSTACK_OIDC_CLIENT_SECRET": idp.client_secret,
                    "LIFTSTACK_CONSOLE_PUBLIC_URL": urls["console"],
                }
                if name == "console"
                else {}
            )
            # The child keeps its own copy of the log's descriptor.
            with open(LOGS / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(
                    [sys.executable, "-m", module],
                    cwd=REPO,
                    env={**env, **own, port_var: str(ports[name])},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
        deadline = time.monotonic() + 90
        for name in procs:
            while not _healthy(urls[name]):
                if procs[name].poll() is not None or time.monotonic() > deadline:
                    tail = (LOGS / f"{name}.log").read_text(errors="replace")[-3000:]
                    pytest.fail(f"{name} did not become healthy:\n{tail}", pytrace=False)
                time.sleep(0.2)
        api_key = secrets.token_hex(16)
        webhook_secret = secrets.token_urlsafe(24)
        seed_settings = settings.model_copy(update={"connections_url": urls["connections"]})
        seed = asyncio.run(
            seed_demo(
                seed_settings,
                sandbox_url=urls["iterable-sandbox"],
                workspace_id=WORKSPACE_A,
                owner_token=idp.token("seed-owner", WORKSPACE_A, Role.OWNER, ttl_s=600),
                api_key=api_key,
                webhook_secret=webhook_secret,
                members=DEMO_MEMBERS,
            )
        )
        second = _second_workspace_connection(urls["connections"], idp)
        stack = LiveStack(seed_settings, urls, seed, api_key, webhook_secret, idp, second, procs)
        yield stack
    finally:
        for proc in procs.values():
            proc.terminate()
        _drop_own_dbs(settings)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
