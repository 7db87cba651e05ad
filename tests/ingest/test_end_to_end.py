"""Through the real connections service: create a connection over its API, post to
the webhook URL it hands out, and see the connection's settings (secret, event types,
deletion) take effect in the gateway via /internal lookups and `connection.changed`."""

from __future__ import annotations

import secrets

import httpx
import pytest

from liftstack_connections.app import create_app as create_connections_app
from liftstack_connections.settings import ConnectionsSettings
from liftstack_ingest.app import create_app as create_ingest_app
from tests.fixtures.asgi import free_port, serve_asgi
from tests.ingest.conftest import eventually, ingest_settings_from
from tests.ingest.payloads import example

pytestmark = pytest.mark.integration


async def test_connection_created_over_the_api_receives_webhooks(kafka_topics, event_log, user_token):
    ingest_port = free_port()
    ingest_url = f"http://127.0.0.1:{ingest_port}"
    conn_settings = ConnectionsSettings(**{**kafka_topics.model_dump(), "ingest_public_url": ingest_url})
    workspace = f"ws_{secrets.token_hex(4)}"
    owner = user_token(workspace)
    secret = secrets.token_urlsafe(24)

    with serve_asgi(create_connections_app(conn_settings)) as connections_url:
        ingest_settings = ingest_settings_from(
            kafka_topics, connections_url=connections_url, connections_cache_ttl_s=300.0
        )
        with serve_asgi(create_ingest_app(ingest_settings), port=ingest_port):
            async with httpx.AsyncClient(timeout=30.0) as http:
                created = await http.post(
                    f"{connections_url}/v1/workspaces/{workspace}/connections",
                    headers=owner,
                    json={
                        "name": "Production",
                        "api_key": secrets.token_hex(16),
                        "webhook_secret": secret,
                        "event_types": ["open", "click"],
                    },
                )
                assert created.status_code == 201, created.text
                card = created.json()
                webhook_url, connection_id = card["webhook_url"], card["id"]
                assert webhook_url.startswith(f"{ingest_url}/webhooks/iterable/")
                auth = {"Authorization": f"OAuth2 {secret}"}

                opened = await http.post(webhook_url, json=example("emailOpen"), headers=auth)
                assert opened.status_code == 200 and opened.json()["status"] == "published", opened.text
                wrong = await http.post(
                    webhook_url, json=example("emailOpen"), headers={"Authorization": "OAuth2 wrong-secret-value"}
                )
                assert wrong.status_code == 403
                stored = await event_log.wait_for(connection_id, 1)
                assert [e.workspace_id for _, e in stored] == [workspace]

                # The Events page checks the workspace through the connections service.
                page = await http.get(f"{ingest_url}/v1/connections/{connection_id}/events/summary", headers=owner)
                assert page.status_code == 200 and page.json()["processed_event_types"] == ["open", "click"]
                elsewhere = await http.get(
                    f"{ingest_url}/v1/connections/{connection_id}/events/summary",
                    headers=user_token("ws_someone_else"),
                )
                assert elsewhere.status_code == 404

                # Narrow the event types: connection.changed drops the gateway's cached
                # copy (its TTL is 300 s here, so only the event can explain it).
                patched = await http.patch(
                    f"{connections_url}/v1/workspaces/{workspace}/connections/{connection_id}",
                    headers=owner,
                    json={"event_types": ["click"]},
                )
                assert patched.status_code == 200, patched.text

                async def filtered():
                    body = example("emailOpen", email=f"{secrets.token_hex(3)}@example.com")
                    r = await http.post(webhook_url, json=body, headers=auth)
                    return r if r.json().get("status") == "filtered" else None

                assert await eventually(filtered, timeout_s=30, interval_s=0.5)

                deleted = await http.delete(
                    f"{connections_url}/v1/workspaces/{workspace}/connections/{connection_id}",
                    headers=owner,
                )
                assert deleted.status_code == 204

                async def gone():
                    r = await http.post(webhook_url, json=example("emailClick"), headers=auth)
                    return r if r.status_code == 404 else None

                assert await eventually(gone, timeout_s=30, interval_s=0.5)
