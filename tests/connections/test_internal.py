"""The internal endpoints other services use (service token only), webhook URL
tokens, and webhook secret rotation with a grace period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from liftstack_shared.auth import SERVICE_TOKEN_HEADER, Role
from liftstack_shared.connections_client import (
    ConnectionNotFound,
    ConnectionsClient,
    InternalConnection,
)
from tests.connections.support import Workspace, fake_key, service_client, webhook_secret


def token_of(card: dict) -> str:
    return card["webhook_url"].rsplit("/", 1)[1]


async def test_internal_connection_has_decrypted_credentials(ws: Workspace, conn_settings, api):
    key, secret = fake_key(), webhook_secret()
    card = await ws.create(name="Prod", api_key=key, webhook_secret=secret, region="EU", event_types=["open", "click"])
    async with service_client(conn_settings, api) as c:
        r = await c.get(f"/internal/connections/{card['id']}")
    assert r.status_code == 200
    conn = InternalConnection.model_validate(r.json())
    assert conn.connection_id == card["id"] and conn.workspace_id == ws.id
    assert conn.name == "Prod" and conn.platform == "iterable" and conn.region == "EU"
    assert conn.api_key.get_secret_value() == key
    assert [s.get_secret_value() for s in conn.webhook_secrets] == [secret]
    assert conn.event_types == ["open", "click"] and conn.status == "active"


async def test_shared_connections_client_reads_by_id_and_webhook_token(ws: Workspace, conn_settings, api):
    """The contract other services code against, end to end."""
    key = fake_key()
    card = await ws.create(api_key=key)
    client = ConnectionsClient(conn_settings.model_copy(update={"connections_url": api}))
    try:
        by_id = await client.get(card["id"])
        by_token = await client.by_webhook_token(token_of(card))
        assert by_id == by_token and by_id.api_key.get_secret_value() == key
        with pytest.raises(ConnectionNotFound):
            await client.by_webhook_token("x" * 43)
    finally:
        await client.aclose()


async def test_internal_endpoints_need_the_service_token(ws: Workspace, api):
    card = await ws.create()
    paths = [f"/internal/connections/{card['id']}", f"/internal/webhooks/{token_of(card)}"]
    for role in Role:
        async with ws.client(role) as c:  # a user's bearer token, even an Owner's
            for path in paths:
                assert (await c.get(path)).status_code == 401
            c.headers[SERVICE_TOKEN_HEADER] = ws.tokens[role]  # a JWT in the service header
            for path in paths:
                assert (await c.get(path)).status_code == 401
    async with ws.client(None) as c:
        for path in paths:
            assert (await c.get(path)).status_code == 401
            r = await c.get(path, headers={SERVICE_TOKEN_HEADER: "wrong"})
            assert r.status_code == 401 and "api_key" not in r.text


async def test_webhook_url_stable_across_edits_and_dead_after_delete(ws: Workspace, conn_settings, api):
    card = await ws.create()
    async with ws.client() as c:
        for body in (
            {"name": "Renamed"},
            {"api_key": fake_key()},
            {"region": "EU"},
            {"webhook_secret": webhook_secret()},
            {"event_types": ["click"]},
        ):
            r = await c.patch(f"{ws.path}/{card['id']}", json=body)
            assert r.json()["webhook_url"] == card["webhook_url"]
    async with service_client(conn_settings, api) as s:
        r = await s.get(f"/internal/webhooks/{token_of(card)}")
        assert r.status_code == 200 and r.json()["connection_id"] == card["id"]
        assert r.json()["name"] == "Renamed" and r.json()["event_types"] == ["click"]
        async with ws.client() as c:
            assert (await c.delete(f"{ws.path}/{card['id']}")).status_code == 204
        assert (await s.get(f"/internal/webhooks/{token_of(card)}")).status_code == 404
        assert (await s.get(f"/internal/connections/{card['id']}")).status_code == 404


async def test_unknown_ids_and_tokens_are_404(conn_settings, api):
    async with service_client(conn_settings, api) as s:
        assert (await s.get("/internal/connections/nope")).status_code == 404
        assert (await s.get("/internal/webhooks/nope")).status_code == 404


async def test_replaced_webhook_secret_stays_valid_for_the_grace_period(
    ws: Workspace, conn_settings, api, mongo_client
):
    first, second, third = webhook_secret(), webhook_secret(), webhook_secret()
    card = await ws.create(webhook_secret=first)
    one = f"{ws.path}/{card['id']}"

    async def secrets_now() -> list[str]:
        async with service_client(conn_settings, api) as s:
            data = (await s.get(f"/internal/webhooks/{token_of(card)}")).json()
        return data["webhook_secrets"]

    async with ws.client() as c:
        await c.patch(one, json={"webhook_secret": second})
        assert await secrets_now() == [second, first]  # current first

        doc = await mongo_client[conn_settings.mongo_db]["connections"].find_one({"_id": card["id"]})
        until = doc["previous_webhook_secret_until"]
        expected = datetime.now(UTC) + timedelta(seconds=conn_settings.webhook_secret_grace_s)
        assert abs((until - expected).total_seconds()) < 60

        # Setting the same secret again changes nothing (the grace is not restarted).
        await c.patch(one, json={"webhook_secret": second})
        assert await secrets_now() == [second, first]

        # Once the grace period is over only the current one is valid.
        await mongo_client[conn_settings.mongo_db]["connections"].update_one(
            {"_id": card["id"]},
            {"$set": {"previous_webhook_secret_until": datetime.now(UTC) - timedelta(seconds=1)}},
        )
        assert await secrets_now() == [second]

        # Another replacement keeps only the one it replaced.
        await c.patch(one, json={"webhook_secret": third})
        assert await secrets_now() == [third, second]

        # Removing the secret removes both (a deliberate choice, no grace).
        await c.patch(one, json={"webhook_secret": None})
        assert await secrets_now() == []


async def test_grace_period_is_configurable(conn_settings, kafka_topics):
    from liftstack_connections.app import create_app
    from tests.fixtures.asgi import serve_asgi

    no_grace = conn_settings.model_copy(update={"webhook_secret_grace_s": 0})
    with serve_asgi(create_app(no_grace)) as url:
        ws = Workspace(no_grace, url)
        first, second = webhook_secret(), webhook_secret()
        card = await ws.create(webhook_secret=first)
        async with ws.client() as c:
            await c.patch(f"{ws.path}/{card['id']}", json={"webhook_secret": second})
        async with service_client(no_grace, url) as s:
            data = (await s.get(f"/internal/connections/{card['id']}")).json()
        assert data["webhook_secrets"] == [second]


async def test_custom_webhook_header_is_a_setting_ingest_can_read(ws: Workspace, conn_settings, api):
    secret = webhook_secret()
    card = await ws.create(webhook_secret=secret, webhook_header="X-Acme-Hook")
    assert card["webhook_header"] == "x-acme-hook"  # header names are case-insensitive
    assert secret not in str(card)
    async with service_client(conn_settings, api) as c:
        conn = InternalConnection.model_validate((await c.get(f"/internal/connections/{card['id']}")).json())
    assert conn.webhook_header == "x-acme-hook"
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{card['id']}", json={"webhook_header": None})
        assert r.status_code == 200 and r.json()["webhook_header"] is None
        r = await c.patch(f"{ws.path}/{card['id']}", json={"webhook_header": "Content-Type"})
        assert r.status_code == 422
    async with service_client(conn_settings, api) as c:
        conn = InternalConnection.model_validate((await c.get(f"/internal/connections/{card['id']}")).json())
    assert conn.webhook_header is None
