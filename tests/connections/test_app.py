"""Service plumbing: health, metrics, OpenAPI, configuration checks, entry point."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from liftstack_connections.__main__ import main
from liftstack_connections.app import create_app
from liftstack_connections.crypto import MasterKeyError


async def test_healthz_checks_mongo_and_kafka(api):
    async with httpx.AsyncClient(base_url=api) as c:
        r = await c.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"service": "connections", "status": "ok", "checks": {"mongo": "ok", "kafka": "ok"}}


async def test_metrics(api):
    async with httpx.AsyncClient(base_url=api) as c:
        r = await c.get("/metrics")
    assert r.status_code == 200 and "python_info" in r.text


async def test_openapi_documents_every_route(api):
    from openapi_spec_validator import validate

    async with httpx.AsyncClient(base_url=api) as c:
        doc = (await c.get("/openapi.json")).json()
    validate(doc)
    base = "/v1/workspaces/{workspace_id}/connections"
    assert {path: sorted(ops) for path, ops in doc["paths"].items()} == {
        base: ["get", "post"],
        base + "/{connection_id}": ["delete", "get", "patch"],
        base + "/{connection_id}/test": ["post"],
        "/internal/connections/{connection_id}": ["get"],
        "/internal/webhooks/{token}": ["get"],
    }
    assert doc["paths"]["/internal/webhooks/{token}"]["get"]["security"] == [{"service": []}]
    assert doc["paths"][base]["post"]["security"] == [{"bearer": []}]
    create = doc["components"]["schemas"]["ConnectionCreate"]
    assert {"name", "api_key"} <= set(create["required"])


def test_app_refuses_to_start_without_master_keys(conn_settings):
    with pytest.raises(MasterKeyError):
        create_app(conn_settings.model_copy(update={"master_keys": SecretStr("")}))


def test_cli_rejects_unknown_commands():
    with pytest.raises(SystemExit) as info:
        main(["nonsense"])
    assert info.value.code == 2
