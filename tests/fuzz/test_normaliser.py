"""Property: every body is either refused with a named 400 code, or becomes an
`EngagementEvent` that survives the wire (JSON, re-validated as consumers do) and
is stored by both consumers' real write code in real MongoDB (FerretDB locally).
"Nothing that passes the gateway may fail a consumer's storage.\""""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr

from liftstack_experiments.store import ResultsStore
from liftstack_ingest.events import to_entry
from liftstack_ingest.normalise import BadPayload, normalise, parse_body
from liftstack_ingest.store import EventsStore
from liftstack_shared.connections_client import InternalConnection, Region
from liftstack_shared.messages import EngagementEvent
from tests.fuzz.webhook_payloads import webhook_bodies

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
CONN = InternalConnection(
    connection_id="conn_fuzz",
    workspace_id="ws_fuzz",
    name="Fuzz",
    region=Region.US,
    api_key=SecretStr("0" * 32),
    status="active",
)
# Every code the gateway may answer a bad body with (documented in the ingest README).
BAD_BODY_CODES = {
    "invalid_encoding",
    "invalid_json",
    "invalid_payload",
    "too_deep",
    "duplicate_key",
    "number_out_of_range",
    "invalid_string",
    "string_too_long",
    "invalid_key",
    "too_many_items",
    "missing_event_name",
    "invalid_event_name",
    "missing_user",
    "invalid_email",
    "invalid_user_id",
    "invalid_campaign_id",
    "invalid_template_id",
    "invalid_message_id",
    "invalid_url",
    "invalid_created_at",
}
EXAMPLES = 600


def _generate() -> tuple[list[EngagementEvent], Counter[str]]:
    accepted: list[EngagementEvent] = []
    outcomes: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(body=webhook_bodies())
    def check(body: bytes) -> None:
        try:
            payload = parse_body(body)
            item = normalise(payload, CONN.connection_id)
        except BadPayload as exc:
            assert exc.code in BAD_BODY_CODES, exc.code
            outcomes[exc.code] += 1
            return
        if item.event_type is None:
            outcomes["unknown"] += 1
            return
        event = item.event(payload, CONN, NOW)  # the contract accepts what parsing let through
        wire = EngagementEvent.model_validate_json(event.to_bytes())
        assert wire.model_dump() == event.model_dump()
        outcomes["accepted"] += 1
        accepted.append(wire)

    check()
    return accepted, outcomes


def _record(event: EngagementEvent, offset: int, topic: str) -> ConsumerRecord:
    value = event.to_bytes()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=(),
    )


async def test_what_the_gateway_accepts_every_consumer_can_store(mongo_client, settings):
    accepted, outcomes = _generate()
    print(f"\nnormaliser fuzz: {EXAMPLES} bodies, outcomes {dict(outcomes)}")
    assert outcomes["accepted"] >= 30, outcomes  # the strategy does reach the happy path
    assert sum(outcomes.values()) - outcomes["accepted"] - outcomes["unknown"] >= 100, outcomes

    db = mongo_client[settings.mongo_db + "_fuzz"]
    read_model = EventsStore(db, retention=NOW - NOW.replace(year=2025))
    await read_model.ensure_indexes()
    topic = "engagement.events"
    entries = [to_entry(_record(e, i, topic), topic) for i, e in enumerate(accepted)]
    await read_model.apply([e for e in entries if e is not None])
    results = ResultsStore(db)
    await results.ensure_indexes()
    await results.write([(event, None) for event in accepted])

    for event in accepted:
        stored = await db["ingest_events"].find_one({"_id": event.event_id})
        assert stored is not None
        assert stored["email"] == event.email and stored["campaign_id"] == event.campaign_id
        assert stored["url"] == event.url and stored["message_id"] == event.message_id
        result = await db["result_events"].find_one({"_id": event.event_id})
        assert result is not None and result["iterable_campaign_id"] == event.campaign_id
    await mongo_client.drop_database(settings.mongo_db + "_fuzz")
