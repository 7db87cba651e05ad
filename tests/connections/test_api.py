"""Create, list, get, edit and delete connections through the HTTP API."""

from __future__ import annotations

import asyncio

import pytest

from liftstack_shared.auth import Role
from liftstack_shared.connections_client import DEFAULT_EVENT_TYPES
from tests.connections.support import Workspace, fake_key, webhook_secret


async def test_create_returns_card_with_masked_hints_and_webhook_url(ws: Workspace, conn_settings):
    key, secret = fake_key(), webhook_secret()
    async with ws.client() as c:
        r = await c.post(
            ws.path,
            json={
                "platform": "iterable",
                "name": "Production Iterable",
                "api_key": key,
                "webhook_secret": secret,
                "region": "EU",
            },
        )
    assert r.status_code == 201, r.text
    card = r.json()
    assert card["name"] == "Production Iterable"
    assert card["platform"] == "iterable" and card["region"] == "EU"
    assert card["status"] == "active" and card["last_test"] is None
    assert card["api_key_hint"] == "****" + key[-4:]
    assert card["webhook_secret_hint"] == "****" + secret[-4:]
    assert card["event_types"] == list(DEFAULT_EVENT_TYPES)
    prefix = f"{conn_settings.ingest_public_url}/webhooks/iterable/"
    assert card["webhook_url"].startswith(prefix)
    assert len(card["webhook_url"][len(prefix) :]) >= 32  # unguessable token
    assert card["created_at"] == card["updated_at"]
    assert key not in r.text and secret not in r.text


async def test_several_connections_per_workspace_each_with_its_own_webhook_url(ws: Workspace):
    prod = await ws.create(name="Production Iterable")
    staging = await ws.create(name="Staging")
    assert prod["webhook_url"] != staging["webhook_url"]
    async with ws.client() as c:
        listed = (await c.get(ws.path)).json()["connections"]
    assert [x["name"] for x in listed] == ["Production Iterable", "Staging"]
    assert {x["id"] for x in listed} == {prod["id"], staging["id"]}


async def test_get_one(ws: Workspace):
    created = await ws.create(name="Prod")
    async with ws.client() as c:
        r = await c.get(f"{ws.path}/{created['id']}")
    assert r.status_code == 200 and r.json() == created


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"api_key": "too-short"}, "api_key"),
        ({"api_key": "A" * 32}, "api_key"),
        ({"api_key": "0123456789abcdef0123456789abcdeg"}, "api_key"),
        ({"api_key": None}, "api_key"),
        ({"region": "APAC"}, "region"),
        ({"platform": "braze"}, "platform"),
        ({"webhook_secret": "short"}, "webhook_secret"),
        ({"webhook_secret": "has spaces in the middle of it"}, "webhook_secret"),
        ({"webhook_header": "Authorization"}, "webhook_header"),
        ({"webhook_header": "X Bad Header"}, "webhook_header"),
        ({"webhook_header": "x-forwarded-for"}, "webhook_header"),
        ({"event_types": ["open", "teleport"]}, "event_types.1"),
        ({"event_types": []}, "event_types"),
        ({"apiKey": "0123456789abcdef0123456789abcdef"}, "apiKey"),
    ],
)
async def test_create_validation_names_the_field_and_stores_nothing(ws: Workspace, body, field):
    base = {"platform": "iterable", "name": "Valid", "api_key": fake_key(), "region": "US"}
    async with ws.client() as c:
        r = await c.post(ws.path, json=base | body)
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == field
        assert error["message"].startswith(f"{field}:")
        assert (await c.get(ws.path)).json()["connections"] == []


