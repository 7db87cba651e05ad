"""The assignment engine's reader of `audience.members` on the shared runtime (real
Kafka): a poison message of the sync being read is dead-lettered with its reason and
the read fails at once, saying so; another sync's garbage is not its business; the
next (normal) sync is read within 10 s; the reader is gone afterwards."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from liftstack_experiments.assigner import SYNC_READER, SyncNotFound, read_sync_members
from liftstack_shared.consumer import RetryPolicy
from liftstack_shared.messages import AudienceMember, AudienceMembersBatch, AudienceSyncCompleted
from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import AUDIENCE_MEMBERS, AUDIENCE_MEMBERS_DEADLETTER
from tests.fixtures.kafka_tools import dead_letters, produce


def _sync(sync_id: str, n: int) -> list[tuple[bytes, bytes]]:
    batch = AudienceMembersBatch(
        sync_id=sync_id,
        workspace_id="ws",
        connection_id="c1",
        list_id=1,
        batch_seq=0,
        members=[AudienceMember(email=f"m{i}@example.com") for i in range(n)],
    )
    done = AudienceSyncCompleted(
        sync_id=sync_id,
        workspace_id="ws",
        connection_id="c1",
        list_id=1,
        batch_count=1,
        member_count=n,
        invalid_skipped=0,
        duplicates_skipped=0,
    )
    return [(sync_id.encode(), batch.to_bytes()), (sync_id.encode(), done.to_bytes())]


async def test_a_poison_batch_fails_its_sync_fast_and_the_next_sync_is_read(kafka_topics: CommonSettings) -> None:
    settings = kafka_topics
    topic = settings.topic(AUDIENCE_MEMBERS.name)
    started = datetime.now(UTC)
    poisoned, normal = uuid.uuid4().hex, uuid.uuid4().hex
    await produce(
        settings,
        topic,
        [
            (b"some-other-sync", b"{garbage that is not ours"),
            (poisoned.encode(), b'{"kind": "members", "sync_id": "' + poisoned.encode() + b'", "batch_seq": -1}'),
            *_sync(poisoned, 3)[1:],  # its completion, counting the batch that never parsed
            *_sync(normal, 4),
        ],
    )
    policy = RetryPolicy(attempts=2, retry_initial_s=0.05)

    t0 = time.monotonic()
    with pytest.raises(SyncNotFound, match="dead-lettered"):
        await read_sync_members(settings, poisoned, since=started, timeout_s=60, policy=policy)
    assert time.monotonic() - t0 < 10.0

    t0 = time.monotonic()
    read = await read_sync_members(settings, normal, since=started, timeout_s=10, policy=policy)
    assert time.monotonic() - t0 < 10.0
    assert [m.email for m in read.members] == [f"m{i}@example.com" for i in range(4)]

    letters = [
        item
        for item in await dead_letters(settings, settings.topic(AUDIENCE_MEMBERS_DEADLETTER.name), SYNC_READER)
        if item.key in {poisoned, "some-other-sync"}
    ]
    assert len(letters) == 1, [item.reason for item in letters]  # only our own sync's poison
    [letter] = letters
    assert letter.key == poisoned and letter.reason_class == "validation"
    assert letter.reason.startswith("invalid message: ") and "Field required" in letter.reason
    assert letter.source_topic == topic
