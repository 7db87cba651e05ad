"""Schemathesis against every service's /openapi.json, each service running for
real (uvicorn, Kafka, MongoDB; Iterable played by the sandbox). Seeded and short
(a few hundred cases per service); see tests/fuzz/openapi_run.py for the checks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from liftstack_shared.auth import SERVICE_TOKEN_HEADER, Role
from liftstack_shared.connections_client import InternalConnection, Region
from liftstack_shared.credentials import StaticCredentials
from liftstack_shared.settings import CommonSettings
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.identity import demo_console_values, user_token
from tests.fuzz.openapi_run import fuzz_openapi

pytestmark = pytest.mark.integration

WORKSPACE = "ws_fuzz"
CONNECTION = "conn_fuzz"
EXAMPLES_PER_OPERATION = 25  # per generation mode (positive, negative)
SEED = 20261201


def _values(settings: CommonSettings, **overrides: Any) -> dict[str, Any]:
    return {**settings.model_dump(exclude={"port"}), **overrides}


def _ingest(values: dict[str, Any]) -> Starlette:
    from liftstack_ingest.app import create_app
    from liftstack_ingest.lookup import InMemoryConnections
    from liftstack_ingest.settings import IngestSettings

    connection = InternalConnection(
        connection_id=CONNECTION,
        workspace_id=WORKSPACE,
        name="Fuzz",
        region=Region.US,
        api_key=SecretStr("0" * 32),
        status="active",
    )
    return create_app(IngestSettings(**values), InMemoryConnections({"t" * 24: connection}))


def _writeback(values: dict[str, Any]) -> Starlette:
    from liftstack_writeback.app import create_app
    from liftstack_writeback.settings import WritebackSettings

    return create_app(WritebackSettings(**values), StaticCredentials(), consume=False)


def _connections(values: dict[str, Any]) -> Starlette:
    from liftstack_connections.app import create_app
    from liftstack_connections.settings import ConnectionsSettings

    return create_app(ConnectionsSettings(**values, test_timeout_s=5.0))


def _templates(values: dict[str, Any]) -> Starlette:
    from liftstack_templates.app import create_app
    from liftstack_templates.settings import TemplatesSettings

    return create_app(TemplatesSettings(**values), credentials=StaticCredentials())


def _audiences(values: dict[str, Any]) -> Starlette:
    from liftstack_audiences.app import create_app
    from liftstack_audiences.settings import AudiencesSettings

    return create_app(AudiencesSettings(**values), StaticCredentials())


def _experiments(values: dict[str, Any]) -> Starlette:
    from liftstack_experiments.app import create_app
    from liftstack_experiments.settings import ExperimentsSettings
    from tests.fixtures.asgi import free_port

    # Nothing answers where the loop's services would be: those steps answer 503.
    nowhere = f"http://127.0.0.1:{free_port()}"
    urls = {"audiences_url": nowhere, "writeback_url": nowhere, "templates_url": nowhere}
    return create_app(ExperimentsSettings(**values, **urls), run_consumer=False)


SERVICES: dict[str, tuple[Callable[[dict[str, Any]], Starlette], dict[str, str]]] = {
    "ingest": (_ingest, {"connection_id": CONNECTION, "token": "t" * 24}),
    "writeback": (_writeback, {"ws": WORKSPACE}),
    "connections": (_connections, {"workspace_id": WORKSPACE}),
    "templates": (_templates, {"workspace_id": WORKSPACE}),
    "audiences": (_audiences, {"workspace_id": WORKSPACE}),
    "experiments": (_experiments, {"workspace_id": WORKSPACE}),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_every_operation_keeps_its_own_openapi_contract(service, kafka_topics, sandbox_server, tmp_path):
    factory, pinned = SERVICES[service]
    values = _values(kafka_topics, iterable_base_url=sandbox_server.base_url, audience_state_dir=str(tmp_path))
    headers = {
        "Authorization": "Bearer " + user_token(kafka_topics, "u_fuzz", WORKSPACE, Role.OWNER),
        SERVICE_TOKEN_HEADER: kafka_topics.service_token.get_secret_value(),
    }
    with serve_asgi(factory(values), timeout_s=60) as url:
        report = await asyncio.to_thread(fuzz_openapi, service, url, headers, pinned, EXAMPLES_PER_OPERATION, SEED)
    print(f"\nschemathesis: {report.summary()}")
    assert report.operations > 0
    assert report.server_errors == [], report.server_errors[:5]
    assert report.schema_violations == [], report.schema_violations[:5]


async def test_the_console_document_is_valid_too(kafka_topics):
    """The console's JSON API serves its pages' scripts and describes no operations,
    but its /openapi.json must still be a document schemathesis loads."""
    import schemathesis

    from liftstack_console.app import create_app
    from liftstack_console.settings import ConsoleSettings

    app = create_app(ConsoleSettings(**demo_console_values(_values(kafka_topics))))
    with serve_asgi(app, timeout_s=60) as url:
        schema = await asyncio.to_thread(schemathesis.openapi.from_url, f"{url}/openapi.json")
        schema.validate()
