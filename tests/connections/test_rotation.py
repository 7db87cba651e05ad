"""Master key rotation: `python -m liftstack_connections rotate-keys` re-encrypts every
stored secret with the newest key and every credential stays readable."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from liftstack_connections.app import create_app
from liftstack_connections.crypto import CredentialCipher
from liftstack_connections.rotation import rotate_all
from liftstack_connections.settings import ConnectionsSettings
from liftstack_connections.store import ENCRYPTED_FIELDS
from tests.connections import support
from tests.connections.support import Workspace, fake_key, service_client, webhook_secret
from tests.fixtures.asgi import serve_asgi


def _with(settings: ConnectionsSettings, master_keys: str, db: str) -> ConnectionsSettings:
    return settings.model_copy(update={"master_keys": SecretStr(master_keys), "mongo_db": db})


def _run_cli(settings: ConnectionsSettings) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "LIFTSTACK_MASTER_KEYS": settings.master_keys.get_secret_value(),
        "LIFTSTACK_MONGO_URL": settings.mongo_url,
        "LIFTSTACK_MONGO_DB": settings.mongo_db,
    }
    return subprocess.run(
        [sys.executable, "-m", "liftstack_connections", "rotate-keys"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_rotate_keys_keeps_every_credential_readable(conn_settings, mongo_client):
    old, new = support.track(Fernet.generate_key().decode()), support.track(Fernet.generate_key().decode())
    db = f"{conn_settings.mongo_db}_rotation_{secrets.token_hex(3)}"
    before = _with(conn_settings, old, db)
    expected: dict[str, dict] = {}
    try:
        # Connections in two workspaces, one each with a secret in its grace period:
        # 6 x (key, secret, webhook token) + 2 previous secrets = 20 ciphertexts.
        with serve_asgi(create_app(before)) as url:
            for _ in range(2):
                ws = Workspace(before, url)
                for i in range(3):
                    card = await ws.create(api_key=fake_key(), webhook_secret=webhook_secret())
                    if i == 0:
                        async with ws.client() as c:
                            await c.patch(f"{ws.path}/{card['id']}", json={"webhook_secret": webhook_secret()})
                    async with service_client(before, url) as s:
                        expected[card["id"]] = {
                            "internal": (await s.get(f"/internal/connections/{card['id']}")).json(),
                            "url": card["webhook_url"],
                            "ws": ws,
                        }
        col = mongo_client[db]["connections"]
        old_docs = {d["_id"]: d async for d in col.find({})}
        assert len(old_docs) == 6

        during = _with(conn_settings, f"{new},{old}", db)
        result = await asyncio.to_thread(_run_cli, during)
        assert result.returncode == 0, result.stderr
        assert "6 connections, 20 secrets re-encrypted" in result.stdout
        output = result.stdout + result.stderr
        assert not [s for s in support.TRACKED_SECRETS if s in output]

        # Every ciphertext changed and only the new key opens it.
        only_new, only_old = CredentialCipher(new), CredentialCipher(old)
        async for doc in col.find({}):
            for name in ENCRYPTED_FIELDS:
                if doc.get(name):
                    assert doc[name] != old_docs[doc["_id"]][name]
                    only_new.decrypt(doc["workspace_id"], doc[name])
                    try:
                        only_old.decrypt(doc["workspace_id"], doc[name])
                        raise AssertionError("old master key still opens a rotated secret")
                    except InvalidToken:
                        pass

        # Running it again is a no-op.
        again = await rotate_all(during)
        assert again.ok and again.rotated_secrets == 0 and again.already_current == 20

        # With the old key gone, the service reads every credential as before.
        after = _with(conn_settings, new, db)
        with serve_asgi(create_app(after)) as url:
            async with service_client(after, url) as s:
                for cid, want in expected.items():
                    got = (await s.get(f"/internal/connections/{cid}")).json()
                    assert got == want["internal"]
                    ws = want["ws"]
                    async with Workspace(after, url).client(None, token=ws.tokens["owner"]) as c:
                        card = (await c.get(f"/v1/workspaces/{ws.id}/connections/{cid}")).json()
                    assert card["webhook_url"] == want["url"]
    finally:
        await mongo_client.drop_database(db)


async def test_rotation_reports_secrets_no_key_opens(conn_settings, mongo_client):
    db = f"{conn_settings.mongo_db}_rotation_{secrets.token_hex(3)}"
    lost = Fernet.generate_key().decode()
    try:
        with serve_asgi(create_app(_with(conn_settings, lost, db))) as url:
            card = await Workspace(_with(conn_settings, lost, db), url).create()
        report = await rotate_all(_with(conn_settings, Fernet.generate_key().decode(), db))
        assert not report.ok and report.failed == [card["id"]]
        assert "FAILED" in report.summary()
    finally:
        await mongo_client.drop_database(db)


async def test_rotation_rotates_again_what_an_overlapping_edit_put_back(conn_settings, mongo_client, monkeypatch):
    """On FerretDB an edit overlapping a document's rotation write can write the
    document back as it read it, old-key ciphertexts included. The run reads every
    document again afterwards and rotates those, so dropping the old key stays safe."""
    from liftstack_connections import rotation

    old, new = support.track(Fernet.generate_key().decode()), support.track(Fernet.generate_key().decode())
    db = f"{conn_settings.mongo_db}_rotation_{secrets.token_hex(3)}"
    before, during = _with(conn_settings, old, db), _with(conn_settings, f"{new},{old}", db)
    col = mongo_client[db]["connections"]
    rotate_one = rotation._rotate_one
    clobbered: list[str] = []

    async def rotate_then_overwritten(store, cipher, doc, report, count_current=True):
        snapshot = dict(doc)
        await rotate_one(store, cipher, doc, report, count_current)
        if not clobbered:  # the first document's rotation write is lost once
            clobbered.append(doc["_id"])
            await col.replace_one({"_id": doc["_id"]}, snapshot)

    monkeypatch.setattr(rotation, "_rotate_one", rotate_then_overwritten)
    try:
        with serve_asgi(create_app(before)) as url:
            ws = Workspace(before, url)
            for _ in range(2):
                await ws.create(api_key=fake_key(), webhook_secret=webhook_secret())
        report = await rotate_all(during)
        # 2 x (key, secret, webhook token), and the lost document's 3 once more.
        assert report.ok and report.documents == 2 and report.rotated_secrets == 9
        only_new = CredentialCipher(new)
        async for doc in col.find({}):
            for name in ENCRYPTED_FIELDS:
                if doc.get(name):
                    assert only_new.is_current(doc["workspace_id"], doc[name]), (doc["_id"], name)
    finally:
        await mongo_client.drop_database(db)


@pytest.mark.parametrize("races", [1, 5])
async def test_rotation_retries_a_document_edited_meanwhile(conn_settings, mongo_client, monkeypatch, races):
    """An edit between reading a document and its rotation's compare-and-set makes the
    rotation re-read it and try again; a document that changes on all 5 tries fails."""
    from liftstack_connections.store import ConnectionStore

    old, new = support.track(Fernet.generate_key().decode()), support.track(Fernet.generate_key().decode())
    db = f"{conn_settings.mongo_db}_rotation_{secrets.token_hex(3)}"
    before, during = _with(conn_settings, old, db), _with(conn_settings, f"{new},{old}", db)
    col = mongo_client[db]["connections"]
    update = ConnectionStore.update
    raced: list[int] = []

    async def update_after_an_edit(self, workspace_id, connection_id, changes, expect=None):
        if len(raced) < races:
            raced.append(1)  # the user replaces the key (under the old master key) meanwhile
            key = CredentialCipher(old).encrypt(workspace_id, fake_key())
            await self._col.update_one({"_id": connection_id}, {"$set": {"api_key_enc": key}})
        return await update(self, workspace_id, connection_id, changes, expect)

    try:
        with serve_asgi(create_app(before)) as url:
            card = await Workspace(before, url).create(api_key=fake_key(), webhook_secret=webhook_secret())
        monkeypatch.setattr(ConnectionStore, "update", update_after_an_edit)
        report = await rotate_all(during)
        assert len(raced) == races
        if races == 1:
            assert report.ok and report.rotated_secrets == 3  # key, secret, webhook token
            doc = await col.find_one({"_id": card["id"]})
            fields = [f for f in ENCRYPTED_FIELDS if doc.get(f)]
            assert len(fields) == 3 and all(
                CredentialCipher(new).is_current(doc["workspace_id"], doc[f]) for f in fields
            )
        else:
            assert not report.ok and report.failed == [card["id"]]
    finally:
        await mongo_client.drop_database(db)
