"""Testing a connection against the Iterable sandbox: read-only calls only, and a
message that says what is wrong."""

from __future__ import annotations

import asyncio

import httpx

from liftstack_connections.app import create_app
from liftstack_connections.iterable_probe import IterableProbe, ProbeTarget
from liftstack_shared.connections_client import Region
from tests.connections import support
from tests.connections.support import Workspace
from tests.fixtures.asgi import free_port, serve_asgi
from tests.fixtures.sandbox import SandboxHandle


def key_for(sandbox: SandboxHandle, region: str = "US", **kwargs) -> tuple[object, str]:
    project = sandbox.create_project(region=region)
    return project, support.track(sandbox.create_key(project, **kwargs))


async def run_test(ws: Workspace, key: str, region: str = "US", **fields) -> tuple[dict, dict]:
    """Create a connection, test it; (test result, card after the test)."""
    card = await ws.create(api_key=key, region=region, **fields)
    one = f"{ws.path}/{card['id']}"
    async with ws.client() as c:
        r = await c.post(f"{one}/test")
        assert r.status_code == 200, r.text
        return r.json(), (await c.get(one)).json()


def by_permission(result: dict) -> dict[str, str]:
    return {c["permission"]: c["result"] for c in result["checks"]}


async def test_server_side_key_connects(ws: Workspace, sandbox: SandboxHandle):
    project, key = key_for(sandbox, "EU")
    result, card = await run_test(ws, key, "EU")
    assert result["ok"] is True and result["status"] == "connected"
    assert result["message"].startswith("Connected to Iterable (EU)")
    assert by_permission(result) == {
        "read_lists": "ok",
        "read_users": "ok",
        "read_templates": "ok",
        "write_users": "unverified",
        "write_templates": "unverified",
        "webhook": "missing",
    }
    assert card["status"] == "connected" and card["last_test"] == result
    # Exactly one read of each, all answered 200: nothing written.
    assert sandbox.stats(project) == {
        "lists": {200: 1},
        "users/getFields": {200: 1},
        "templates": {200: 1},
        "webhooks": {200: 1},
    }


async def test_read_only_key_is_reported_honestly(ws: Workspace, sandbox: SandboxHandle):
    _, key = key_for(sandbox, type="read_only")
    result, _ = await run_test(ws, key)
    # GETs can't tell a read-only key from a server-side one: say so, don't guess.
    assert result["ok"] is True
    assert by_permission(result)["write_users"] == "unverified"
    assert by_permission(result)["write_templates"] == "unverified"
    assert "Read-only" in result["message"] and "unverified" in result["message"]
    writes = {c["permission"]: c["message"] for c in result["checks"]}
    assert "Read-only key does not" in writes["write_users"]


async def test_unknown_key_is_invalid(ws: Workspace, sandbox: SandboxHandle):
    sandbox.create_project()
    result, card = await run_test(ws, support.fake_key())
    assert result["ok"] is False and card["status"] == "error"
    assert result["message"].startswith("Invalid API key")
    assert result["suggested_region"] is None


async def test_disabled_key_is_unauthorized(ws: Workspace, sandbox: SandboxHandle):
    _, key = key_for(sandbox, disabled=True)
    result, card = await run_test(ws, key)
    assert result["ok"] is False and card["status"] == "error"
    assert result["message"].startswith("Unauthorized") and "disabled" in result["message"]


async def test_client_side_key_is_unauthorized(ws: Workspace, sandbox: SandboxHandle):
    _, key = key_for(sandbox, type="js")
    result, _ = await run_test(ws, key)
    assert result["ok"] is False
    assert result["message"].startswith("Unauthorized")
    assert "server-side" in result["message"]


async def test_wrong_region_is_detected_both_ways(ws: Workspace, sandbox: SandboxHandle):
    _, eu_key = key_for(sandbox, "EU")
    result, card = await run_test(ws, eu_key, "US")
    assert result["ok"] is False and card["status"] == "error"
    assert result["message"].startswith("Wrong region")
    assert "EU data center" in result["message"] and result["suggested_region"] == "EU"

    _, us_key = key_for(sandbox, "US")
    result, _ = await run_test(ws, us_key, "EU")
    assert result["message"].startswith("Wrong region") and result["suggested_region"] == "US"


