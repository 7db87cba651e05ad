"""Fault injection: 5xx bursts and rates, forced 429s, latency, dropped
connections, and getUsers streams cut mid-way or carrying bad lines."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.conftest import Api

TINY = {"users": [{"email": "a@example.com", "dataFields": {"n": 1}}]}


def test_burst_of_503_then_recovery(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.faults(api.project, fail_next=3, fail_status=503)
    responses = [api.client.get("/api/lists") for _ in range(4)]
    assert [r.status_code for r in responses] == [503, 503, 503, 200]
    assert responses[0].json() == {"msg": "Request timeout. Try again later.", "code": "GenericError", "params": None}
    assert sandbox.project(api.project).config.faults.fail_next == 0


def test_500_generic_error_and_paths_filter(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.faults(api.project, fail_next=2, fail_status=500, paths=["/api/users/bulkUpdate"])
    assert api.client.get("/api/lists").status_code == 200  # not a matching path
    first = api.client.post("/api/users/bulkUpdate", json=TINY)
    assert first.status_code == 500 and first.json()["code"] == "GenericError"
    assert api.client.post("/api/users/bulkUpdate", json=TINY).status_code == 500
    assert api.client.post("/api/users/bulkUpdate", json=TINY).status_code == 200
    # A failed request wrote nothing.
    assert sandbox.user(api.project, "a@example.com")["dataFields"] == {"n": 1}


def test_bulk_fail_users_fails_only_those_users(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.faults(api.project, bulk_fail_users=["b@example.com"])
    body = {
        "users": [
            {"email": "a@example.com", "dataFields": {"n": 2}},
            {"email": "B@example.com", "dataFields": {"n": 2}},  # emails compare lowercased
        ]
    }
    answer = api.client.post("/api/users/bulkUpdate", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["successCount"] == 1 and answer.json()["failCount"] == 1
    assert answer.json()["failedUpdates"]["invalidDataEmails"] == ["b@example.com"]
    assert sandbox.user(api.project, "a@example.com")["dataFields"] == {"n": 2}
    # Cleared: the same user is written.
    sandbox.faults(api.project, bulk_fail_users=[])
    assert api.client.post("/api/users/bulkUpdate", json=body).json()["failCount"] == 0


def test_forced_429s_follow_the_retry_after_switch(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.faults(api.project, fail_next=1, fail_status=429)
    response = api.client.get("/api/templates")
    assert response.status_code == 429 and "retry-after" not in response.headers
    sandbox.configure(api.project, retry_after=True, faults={"fail_next": 1, "fail_status": 429})
    response = api.client.get("/api/templates")
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    assert response.json()["code"] == "RateLimitExceeded"


def test_gateway_errors_are_not_json(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.faults(api.project, fail_next=1, fail_status=502)
    response = api.client.get("/api/lists")
    assert response.status_code == 502 and response.headers["content-type"].startswith("text/html")


def test_error_rate_is_seeded_and_respects_statuses(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.configure(
        api.project, rate_limits=False, faults={"error_rate": 0.5, "error_statuses": [500, 503], "seed": 7}
    )
    first = [api.client.get("/api/lists").status_code for _ in range(60)]
    assert {500, 503, 200} == set(first)
    assert 15 <= first.count(200) <= 45
    sandbox.faults(api.project, seed=7)  # re-applying the config restarts the sequence
    assert [api.client.get("/api/lists").status_code for _ in range(60)] == first
    sandbox.faults(api.project, error_rate=1.0, error_statuses=[500])
    assert {api.client.get("/api/lists").status_code for _ in range(5)} == {500}


def test_latency(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.faults(api.project, latency_ms=300)
    start = time.monotonic()
    assert api.client.get("/api/lists").status_code == 200
    assert time.monotonic() - start >= 0.3


def test_dropped_connections(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.faults(api.project, drop_next=2)
    for _ in range(2):
        with pytest.raises(httpx.RemoteProtocolError):
            api.client.get("/api/lists")
    assert api.client.get("/api/lists").status_code == 200
    assert sandbox.stats(api.project)["lists"] == {0: 2, 200: 1}
    sandbox.faults(api.project, drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        api.client.post("/api/users/bulkUpdate", json=TINY)


def test_get_users_stream_cut_mid_way(sandbox: SandboxHandle, api: Api) -> None:
    list_id = sandbox.create_list(api.project, "gen", generate=10_000)
    sandbox.configure(api.project, stream_chunk_lines=100, faults={"stream_cut_after_lines": 2_500})
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        api.client.stream("GET", "/api/lists/getUsers", params={"listId": list_id}) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            received.append(line)
    assert len(received) == 2_500
    assert received[-1] == "user2499@example.com"
    # Without the fault, the whole list arrives.
    sandbox.faults(api.project, stream_cut_after_lines=None)
    assert len(api.client.get("/api/lists/getUsers", params={"listId": list_id}).text.splitlines()) == 10_000


def test_get_users_invalid_and_duplicate_lines(sandbox: SandboxHandle, api: Api) -> None:
    list_id = sandbox.create_list(api.project, "gen", generate=1_000)
    sandbox.faults(api.project, stream_invalid_every=100, stream_duplicate_every=50, seed=1)
    lines = api.client.get("/api/lists/getUsers", params={"listId": list_id}).text.split("\n")[:-1]
    valid = [line for line in lines if line.startswith("user") and line.endswith("@example.com")]
    assert set(valid) == {f"user{i}@example.com" for i in range(1000)}
    assert len(valid) > 1000  # duplicates
    assert len(lines) - len(valid) >= 5  # invalid lines
