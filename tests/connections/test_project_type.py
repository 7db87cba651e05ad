"""A connection records its Iterable project's type (email-based, userID-based,
hybrid): set on create and edit by Owners/Admins, validated, on the card and in the
internal view other services read; documents saved before the field existed read
as email-based."""

from __future__ import annotations

import pytest

from liftstack_shared.auth import Role
from liftstack_shared.connections_client import ConnectionsClient
from tests.connections.support import Workspace, service_client


async def internal(conn_settings, api, connection_id: str) -> dict:
    async with service_client(conn_settings, api) as c:
        r = await c.get(f"/internal/connections/{connection_id}")
    assert r.status_code == 200, r.text
    return r.json()


async def test_project_type_is_set_on_create_and_edit_and_read_internally(ws: Workspace, conn_settings, api):
    card = await ws.create(project_type="userId")
    assert card["project_type"] == "userId"
    assert (await internal(conn_settings, api, card["id"]))["project_type"] == "userId"
    # Through the shared client, as audiences reads it.
    client = ConnectionsClient(conn_settings.model_copy(update={"connections_url": api}))
    try:
        assert (await client.get(card["id"])).project_type == "userId"
    finally:
        await client.aclose()

    async with ws.client(Role.ADMIN) as c:
        r = await c.patch(f"{ws.path}/{card['id']}", json={"project_type": "hybrid"})
        assert r.status_code == 200, r.text
        assert r.json()["project_type"] == "hybrid"
        # Not a credential: the connection's status and test are left alone.
        assert r.json()["status"] == card["status"]
        assert (await c.get(f"{ws.path}/{card['id']}")).json()["project_type"] == "hybrid"
    assert (await internal(conn_settings, api, card["id"]))["project_type"] == "hybrid"


async def test_project_type_defaults_to_email(ws: Workspace, conn_settings, api):
    card = await ws.create()
    assert card["project_type"] == "email"
    assert (await internal(conn_settings, api, card["id"]))["project_type"] == "email"


async def test_documents_without_a_project_type_read_as_email(ws: Workspace, conn_settings, api, mongo_client):
    """Connections saved before the field existed: no migration, read as email."""
    card = await ws.create(project_type="userId")
    col = mongo_client[conn_settings.mongo_db]["connections"]
    await col.update_one({"_id": card["id"]}, {"$unset": {"project_type": ""}})
    assert "project_type" not in await col.find_one({"_id": card["id"]})
    async with ws.client() as c:
        assert (await c.get(f"{ws.path}/{card['id']}")).json()["project_type"] == "email"
    assert (await internal(conn_settings, api, card["id"]))["project_type"] == "email"


@pytest.mark.parametrize("bad", ["userid", "user_id", "", "EMAIL", 1, ["email"]])
async def test_an_invalid_project_type_is_refused_and_nothing_stored(
    ws: Workspace, conn_settings, api, mongo_client, bad
):
    col = mongo_client[conn_settings.mongo_db]["connections"]
    async with ws.client() as c:
        r = await c.post(ws.path, json={"name": "Typed", "api_key": "0" * 32, "project_type": bad})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert (error["code"], error["field"]) == ("validation_error", "project_type")
        assert "'email', 'userId' or 'hybrid'" in error["message"]
    assert await col.count_documents({"workspace_id": ws.id}) == 0

    card = await ws.create(project_type="userId")
    before = await col.find_one({"_id": card["id"]})
    async with ws.client() as c:
        for body in ({"project_type": bad}, {"project_type": None}):
            r = await c.patch(f"{ws.path}/{card['id']}", json=body)
            assert r.status_code == 422, r.text
            assert r.json()["error"]["field"] == "project_type"
    assert await col.find_one({"_id": card["id"]}) == before


async def test_members_cannot_set_the_project_type(ws: Workspace, conn_settings, mongo_client):
    card = await ws.create()
    async with ws.client(Role.MEMBER) as c:
        r = await c.patch(f"{ws.path}/{card['id']}", json={"project_type": "userId"})
        assert r.status_code == 403, r.text
        r = await c.post(ws.path, json={"name": "Mine", "api_key": "1" * 32, "project_type": "userId"})
        assert r.status_code == 403, r.text
    col = mongo_client[conn_settings.mongo_db]["connections"]
    assert (await col.find_one({"_id": card["id"]}))["project_type"] == "email"
    assert await col.count_documents({"workspace_id": ws.id}) == 1
