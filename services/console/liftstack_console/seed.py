"""Seed the demo workspace: an Iterable sandbox project with a key and a demo list,
and a connection to it created through the connections API. Idempotent: re-running
finds what exists (the sandbox forgets everything when it restarts; then the project
is recreated with the same key, so the stored connection keeps working).

Used by `./liftstack up` (deploy/local/stack.py) and by the tests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from liftstack_shared.settings import CommonSettings

log = logging.getLogger(__name__)

PROJECT_NAME = "liftstack demo"
LIST_NAME = "Demo newsletter"
CONNECTION_NAME = "Iterable sandbox"
# The demo project's type (its members are emails), for the sandbox project and the
# connection alike: audience syncs read members by the connection's project type.
PROJECT_TYPE = "email"
# The seeded connection processes sends too, so results have a per-send denominator.
EVENT_TYPES = ["send", "open", "click", "conversion", "unsubscribe"]
FIRST_NAMES = ["Ann", "Ben", "Chloé", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun"]


@dataclass(frozen=True)
class DemoSeed:
    workspace_id: str
    connection_id: str
    project_id: int
    list_id: int
    members: int


def demo_members(count: int) -> list[str]:
    return [f"demo{i:05d}@example.com" for i in range(count)]


async def seed_demo(
    settings: CommonSettings,
    *,
    sandbox_url: str,
    workspace_id: str,
    owner_token: str,
    api_key: str,
    webhook_secret: str,
    members: int = 3000,
) -> DemoSeed:
    """`owner_token`: a user access token of an Owner of `workspace_id` (from the
    identity provider; in the demo stack, from the console's demo signer)."""
    token = owner_token
    async with (
        httpx.AsyncClient(base_url=sandbox_url.rstrip("/"), timeout=60) as sandbox,
        httpx.AsyncClient(
            base_url=settings.connections_url.rstrip("/"),
            timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        ) as connections,
    ):
        project_id = await _project(sandbox, api_key)
        list_id = await _list(sandbox, project_id, members)
        connection = await _connection(connections, workspace_id, api_key, webhook_secret)
        await _webhook(sandbox, project_id, connection["webhook_url"], webhook_secret)
    return DemoSeed(workspace_id, str(connection["id"]), project_id, list_id, members)


async def _webhook(sandbox: httpx.AsyncClient, project_id: int, url: str, secret: str) -> None:
    """The project's system webhook posts to the connection, as a marketer would set
    it up in Iterable (Integrations > Webhooks, auth type OAuth2 with the secret)."""
    hooks = _ok(await sandbox.get(f"/_sandbox/projects/{project_id}/webhooks"))["webhooks"]
    if any(h["endpoint"] == url for h in hooks):
        return
    _ok(
        await sandbox.post(
            f"/_sandbox/projects/{project_id}/webhooks",
            json={
                "endpoint": url,
                "authType": "OAuth2",
                "token": secret,
                "tokenType": "OAuth2",
            },
        )
    )


async def _project(sandbox: httpx.AsyncClient, api_key: str) -> int:
    projects = _ok(await sandbox.get("/_sandbox/projects"))["projects"]
    for project in projects:
        if project["name"] == PROJECT_NAME:
            return int(project["id"])
    created = _ok(
        await sandbox.post(
            "/_sandbox/projects",
            json={
                "name": PROJECT_NAME,
                "region": "US",
                "identity": PROJECT_TYPE,
                "keys": [{"type": "server_side", "key": api_key, "name": "liftstack demo"}],
            },
        )
    )
    log.info("created sandbox project %s", created["id"])
    return int(created["id"])


async def _list(sandbox: httpx.AsyncClient, project_id: int, count: int) -> int:
    lists = _ok(await sandbox.get(f"/_sandbox/projects/{project_id}/lists"))["lists"]
    for lst in lists:
        if lst["name"] == LIST_NAME:
            return int(lst["id"])
    emails = demo_members(count)
    users = [{"email": e, "dataFields": {"firstName": FIRST_NAMES[i % len(FIRST_NAMES)]}} for i, e in enumerate(emails)]
    for start in range(0, len(users), 1000):
        _ok(await sandbox.post(f"/_sandbox/projects/{project_id}/users", json={"users": users[start : start + 1000]}))
    created = _ok(
        await sandbox.post(
            f"/_sandbox/projects/{project_id}/lists",
            json={
                "name": LIST_NAME,
                "description": "liftstack demo audience",
                "members": emails,
            },
        )
    )
    return int(created["id"])


async def _connection(http: httpx.AsyncClient, workspace_id: str, api_key: str, secret: str) -> Any:
    base = f"/v1/workspaces/{workspace_id}/connections"
    for conn in _ok(await http.get(base))["connections"]:
        if conn["name"] == CONNECTION_NAME:
            # Only touch the key if it changed: a PATCH of the key resets the badge.
            if conn.get("api_key_hint", "")[-4:] != api_key[-4:]:
                conn = _ok(await http.patch(f"{base}/{conn['id']}", json={"api_key": api_key}))
            if conn.get("project_type", "email") != PROJECT_TYPE:
                conn = _ok(await http.patch(f"{base}/{conn['id']}", json={"project_type": PROJECT_TYPE}))
            return conn
    created = _ok(
        await http.post(
            base,
            json={
                "name": CONNECTION_NAME,
                "api_key": api_key,
                "webhook_secret": secret,
                "region": "US",
                "project_type": PROJECT_TYPE,
                "event_types": EVENT_TYPES,
            },
        )
    )
    _ok(await http.post(f"{base}/{created['id']}/test"))
    return created


def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        # The body is an error message, never a credential (services mask them).
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: HTTP {response.status_code} {response.text[:300]}"
        )
    return response.json() if response.content else None
