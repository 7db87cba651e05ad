"""Who may do what: Owners and Admins manage; Members only list summaries; nobody
reaches another workspace (404); missing or bad tokens are 401."""

from __future__ import annotations

import time

import pytest

from liftstack_shared.auth import SERVICE_TOKEN_HEADER, Role
from tests.connections.support import Workspace, fake_key
from tests.fixtures.identity import IdentityProvider, bad_tokens, user_token

SUMMARY_KEYS = {"id", "name", "platform", "status"}


async def _attempt(ws: Workspace, role: Role | None, action: str, conn_id: str, token: str | None = None) -> int:
    one = f"{ws.path}/{conn_id}"
    async with ws.client(role, token=token) as c:
        match action:
            case "list":
                r = await c.get(ws.path)
            case "create":
                r = await c.post(ws.path, json={"name": f"n-{time.monotonic_ns()}", "api_key": fake_key()})
            case "get":
                r = await c.get(one)
            case "rename":
                r = await c.patch(one, json={"name": f"r-{time.monotonic_ns()}"})
            case "replace_key":
                r = await c.patch(one, json={"api_key": fake_key()})
            case "test":
                r = await c.post(f"{one}/test")
            case "delete":
                r = await c.delete(one)
            case _:
                raise AssertionError(action)
    return r.status_code


MANAGER_OK = {"list": 200, "create": 201, "get": 200, "rename": 200, "replace_key": 200, "test": 200, "delete": 204}
ACTIONS = list(MANAGER_OK)


@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
@pytest.mark.parametrize("action", ACTIONS)
async def test_owner_and_admin_can_do_everything(ws: Workspace, role: Role, action: str):
    conn = await ws.create()
    assert await _attempt(ws, role, action, conn["id"]) == MANAGER_OK[action]


@pytest.mark.parametrize("action", ["create", "get", "rename", "replace_key", "test", "delete"])
async def test_member_cannot_view_details_edit_test_or_delete(ws: Workspace, action: str):
    conn = await ws.create()
    assert await _attempt(ws, Role.MEMBER, action, conn["id"]) == 403
    async with ws.client() as c:  # unchanged
        assert (await c.get(f"{ws.path}/{conn['id']}")).json() == conn
        assert len((await c.get(ws.path)).json()["connections"]) == 1


async def test_member_lists_name_platform_status_only(ws: Workspace):
    conn = await ws.create(name="Production Iterable", webhook_secret="s" * 20 + fake_key()[:8])
    async with ws.client(Role.MEMBER) as c:
        r = await c.get(ws.path)
    assert r.status_code == 200
    assert r.json() == {
        "connections": [{"id": conn["id"], "name": "Production Iterable", "platform": "iterable", "status": "active"}]
    }
    assert "****" not in r.text and "webhook" not in r.text


@pytest.mark.parametrize("action", ACTIONS)
async def test_no_access_to_another_workspaces_connections(ws: Workspace, other_ws: Workspace, action: str):
    theirs = await other_ws.create()
    # Through one's own workspace path with their id: exactly what a made-up id gets
    # (404 for managers; 403 for members, who may not open any connection).
    if action not in ("list", "create"):
        for role in Role:
            made_up = await _attempt(ws, role, action, "no-such-connection")
            assert made_up == (404 if role.manages else 403)
            assert await _attempt(ws, role, action, theirs["id"]) == made_up
    # Through their workspace path with one's own token: 404 too, whatever the role.
    for role in Role:
        status = await _attempt(_as_path_of(ws, other_ws), role, action, theirs["id"])
        assert status == 404, (role, action)
    async with other_ws.client() as c:  # untouched
        assert (await c.get(f"{other_ws.path}/{theirs['id']}")).json() == theirs


def _as_path_of(ws: Workspace, target: Workspace) -> Workspace:
    """`ws`'s users, aiming at `target`'s URL paths."""
    clone = Workspace(ws.settings, ws.base_url)
    clone.id, clone.tokens = target.id, ws.tokens
    return clone


@pytest.mark.parametrize("action", ACTIONS)
async def test_missing_or_bad_token_is_401(ws: Workspace, identity_provider: IdentityProvider, action: str):
    conn = await ws.create()
    assert await _attempt(ws, None, action, conn["id"]) == 401
    for name, token in bad_tokens(identity_provider, ws.id).items():
        assert await _attempt(ws, None, action, conn["id"], token=token) == 401, name


async def test_valid_token_of_no_workspace_is_403(ws: Workspace, identity_provider: IdentityProvider):
    token = identity_provider.token("nobody", None, None)
    async with ws.client(None, token=token) as c:
        r = await c.get(ws.path)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "no_workspace"


async def test_service_token_is_not_a_user_token(ws: Workspace, conn_settings):
    async with ws.client(None, token=conn_settings.service_token.get_secret_value()) as c:
        assert (await c.get(ws.path)).status_code == 401
    async with ws.client(None) as c:
        c.headers[SERVICE_TOKEN_HEADER] = conn_settings.service_token.get_secret_value()
        assert (await c.get(ws.path)).status_code == 401


async def test_token_for_another_workspace_sees_nothing(ws: Workspace, conn_settings):
    await ws.create()
    token = user_token(conn_settings, "intruder", "some-other-ws", Role.OWNER)
    async with ws.client(None, token=token) as c:
        r = await c.get(ws.path)
    assert r.status_code == 404
