"""Identity follows the project's type end to end: the connection (the real
connections service, over HTTP) records its Iterable project's type, and an audience
sync that names no `identity` reads members by it. The audiences service reads the
connection through its production path (ConnectionsServiceCredentials over the
internal endpoint), the sandbox plays Iterable, members come off real Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from liftstack_audiences.app import create_app as create_audiences
from liftstack_audiences.settings import AudiencesSettings
from liftstack_connections.app import create_app as create_connections
from liftstack_connections.settings import ConnectionsSettings
from liftstack_shared.auth import Role
from liftstack_shared.settings import CommonSettings
from tests.audiences.conftest import Service, read_sync
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.identity import user_token
from tests.fixtures.sandbox import SandboxHandle


@dataclass
class Stack:
    connections_url: str
    audiences: Service
    owner_token: str

    def owner(self, base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, timeout=60, headers={"Authorization": f"Bearer {self.owner_token}"})

    async def connect(self, api_key: str, **fields: Any) -> dict[str, Any]:
        """A connection created through the connections API, as the console does."""
        async with self.owner(self.connections_url) as c:
            r = await c.post(
                f"/v1/workspaces/{self.audiences.workspace_id}/connections",
                json={"name": f"Project {api_key[-4:]}", "api_key": api_key} | fields,
            )
        assert r.status_code == 201, r.text
        self.audiences.connection_id = r.json()["id"]
        return r.json()

    async def edit(self, connection_id: str, **fields: Any) -> dict[str, Any]:
        async with self.owner(self.connections_url) as c:
            r = await c.patch(
                f"/v1/workspaces/{self.audiences.workspace_id}/connections/{connection_id}",
                json=fields,
            )
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def stack(kafka_topics: CommonSettings, sandbox: SandboxHandle, tmp_path: Path) -> Iterator[Stack]:
    common = kafka_topics.model_dump(exclude={"port", "iterable_base_url", "connections_url"})
    conn_settings = ConnectionsSettings(**common, iterable_base_url=sandbox.base_url)
    with serve_asgi(create_connections(conn_settings)) as connections_url:
        settings = AudiencesSettings(
            **common,
            iterable_base_url=sandbox.base_url,
            connections_url=connections_url,
            audience_state_dir=tmp_path / "state",
            audience_batch_size=100,
            audience_progress_interval_s=0,
        )
        # No credentials given: the production source, the connections service.
        with serve_asgi(create_audiences(settings)) as audiences_url:
            service = Service(audiences_url, settings, credentials=None)  # type: ignore[arg-type]  # None selects the production source on purpose
            token = user_token(settings, "owner-1", service.workspace_id, Role.OWNER)
            yield Stack(connections_url, service, token)


async def sync_members(stack: Stack, list_id: int, **body: Any) -> tuple[dict[str, Any], list[dict]]:
    svc = stack.audiences
    async with svc.client() as http:
        done = await svc.wait(http, await svc.start_sync(http, list_id, **body))
    batches, _ = await read_sync(svc.settings, done["sync_id"])
    return done, [m for b in batches for m in b["members"]]


async def sync_count(mongo_client, settings: CommonSettings, connection_id: str) -> int:
    return await mongo_client[settings.mongo_db]["audience_syncs"].count_documents({"connection_id": connection_id})


async def test_user_id_connection_publishes_at_sign_user_ids_as_user_ids(stack: Stack, sandbox):
    """Defect: in a userId project a userId containing "@" was taken for an email
    (or dropped as an invalid one). The connection says userID-based; the sync names
    no identity; every member is published as a userId."""
    project = sandbox.create_project(identity="userId")
    list_id = sandbox.create_list(project, "Staff", ["alice@corp", "bob@corp.example", "u-3"])
    card = await stack.connect(sandbox.create_key(project), project_type="userId")
    assert card["project_type"] == "userId"
    done, members = await sync_members(stack, list_id)
    assert done["status"] == "completed", done
    assert sorted(m["user_id"] for m in members) == ["alice@corp", "bob@corp.example", "u-3"]
    assert all(m["email"] is None for m in members)
    assert (done["identity"], done["members"], done["invalid_skipped"]) == ("userId", 3, 0)


async def test_email_connection_keeps_the_email_rule(stack: Stack, sandbox):
    project = sandbox.create_project(identity="email")
    list_id = sandbox.create_list(project, "Newsletter", ["carol@example.com", "dan@example.org"])
    card = await stack.connect(sandbox.create_key(project))  # no project_type: email-based
    assert card["project_type"] == "email"
    done, members = await sync_members(stack, list_id)
    assert sorted(m["email"] for m in members) == ["carol@example.com", "dan@example.org"]
    assert all(m["user_id"] is None for m in members)
    assert (done["identity"], done["members"]) == ("email", 2)


async def test_an_identity_that_contradicts_the_connection_is_refused(stack: Stack, sandbox, mongo_client):
    project = sandbox.create_project(identity="userId")
    list_id = sandbox.create_list(project, "Staff", ["alice@corp"])
    card = await stack.connect(sandbox.create_key(project), project_type="userId")
    svc = stack.audiences
    async with svc.client() as http:
        for wrong in ("email", "hybrid"):
            r = await http.post(f"{svc.audiences_path()}/{list_id}/sync", json={"identity": wrong})
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert (error["code"], error["field"]) == ("identity_mismatch", "identity")
            assert "'userId' (userID-based)" in error["message"]
        r = await http.post(f"{svc.audiences_path()}/{list_id}/sync", json={"identity": "bogus"})
        assert r.status_code == 422, r.text
    assert await sync_count(mongo_client, svc.settings, card["id"]) == 0
    # Repeating the connection's own type is fine.
    done, members = await sync_members(stack, list_id, identity="userId")
    assert [m["user_id"] for m in members] == ["alice@corp"]


async def test_a_corrected_project_type_applies_to_the_next_sync(stack: Stack, sandbox):
    """Saved as email-based by mistake, corrected in Settings > Integrations: the
    next sync reads the corrected type at once (not a cached one)."""
    project = sandbox.create_project(identity="userId")
    list_id = sandbox.create_list(project, "Staff", ["alice@corp", "u-2"])
    card = await stack.connect(sandbox.create_key(project))
    before, wrong = await sync_members(stack, list_id)
    # Read as an email-based project: getUsers is asked for emails, and what comes
    # back are no userIds (writeback would address profiles that aren't these users).
    assert before["identity"] == "email"
    assert [m["user_id"] for m in wrong] == [None, None], wrong
    await stack.edit(card["id"], project_type="userId")
    after, members = await sync_members(stack, list_id)
    assert after["identity"] == "userId"
    assert sorted(m["user_id"] for m in members) == ["alice@corp", "u-2"]
