"""Bad messages go to `campaign.assignments.deadletter` with the reason, and the
consumer keeps going."""

from __future__ import annotations

import json

from liftstack_shared.credentials import (
    CredentialsSource,
    CredentialsUnavailable,
    IterableCredentials,
)
from liftstack_shared.messages import DeadLetter
from liftstack_shared.topics import CAMPAIGN_ASSIGNMENTS, WRITEBACK_DEADLETTER
from tests.writeback.conftest import Env, emails, make_batches


async def test_bad_messages_are_dead_lettered_and_good_ones_still_written(env: Env) -> None:
    env.credentials.add(workspace_id="ws-2", connection_id="conn-other-ws", api_key=env.key)
    good = make_batches(emails(5), batch_size=5)
    header_clash = make_batches(emails(5), batch_size=5, job_id=good[0].job_id, campaign_key="another-campaign")
    unknown = make_batches(emails(3), batch_size=3, connection_id="conn-nope")
    wrong_ws = make_batches(emails(3), batch_size=3, connection_id="conn-other-ws")
    svc = await env.instance()

    await env.publish_raw(b"{not json")
    missing_fields = json.loads(good[0].to_bytes())
    del missing_fields["campaign_key"]
    await env.publish_raw(json.dumps(missing_fields).encode())
    await env.publish_raw(json.dumps({**json.loads(good[0].to_bytes()), "batch_seq": 7}).encode())
    await env.publish(unknown + wrong_ws)
    await env.publish(good)
    await env.publish(header_clash)

    summary = await env.wait_run(svc, good[0].job_id)
    assert (summary.written, summary.succeeded) == (5, 5)
    letters = [DeadLetter.model_validate_json(v) for v in await env.read_topic(WRITEBACK_DEADLETTER.name, min_count=6)]
    reasons = sorted(letter.reason for letter in letters)

    assert len(letters) == 6, reasons
    assert any(r.startswith("invalid message: ") and "JSON" in r for r in reasons)
    assert any("campaign_key: Field required" in r for r in reasons)
    assert any("batch_seq must be < batch_count" in r for r in reasons)
    assert "unknown connection 'conn-nope'" in reasons
    assert "connection 'conn-other-ws' belongs to another workspace" in reasons
    assert any(r.startswith("batch disagrees with its job: campaign_key") for r in reasons)
    for letter in letters:
        assert letter.source_topic == env.topic(CAMPAIGN_ASSIGNMENTS.name)
        assert letter.consumer == "writeback" and letter.payload
    # Nothing was written for the dead letters.
    assert env.sandbox.stats(env.project)["users/bulkUpdate"] == {200: 1}


class ConnectionsDown:
    """The connections service unreachable for the first `failures` lookups."""

    def __init__(self, inner: CredentialsSource, failures: int) -> None:
        self.inner, self.failures = inner, failures

    async def get(self, workspace_id: str, connection_id: str) -> IterableCredentials:
        if self.failures > 0:
            self.failures -= 1
            raise CredentialsUnavailable("ConnectError")
        return await self.inner.get(workspace_id, connection_id)

    def invalidate(self, connection_id: str) -> None:
        self.inner.invalidate(connection_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_connections_service_outage_is_waited_out_not_dead_lettered(env: Env) -> None:
    # As many failures as would turn an unexpected error into a dead letter.
    down = ConnectionsDown(env.credentials, failures=5)
    env.credentials = down  # type: ignore[assignment]  # a failing stand-in for the credentials source
    good = make_batches(emails(5), batch_size=5)
    svc = await env.instance()
    await env.publish(good)

    summary = await env.wait_run(svc, good[0].job_id)
    assert (summary.written, summary.succeeded) == (5, 5) and down.failures == 0
    assert await env.read_topic(WRITEBACK_DEADLETTER.name, min_count=0, timeout=2.0) == []
