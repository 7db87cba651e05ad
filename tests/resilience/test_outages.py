"""Every service under a MongoDB or Kafka outage: `/healthz` answers 503 within 2 s
(liveness probes wait about that long), request paths that need MongoDB answer 503
`database_unavailable` with Retry-After instead of a 500.

MongoDB is "down" behind a TCP proxy of the test's own (the shared server keeps
running); Kafka is "down" by pointing a service at a closed port."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from liftstack_shared.auth import Role
from liftstack_shared.credentials import StaticCredentials
from liftstack_shared.settings import CommonSettings
from tests.fixtures.asgi import free_port, serve_asgi
from tests.fixtures.identity import demo_console_values, user_token
from tests.fixtures.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.integration

HEALTH_BOUND_S = 2.0


def _base(settings: CommonSettings, **overrides: Any) -> dict[str, Any]:
    return {**settings.model_dump(exclude={"port"}), **overrides}


def ingest_app(values: dict[str, Any]) -> Starlette:
    from liftstack_ingest.app import create_app
    from liftstack_ingest.lookup import InMemoryConnections
    from liftstack_ingest.settings import IngestSettings

    return create_app(IngestSettings(**values, kafka_connect_wait_s=10), InMemoryConnections())


def writeback_app(values: dict[str, Any]) -> Starlette:
    from liftstack_writeback.app import create_app
    from liftstack_writeback.settings import WritebackSettings

    return create_app(WritebackSettings(**values), StaticCredentials(), consume=False)


def connections_app(values: dict[str, Any]) -> Starlette:
    from liftstack_connections.app import create_app
    from liftstack_connections.settings import ConnectionsSettings

    return create_app(ConnectionsSettings(**values))


def templates_app(values: dict[str, Any]) -> Starlette:
    from liftstack_templates.app import create_app
    from liftstack_templates.settings import TemplatesSettings

    return create_app(TemplatesSettings(**values), credentials=StaticCredentials())


def audiences_app(values: dict[str, Any]) -> Starlette:
    from liftstack_audiences.app import create_app
    from liftstack_audiences.settings import AudiencesSettings

    return create_app(AudiencesSettings(**values), StaticCredentials())


def console_app(values: dict[str, Any]) -> Starlette:
    from liftstack_console.app import create_app
    from liftstack_console.settings import ConsoleSettings

    return create_app(ConsoleSettings(**demo_console_values(values)))


def experiments_app(values: dict[str, Any]) -> Starlette:
    from liftstack_experiments.app import create_app
    from liftstack_experiments.settings import ExperimentsSettings

    return create_app(ExperimentsSettings(**values))


SERVICES: dict[str, Callable[[dict[str, Any]], Starlette]] = {
    "ingest": ingest_app,
    "writeback": writeback_app,
    "connections": connections_app,
    "templates": templates_app,
    "audiences": audiences_app,
    "console": console_app,
    "experiments": experiments_app,
}


async def _timed_health(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get("/healthz")
    return response, time.monotonic() - started


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_healthz_with_mongodb_down_is_503_within_2s(service, kafka_topics, tmp_path):
    mongo_host_port = kafka_topics.mongo_url.split("//", 1)[1].rstrip("/")
    with tcp_proxy(mongo_host_port) as proxy:
        values = _base(kafka_topics, mongo_url=f"mongodb://127.0.0.1:{proxy.port}/", audience_state_dir=str(tmp_path))
        with serve_asgi(SERVICES[service](values), timeout_s=60) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                healthy, _ = await _timed_health(client)
                assert healthy.status_code == 200, healthy.text
                proxy.cut()
                for _ in range(2):  # the first check after the cut, and a later one
                    response, elapsed = await _timed_health(client)
                    assert response.status_code == 503, response.text
                    assert response.json()["checks"]["mongo"].startswith("error")
                    assert elapsed < HEALTH_BOUND_S, f"{service} /healthz took {elapsed:.2f}s"
                    print(f"\n{service} /healthz with MongoDB down: {response.status_code} in {elapsed:.2f}s")
                proxy.restore()


async def test_healthz_of_every_service_with_kafka_killed_is_503_within_2s(kafka_topics, tmp_path):
    """Every service started against a Kafka of the test's own, which is then killed
    (the shared broker is never touched)."""
    from contextlib import ExitStack

    from liftstack_shared.kafka import ensure_topics, kafka_ready
    from tests.ingest.private_kafka import private_kafka

    with private_kafka() as kafka, ExitStack() as running:
        await kafka_ready(kafka.bootstrap, timeout_s=120)
        values = _base(kafka_topics, kafka_bootstrap=kafka.bootstrap, audience_state_dir=str(tmp_path))
        await ensure_topics(CommonSettings(**values))
        urls = {
            name: running.enter_context(serve_asgi(factory(values), timeout_s=90)) for name, factory in SERVICES.items()
        }
        async with httpx.AsyncClient(timeout=30) as client:
            for name, url in urls.items():
                response = await client.get(f"{url}/healthz")
                assert response.status_code == 200, (name, response.text)
            kafka.stop()
            for attempt in range(2):
                for name, url in urls.items():
                    started = time.monotonic()
                    response = await client.get(f"{url}/healthz")
                    elapsed = time.monotonic() - started
                    print(
                        f"\n{name} /healthz with Kafka down (check {attempt + 1}): "
                        f"{response.status_code} in {elapsed:.2f}s {response.json()['checks']}"
                    )
                    assert elapsed < HEALTH_BOUND_S, f"{name} /healthz took {elapsed:.2f}s"
                    if name not in ("templates", "console"):  # they use no Kafka
                        assert response.status_code == 503, (name, response.text)
                        assert response.json()["checks"]["kafka"].startswith("error")


async def test_ingest_healthz_with_kafka_at_a_closed_port_is_503_within_2s(kafka_topics):
    values = _base(kafka_topics, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    from liftstack_ingest.app import create_app
    from liftstack_ingest.lookup import InMemoryConnections
    from liftstack_ingest.settings import IngestSettings

    app = create_app(IngestSettings(**values, kafka_connect_wait_s=0), InMemoryConnections())
    with serve_asgi(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response, elapsed = await _timed_health(client)
    assert response.status_code == 503
    assert response.json()["checks"]["kafka"].startswith("error")
    assert elapsed < HEALTH_BOUND_S


async def test_request_paths_answer_503_with_retry_after_while_mongodb_is_down(kafka_topics, tmp_path):
    """Writeback's job view and ingest's Events page read MongoDB on every request."""
    mongo_host_port = kafka_topics.mongo_url.split("//", 1)[1].rstrip("/")
    token = user_token(kafka_topics, "user_1", "ws_1", Role.OWNER)
    auth = {"Authorization": f"Bearer {token}"}
    with tcp_proxy(mongo_host_port) as proxy:
        values = _base(kafka_topics, mongo_url=f"mongodb://127.0.0.1:{proxy.port}/")
        with serve_asgi(writeback_app(values), timeout_s=60) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                path = "/v1/workspaces/ws_1/writeback/jobs/job_1"
                assert (await client.get(path, headers=auth)).status_code == 404
                proxy.cut()
                started = time.monotonic()
                response = await client.get(path, headers=auth)
                elapsed = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"]
                assert response.json()["error"]["code"] == "database_unavailable"
                assert elapsed < 5.0
                retrigger = await client.post(path + "/retrigger", headers=auth)
                assert retrigger.status_code == 503, retrigger.text
                assert retrigger.headers["retry-after"]
