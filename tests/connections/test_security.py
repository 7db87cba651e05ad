"""Secrets never at rest in plain text, never in responses, events or logs."""

from __future__ import annotations

import json
import logging

import bson

from liftstack_connections.crypto import CredentialCipher
from liftstack_shared.messages.connections import ConnectionChanged
from tests.connections import support
from tests.connections.support import Workspace, fake_key, read_changes, webhook_secret


def _raw(doc: dict) -> str:
    return bson.encode(doc).decode("latin-1") + json.dumps(doc, default=str)


async def test_raw_documents_hold_no_plaintext_secret(ws: Workspace, conn_settings, mongo_client):
    key, key2, secret, secret2 = fake_key(), fake_key(), webhook_secret(), webhook_secret()
    card = await ws.create(api_key=key, webhook_secret=secret)
    async with ws.client() as c:
        await c.patch(f"{ws.path}/{card['id']}", json={"api_key": key2, "webhook_secret": secret2})
    col = mongo_client[conn_settings.mongo_db]["connections"]
    doc = await col.find_one({"_id": card["id"]})
    raw = _raw(doc)
    for plain in (key, key2, secret, secret2):
        assert plain not in raw
    token = card["webhook_url"].rsplit("/", 1)[1]
    assert token not in raw  # stored hashed (lookup) and encrypted (display)
    # ...but the ciphertexts are there and open with this workspace's key.
    cipher = CredentialCipher(conn_settings.master_keys.get_secret_value())
    assert cipher.decrypt(ws.id, doc["api_key_enc"]) == key2
    assert cipher.decrypt(ws.id, doc["webhook_secret_enc"]) == secret2
    assert cipher.decrypt(ws.id, doc["previous_webhook_secret_enc"]) == secret
    assert doc["api_key_hint"] == "****" + key2[-4:]

    # And across every connection stored so far in this run: no tracked secret.
    async for any_doc in col.find({}):
        raw = _raw(any_doc)
        assert not [s[-4:] for s in support.TRACKED_SECRETS if s in raw], any_doc["_id"]


async def test_no_response_carries_a_secret(ws: Workspace, conn_settings, api):
    key, secret = fake_key(), webhook_secret()
    texts: list[str] = []
    async with ws.client() as c:
        r = await c.post(ws.path, json={"name": "n", "api_key": key, "webhook_secret": secret})
        texts.append(r.text)
        one = f"{ws.path}/{r.json()['id']}"
        for response in (
            await c.get(ws.path),
            await c.get(one),
            await c.post(f"{one}/test"),
            await c.patch(one, json={"name": "m"}),
            await c.post(ws.path, json={"name": "m", "api_key": key}),  # name taken
            await c.get("/openapi.json"),
        ):
            texts.append(response.text)
    assert texts and not [t for t in texts if key in t or secret in t]


async def test_connection_changed_events_carry_no_secret(ws: Workspace, conn_settings):
    key, secret = fake_key(), webhook_secret()
    card = await ws.create(api_key=key, webhook_secret=secret)
    messages = await read_changes(conn_settings, card["id"], want=1)
    assert messages
    for _, value in messages:
        text = value.decode()
        assert key not in text and secret not in text
        assert "api_key" not in ConnectionChanged.model_validate_json(value).model_dump()


def test_log_capture_sees_the_service_logs(log_capture):
    """The whole-run log check (conftest) is only meaningful if it sees records."""
    logging.getLogger("liftstack.connections").info("capture probe %s", "marker-7f3a")
    assert any("marker-7f3a" in t for t in log_capture.texts)
