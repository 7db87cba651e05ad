"""`connection.changed` on Kafka for every change, keyed by connection id."""

from __future__ import annotations

from liftstack_shared.messages.connections import ConnectionChanged
from tests.connections.support import Workspace, fake_key, read_changes


async def test_created_updated_tested_deleted_are_published_in_order(ws: Workspace, conn_settings):
    card = await ws.create()
    one = f"{ws.path}/{card['id']}"
    async with ws.client() as c:
        assert (await c.patch(one, json={"api_key": fake_key()})).status_code == 200
        assert (await c.post(f"{one}/test")).status_code == 200
        assert (await c.delete(one)).status_code == 204
    messages = await read_changes(conn_settings, card["id"], want=4)
    events = [ConnectionChanged.model_validate_json(v) for _, v in messages]
    assert [e.change for e in events] == ["created", "updated", "tested", "deleted"]
    assert {k for k, _ in messages} == {card["id"].encode()}
    assert all(e.workspace_id == ws.id for e in events)
    assert events[0].status == "active" and events[2].status in ("connected", "error")


async def test_rejected_changes_publish_nothing(ws: Workspace, conn_settings):
    card = await ws.create(name="Taken")
    other = await ws.create()
    async with ws.client() as c:
        r = await c.patch(f"{ws.path}/{other['id']}", json={"name": "taken"})
        assert r.status_code == 422
        r = await c.patch(f"{ws.path}/{other['id']}", json={})  # no-op
        assert r.status_code == 200
    messages = await read_changes(conn_settings, other["id"], want=2, timeout_s=5)
    assert [ConnectionChanged.model_validate_json(v).change for _, v in messages] == ["created"]
    assert card  # the first one is unaffected


async def test_publish_failure_is_logged_not_raised(conn_settings, log_capture):
    """The change is already saved; an unreachable Kafka must not fail the request."""
    from liftstack_connections.publisher import EventPublisher
    from liftstack_shared.kafka import make_broker
    from liftstack_shared.messages.connections import ConnectionChanged
    from tests.fixtures.asgi import free_port

    dead = conn_settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    publisher = EventPublisher(make_broker(dead, "connections-test"), dead, timeout_s=2.0)
    await publisher.publish(
        ConnectionChanged(connection_id="c-dead", workspace_id="w", change="created", status="active")
    )
    assert any("could not publish connection.changed created for c-dead" in t for t in log_capture.texts)