async def test_fixing_the_region_then_testing_connects(ws: Workspace, sandbox: SandboxHandle):
    _, key = key_for(sandbox, "EU")
    result, card = await run_test(ws, key, "US")
    assert card["status"] == "error"
    one = f"{ws.path}/{card['id']}"
    async with ws.client() as c:
        r = await c.patch(one, json={"region": result["suggested_region"]})
        # New credentials: the old result no longer applies.
        assert r.json()["status"] == "active" and r.json()["last_test"] is None
        r = await c.post(f"{one}/test")
    assert r.json()["ok"] is True and r.json()["status"] == "connected"


async def test_iterable_errors_read_as_unreachable(ws: Workspace, sandbox: SandboxHandle):
    project, key = key_for(sandbox)
    sandbox.faults(project, fail_next=10, fail_status=503)
    result, card = await run_test(ws, key)
    assert result["ok"] is False and card["status"] == "error"
    assert result["message"].startswith("Iterable unreachable")


async def test_closed_host_reads_as_unreachable(conn_settings):
    settings = conn_settings.model_copy(update={"iterable_base_url": f"http://127.0.0.1:{free_port()}"})
    with serve_asgi(create_app(settings)) as url:
        ws = Workspace(settings, url)
        result, card = await run_test(ws, support.fake_key())
    assert result["ok"] is False and card["status"] == "error"
    assert result["message"].startswith("Iterable unreachable")


async def test_slow_iterable_times_out(conn_settings, sandbox: SandboxHandle):
    project, key = key_for(sandbox)
    sandbox.faults(project, latency_ms=3000)
    settings = conn_settings.model_copy(update={"test_timeout_s": 1.0})
    with serve_asgi(create_app(settings)) as url:
        result, _ = await run_test(Workspace(settings, url), key)
    assert result["ok"] is False
    assert result["message"].startswith("Iterable unreachable") and "within 1s" in result["message"]


async def test_configured_system_webhook_is_recognised(ws: Workspace, sandbox: SandboxHandle):
    project, key = key_for(sandbox)
    card = await ws.create(api_key=key)
    sandbox.add_webhook(project, card["webhook_url"], authType="NoAuth")
    async with ws.client() as c:
        r = await c.post(f"{ws.path}/{card['id']}/test")
    assert by_permission(r.json())["webhook"] == "ok"


async def test_probe_sends_only_gets_and_changes_nothing(sandbox: SandboxHandle):
    project, key = key_for(sandbox)
    list_id = sandbox.create_list(project, "audience", ["a@example.com"])
    template_id = sandbox.create_template(project, name="t", html="<p>hi</p>")
    before = (sandbox.templates(project), sandbox.user(project, "a@example.com"))
    requests: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        requests.append(request)

    probe = IterableProbe(sandbox.base_url, event_hooks={"request": [record]})
    result = await probe.run(ProbeTarget(key, Region.US, "https://example.test/hook"))
    assert result.ok
    assert requests and {r.method for r in requests} == {"GET"}
    assert {r.url.path for r in requests} == {
        "/us/api/lists",
        "/us/api/users/getFields",
        "/us/api/templates",
        "/us/api/webhooks",
    }
    assert (sandbox.templates(project), sandbox.user(project, "a@example.com")) == before
    assert list_id and template_id

    # Failure paths (including the other-region probe) are reads too.
    requests.clear()
    _, eu_key = key_for(sandbox, "EU")
    result = await probe.run(ProbeTarget(eu_key, Region.US))
    assert result.suggested_region == Region.EU
    assert [(r.method, r.url.path) for r in requests] == [("GET", "/us/api/lists"), ("GET", "/eu/api/lists")]


async def test_key_replaced_during_a_test_is_not_marked_connected(ws: Workspace, sandbox: SandboxHandle):
    project, key = key_for(sandbox)
    card = await ws.create(api_key=key)
    one = f"{ws.path}/{card['id']}"
    sandbox.faults(project, latency_ms=800)
    async with ws.client() as c:

        async def replace_soon() -> httpx.Response:
            await asyncio.sleep(0.3)
            return await c.patch(one, json={"api_key": support.fake_key()})

        tested, replaced = await asyncio.gather(c.post(f"{one}/test"), replace_soon())
        assert replaced.status_code == 200
        assert tested.status_code == 409 and tested.json()["error"]["code"] == "changed_during_test"
        after = (await c.get(one)).json()
    assert after["status"] == "active" and after["last_test"] is None