async def test_missing_required_fields_and_bad_json(ws: Workspace):
    async with ws.client() as c:
        r = await c.post(ws.path, json={"platform": "iterable", "name": "x"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "api_key"
        r = await c.post(ws.path, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


async def test_key_error_never_echoes_the_key(ws: Workspace):
    almost = fake_key()[:-1] + "Z"
    async with ws.client() as c:
        r = await c.post(ws.path, json={"name": "n", "api_key": almost})
    assert r.status_code == 422
    assert almost not in r.text and "Iterable API key" in r.json()["error"]["message"]


async def test_key_with_surrounding_whitespace_is_trimmed(ws: Workspace):
    key = fake_key()
    card = await ws.create(api_key=f"  {key}\n")
    assert card["api_key_hint"] == "****" + key[-4:]


async def test_name_is_unique_per_workspace_case_insensitively(ws: Workspace, other_ws: Workspace):
    await ws.create(name="Production")
    async with ws.client() as c:
        for name in ("Production", " production ", "PRODUCTION"):
            r = await c.post(ws.path, json={"name": name, "api_key": fake_key()})
            assert r.status_code == 422, r.text
            assert r.json()["error"] == {
                "code": "name_taken",
                "field": "name",
                "message": f"name: a connection named {name.strip()!r} already exists in this workspace.",
            }
        assert len((await c.get(ws.path)).json()["connections"]) == 1
    # The same name in another workspace is fine.
    await other_ws.create(name="Production")


async def test_concurrent_creates_with_one_name_yield_one_connection(ws: Workspace):
    async with ws.client() as c:
        results = await asyncio.gather(
            *[c.post(ws.path, json={"name": "Race", "api_key": fake_key()}) for _ in range(5)]
        )
        assert sorted(r.status_code for r in results) == [201, 422, 422, 422, 422]
        assert len((await c.get(ws.path)).json()["connections"]) == 1


async def test_rename_keeps_webhook_url_and_bumps_updated_at(ws: Workspace):
    created = await ws.create(name="Old name")
    await asyncio.sleep(0.01)
    async with ws.client(Role.ADMIN) as c:
        r = await c.patch(f"{ws.path}/{created['id']}", json={"name": "New name"})
    assert r.status_code == 200, r.text
    card = r.json()
    assert card["name"] == "New name"
    assert card["webhook_url"] == created["webhook_url"]
    assert card["created_at"] == created["created_at"]
    assert card["updated_at"] > created["updated_at"]


async def test_rename_to_taken_name_fails_and_changes_nothing(ws: Workspace):
    await ws.create(name="Production")
    staging = await ws.create(name="Staging")
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{staging['id']}", json={"name": "production"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "name"
        assert (await c.get(f"{ws.path}/{staging['id']}")).json() == staging
        # Changing only the case of its own name is fine.
        r = await c.patch(f"{ws.path}/{staging['id']}", json={"name": "STAGING"})
        assert r.status_code == 200 and r.json()["name"] == "STAGING"


async def test_replace_key_updates_hint_keeps_url(ws: Workspace):
    created = await ws.create()
    new_key = fake_key()
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{created['id']}", json={"api_key": new_key})
    assert r.status_code == 200
    assert r.json()["api_key_hint"] == "****" + new_key[-4:]
    assert r.json()["webhook_url"] == created["webhook_url"]
    assert new_key not in r.text


async def test_replace_and_remove_webhook_secret(ws: Workspace):
    created = await ws.create()
    assert created["webhook_secret_hint"] is None
    secret = webhook_secret()
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{created['id']}", json={"webhook_secret": secret})
        assert r.json()["webhook_secret_hint"] == "****" + secret[-4:]
        r = await c.patch(f"{ws.path}/{created['id']}", json={"webhook_secret": None})
        assert r.json()["webhook_secret_hint"] is None


async def test_invalid_update_changes_nothing(ws: Workspace):
    created = await ws.create(name="Keep me")
    async with ws.client() as c:
        for body, field in [
            ({"name": "Renamed", "api_key": "nope"}, "api_key"),
            ({"name": None}, "name"),
            ({"region": None}, "region"),
            ({"name": "Renamed", "surprise": 1}, "surprise"),
        ]:
            r = await c.patch(f"{ws.path}/{created['id']}", json=body)
            assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
        assert (await c.get(f"{ws.path}/{created['id']}")).json() == created


async def test_empty_update_is_a_no_op(ws: Workspace):
    created = await ws.create()
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{created['id']}", json={})
    assert r.status_code == 200 and r.json() == created


async def test_configure_event_types(ws: Workspace):
    created = await ws.create(event_types=["open", "click"])
    assert created["event_types"] == ["open", "click"]
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{created['id']}", json={"event_types": ["conversion", "bounce", "conversion"]})
    assert r.status_code == 200 and r.json()["event_types"] == ["conversion", "bounce"]


async def test_delete(ws: Workspace):
    created = await ws.create()
    async with ws.client() as c:
        r = await c.delete(f"{ws.path}/{created['id']}")
        assert r.status_code == 204
        assert (await c.get(f"{ws.path}/{created['id']}")).status_code == 404
        assert (await c.delete(f"{ws.path}/{created['id']}")).status_code == 404
        assert (await c.patch(f"{ws.path}/{created['id']}", json={"name": "x"})).status_code == 404
        assert (await c.get(ws.path)).json()["connections"] == []
    # The name is free again.
    await ws.create(name=created["name"])


async def test_unknown_connection_is_404(ws: Workspace):
    async with ws.client() as c:
        r = await c.get(f"{ws.path}/does-not-exist")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("races", [1, 5])
async def test_an_edit_that_loses_a_race_is_reread_and_retried(ws: Workspace, monkeypatch, races):
    """Another edit landing between an update's read and its `rev` compare-and-set makes
    it re-read and retry (with backoff); losing every one of its 5 tries is a 409."""
    from liftstack_connections.store import ConnectionStore

    card = await ws.create(name="Before")
    update = ConnectionStore.update
    raced: list[int] = []

    async def update_after_another_edit(self, workspace_id, connection_id, changes, expect=None):
        if connection_id == card["id"] and len(raced) < races:
            raced.append(1)
            # Another process's edit (not through this store's SingleWriter). The store's
            # own collection: the server runs on its own event loop.
            await self._col.update_one({"_id": connection_id}, {"$inc": {"rev": 1}})
        return await update(self, workspace_id, connection_id, changes, expect)

    monkeypatch.setattr(ConnectionStore, "update", update_after_another_edit)
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{card['id']}", json={"name": "After"})
        name = (await c.get(f"{ws.path}/{card['id']}")).json()["name"]
    if races == 1:
        assert r.status_code == 200, r.text
        assert r.json()["name"] == name == "After"
    else:
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
        assert name == "Before"
    assert len(raced) == races
