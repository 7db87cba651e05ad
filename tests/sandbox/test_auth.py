"""Auth: keys, key types, disabled keys and regions, as Iterable answers them."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.conftest import Api

INVALID = {"msg": "Invalid API key", "code": "BadApiKey"}
DISABLED = {"msg": "Disabled API key or insufficient privileges", "code": "BadApiKey"}


def error_of(response: httpx.Response) -> dict[str, object]:
    """The error body without `params`, after checking `params` is what Iterable
    sends with an auth error: the caller's ip and the endpoint, never a key."""
    body = dict(response.json())
    params = body.pop("params")
    assert params == {"ip": "127.0.0.1", "endpoint": response.request.url.path.removeprefix("/us").removeprefix("/eu")}
    return body


BULK = {"users": [{"email": "ann@example.com", "dataFields": {"a": 1}}]}
UPSERT = {"clientTemplateId": "welcome", "subject": "Hi"}


def test_missing_and_unknown_keys_are_invalid(sandbox: SandboxHandle, api: Api) -> None:
    with httpx.Client(base_url=sandbox.api_url("US")) as anonymous:
        response = anonymous.get("/api/lists")
        assert response.status_code == 401 and error_of(response) == INVALID
        response = anonymous.get("/api/lists", headers={"Api-Key": "0" * 32})
        assert response.status_code == 401 and error_of(response) == INVALID


def test_server_side_key_works_with_either_header_spelling(sandbox: SandboxHandle, api: Api) -> None:
    with httpx.Client(base_url=sandbox.api_url(api.project)) as client:
        assert client.get("/api/lists", headers={"Api-Key": api.key}).status_code == 200
        assert client.get("/api/lists", headers={"Api_Key": api.key}).status_code == 200
        assert client.post("/api/users/bulkUpdate", json=BULK, headers={"Api_Key": api.key}).status_code == 200


def test_disabled_key(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.disable_key(api.project, api.key)
    response = api.client.get("/api/lists")
    assert response.status_code == 401 and error_of(response) == DISABLED
    sandbox.disable_key(api.project, api.key, disabled=False)
    assert api.client.get("/api/lists").status_code == 200


def test_key_created_disabled(sandbox: SandboxHandle) -> None:
    project = sandbox.create_project()
    key = sandbox.create_key(project, disabled=True)
    response = httpx.get(f"{sandbox.api_url(project)}/api/templates", headers=sandbox.headers(key))
    assert response.status_code == 401 and error_of(response) == DISABLED


def test_read_only_key_reads_but_cannot_write(sandbox: SandboxHandle, api: Api) -> None:
    read_only = sandbox.create_key(api.project, "read_only")
    list_id = sandbox.create_list(api.project, "l", ["ann@example.com"])
    with httpx.Client(base_url=sandbox.api_url(api.project), headers=sandbox.headers(read_only)) as client:
        for path in (
            "/api/lists",
            "/api/templates",
            "/api/users/getFields",
            "/api/webhooks",
            f"/api/lists/{list_id}/size",
        ):
            assert client.get(path).status_code == 200, path
        assert client.get("/api/users/getByEmail", params={"email": "ann@example.com"}).status_code == 200
        assert client.get("/api/lists/getUsers", params={"listId": list_id}).status_code == 200
        for path, body in (
            ("/api/users/bulkUpdate", BULK),
            ("/api/templates/email/upsert", UPSERT),
            ("/api/templates/email/update", {"templateId": 1, "subject": "x"}),
            ("/api/users/forget", {"email": "ann@example.com"}),
        ):
            response = client.post(path, json=body)
            assert response.status_code == 401 and error_of(response) == DISABLED, path
    # Nothing was written.
    assert sandbox.user(api.project, "ann@example.com")["dataFields"] == {}
    assert sandbox.templates(api.project) == []


@pytest.mark.parametrize("key_type", ["js", "mobile"])
def test_client_side_keys_cannot_use_server_endpoints(sandbox: SandboxHandle, key_type: str) -> None:
    project = sandbox.create_project()
    key = sandbox.create_key(project, key_type)
    with httpx.Client(base_url=sandbox.api_url(project), headers=sandbox.headers(key)) as client:
        for path in ("/api/lists", "/api/templates", "/api/users/getFields"):
            response = client.get(path)
            assert response.status_code == 401 and error_of(response) == DISABLED
        response = client.post("/api/users/bulkUpdate", json=BULK)
        assert response.status_code == 401 and error_of(response) == DISABLED


def test_region_hosts(sandbox: SandboxHandle) -> None:
    us = sandbox.create_project(region="US")
    eu = sandbox.create_project(region="EU")
    us_key, eu_key = sandbox.create_key(us), sandbox.create_key(eu)
    base = sandbox.base_url
    assert sandbox.api_url(eu) == f"{base}/eu"
    # Each key works on its own data centre (bare /api plays US)...
    assert httpx.get(f"{base}/us/api/lists", headers={"Api-Key": us_key}).status_code == 200
    assert httpx.get(f"{base}/api/lists", headers={"Api-Key": us_key}).status_code == 200
    assert httpx.get(f"{base}/eu/api/lists", headers={"Api-Key": eu_key}).status_code == 200
    # ...and is unknown on the other one.
    for url, key in (
        (f"{base}/eu/api/lists", us_key),
        (f"{base}/us/api/lists", eu_key),
        (f"{base}/api/lists", eu_key),
    ):
        response = httpx.get(url, headers={"Api-Key": key})
        assert response.status_code == 401 and error_of(response) == INVALID, url


def test_projects_are_isolated(sandbox: SandboxHandle) -> None:
    a, b = sandbox.create_project(), sandbox.create_project()
    key_a, key_b = sandbox.create_key(a), sandbox.create_key(b)
    list_a = sandbox.create_list(a, "only-a", ["ann@example.com"])
    lists_b = httpx.get(f"{sandbox.api_url(b)}/api/lists", headers={"Api-Key": key_b}).json()
    assert lists_b == {"lists": []}
    response = httpx.get(f"{sandbox.api_url(b)}/api/lists/{list_a}/size", headers={"Api-Key": key_b})
    assert response.status_code == 400
    assert httpx.get(f"{sandbox.api_url(a)}/api/lists/{list_a}/size", headers={"Api-Key": key_a}).text == "1"
