"""Lists: GET /api/lists, getUsers (streamed text/plain), size."""

from __future__ import annotations

import threading
import time

import httpx

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.conftest import Api


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_get_lists(sandbox: SandboxHandle, api: Api) -> None:
    static = sandbox.create_list(api.project, "Newsletter", ["a@example.com"], description="weekly")
    dynamic = sandbox.create_list(api.project, "Engaged", generate=10, dynamic=True)
    body = api.client.get("/api/lists").json()
    assert [(x["id"], x["name"], x["listType"]) for x in body["lists"]] == [
        (static, "Newsletter", "Standard"),
        (dynamic, "Engaged", "Dynamic"),
    ]
    now_ms = time.time() * 1000
    assert all(abs(x["createdAt"] - now_ms) < 60_000 for x in body["lists"])
    assert body["lists"][0]["description"] == "weekly"


def test_get_users_and_prefer_user_id(sandbox: SandboxHandle, api: Api) -> None:
    api.client.post(
        "/api/users/bulkUpdate",
        json={
            "users": [
                {"email": "a@example.com", "userId": "ua", "dataFields": {}},
                {"email": "b@example.com", "dataFields": {}},
            ]
        },
    )
    list_id = sandbox.create_list(api.project, "l", ["a@example.com", "b@example.com", "c@example.com"])
    response = api.client.get("/api/lists/getUsers", params={"listId": list_id})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "a@example.com\nb@example.com\nc@example.com\n"
    by_id = api.client.get("/api/lists/getUsers", params={"listId": list_id, "preferUserId": "true"}).text
    assert by_id.splitlines() == ["ua", "b@example.com", "c@example.com"]
    # Forgotten users leave the list (and its size).
    sandbox.forget(api.project, "b@example.com")
    assert api.client.get("/api/lists/getUsers", params={"listId": list_id}).text.splitlines() == [
        "a@example.com",
        "c@example.com",
    ]
    size = api.client.get(f"/api/lists/{list_id}/size")
    assert size.status_code == 200 and size.text == "2"


def test_get_users_parameter_errors(sandbox: SandboxHandle, api: Api) -> None:
    for params in ({}, {"listId": "abc"}, {"listId": "999999"}, {"listId": "1", "preferUserId": "maybe"}):
        response = api.client.get("/api/lists/getUsers", params=params)
        assert response.status_code == 400 and response.json()["code"] == "BadParams", params
    for path in ("/api/lists/abc/size", "/api/lists/999999/size"):
        response = api.client.get(path)
        assert response.status_code == 400 and response.json()["code"] == "BadParams", path


def test_generated_list_size_and_lines(sandbox: SandboxHandle, api: Api) -> None:
    list_id = sandbox.create_list(api.project, "gen", ["extra@example.com"], generate=25, user_ids=True)
    sandbox.forget(api.project, "user3@example.com")
    sandbox.forget(api.project, "user4")  # by userId
    lines = api.client.get("/api/lists/getUsers", params={"listId": list_id}).text.splitlines()
    assert lines[0] == "extra@example.com" and len(lines) == 24
    assert "user3@example.com" not in lines and "user4@example.com" not in lines
    assert api.client.get(f"/api/lists/{list_id}/size").text == "24"
    ids = api.client.get("/api/lists/getUsers", params={"listId": list_id, "preferUserId": True}).text.splitlines()
    assert ids[1:3] == ["user0", "user1"]


def test_dynamic_list_criteria(sandbox: SandboxHandle) -> None:
    project = sandbox.create_project()
    key = sandbox.create_key(project)
    sandbox.put_users(
        project,
        [
            {"email": "gold@example.com", "dataFields": {"plan": {"tier": "gold"}}},
            {"email": "free@example.com", "dataFields": {"plan": {"tier": "free"}}},
        ],
    )
    response = httpx.post(
        f"{sandbox.base_url}/_sandbox/projects/{project.id}/lists",
        json={
            "name": "gold",
            "listType": "Dynamic",
            "criteria": [{"field": "plan.tier", "op": "equals", "value": "gold"}],
        },
    )
    assert response.status_code == 201, response.text
    list_id = response.json()["id"]
    url = f"{sandbox.api_url(project)}/api/lists/getUsers"
    assert httpx.get(url, params={"listId": list_id}, headers={"Api-Key": key}).text == "gold@example.com\n"
    # Segments are live: a profile change moves a user in.
    sandbox.put_users(project, [{"email": "free@example.com", "dataFields": {"plan": {"tier": "gold"}}}])
    assert httpx.get(url, params={"listId": list_id}, headers={"Api-Key": key}).text.splitlines() == [
        "gold@example.com",
        "free@example.com",
    ]


def test_million_member_list_is_streamed_with_flat_memory(sandbox: SandboxHandle, api: Api) -> None:
    """A 1,000,000-member list: the body arrives in many chunks, line counts match,
    and this process (client and sandbox both live here) does not grow by anything
    like the list's size (~25 MB of text, ~100 MB as Python strings)."""
    members = 1_000_000
    list_id = sandbox.create_list(api.project, "huge", generate=members)
    assert api.client.get(f"/api/lists/{list_id}/size").text == str(members)

    peak = baseline = rss_bytes()
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    chunks = lines = total = 0
    tail = b""
    try:
        with api.client.stream("GET", "/api/lists/getUsers", params={"listId": list_id}) as response:
            assert response.status_code == 200
            assert "content-length" not in response.headers  # chunked, not buffered
            for chunk in response.iter_raw():
                chunks += 1
                total += len(chunk)
                lines += chunk.count(b"\n")
                tail = (tail + chunk)[-64:]
    finally:
        stop.set()
        sampler.join()
    assert lines == members
    assert tail.endswith(b"user999999@example.com\n")
    assert chunks >= 100, chunks
    growth = peak - baseline
    assert growth < 40 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB while streaming {total / 1e6:.1f} MB"
