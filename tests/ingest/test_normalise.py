"""Iterable payload -> EngagementEvent, without any infrastructure."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import SecretStr

from liftstack_ingest.normalise import BadPayload, event_id, normalise, parse_body, parse_iterable_time
from liftstack_shared.connections_client import InternalConnection, Region
from liftstack_shared.logging import redact
from liftstack_shared.messages import EventType
from tests.ingest.payloads import EMAIL, EXAMPLES, example

CONN = InternalConnection(
    connection_id="conn_1", workspace_id="ws_1", name="P", region=Region.US,
    api_key=SecretStr("k"), status="active",
)
NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)

EXPECTED_TYPES = {
    "emailSend": EventType.SEND,
    "emailOpen": EventType.OPEN,
    "emailClick": EventType.CLICK,
    "emailUnSubscribe": EventType.UNSUBSCRIBE,
    "emailSubscribe": EventType.SUBSCRIBE,
    "emailBounce": EventType.BOUNCE,
    "emailComplaint": EventType.COMPLAINT,
    "hostedUnsubscribeClick": EventType.HOSTED_UNSUBSCRIBE_CLICK,
    "purchase": EventType.CONVERSION,
    "customEvent": EventType.CONVERSION,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_documented_example_normalises(name):
    payload = example(name)
    item = normalise(payload, CONN.connection_id)
    assert item.event_type is EXPECTED_TYPES[name]
    event = item.event(payload, CONN, NOW)
    assert event.iterable_event_name == name
    assert event.workspace_id == "ws_1" and event.connection_id == "conn_1"
    assert event.raw == payload
    assert event.occurred_at.tzinfo is not None and event.occurred_at != NOW


def test_click_fields_are_extracted():
    payload = example("emailClick")
    event = normalise(payload, "conn_1").event(payload, CONN, NOW)
    assert event.email == EMAIL
    assert event.campaign_id == 59667 and event.template_id == 93849
    assert event.message_id == "d0aa7801f91f4824997a631f3ed583c3"
    assert event.url == "https://www.iterable.com"
    assert event.occurred_at == datetime(2016, 12, 2, 18, 51, 45, tzinfo=timezone.utc)


def test_journey_webhook_fields_are_coerced_and_user_id_is_an_identity():
    payload = example("customEvent")
    item = normalise(payload, "conn_1")
    event = item.event(payload, CONN, NOW)
    assert event.email is None and event.user_id == "user-43"
    assert event.campaign_id == 59667  # "59667" in the body
    assert event.occurred_at == datetime(2016, 12, 3, 9, 15, tzinfo=timezone.utc)
    assert item.key == b"conn_1:userId:user-43"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2016-12-02 18:51:45 +00:00", datetime(2016, 12, 2, 18, 51, 45, tzinfo=timezone.utc)),
        ("2016-12-02 20:51:45 +02:00", datetime(2016, 12, 2, 18, 51, 45, tzinfo=timezone.utc)),
        ("2016-12-02 18:51:45.250 +00:00", datetime(2016, 12, 2, 18, 51, 45, 250000, tzinfo=timezone.utc)),
        ("2016-12-02T18:51:45Z", datetime(2016, 12, 2, 18, 51, 45, tzinfo=timezone.utc)),
        ("2016-12-02T18:51:45", datetime(2016, 12, 2, 18, 51, 45, tzinfo=timezone.utc)),
        (1480704705000, datetime(2016, 12, 2, 18, 51, 45, tzinfo=timezone.utc)),
        (1480704705, datetime(2016, 12, 2, 18, 51, 45, tzinfo=timezone.utc)),
        ("yesterday", None),
        (None, None),
        (True, None),
    ],
)
def test_iterable_time_parsing(text, expected):
    assert parse_iterable_time(text) == expected


def test_missing_created_at_falls_back_to_receipt_time():
    payload = {"email": "a@example.com", "eventName": "purchase", "dataFields": {}}
    assert normalise(payload, "c").event(payload, CONN, NOW).occurred_at == NOW


def test_event_id_is_deterministic_and_ignores_key_order_and_volatile_fields():
    a = example("emailOpen")
    b = dict(reversed(list(example("emailOpen").items())))
    b["dataFields"]["itblInternal"] = {"documentUpdatedAt": "2016-12-02 18:51:46 +00:00"}
    assert event_id("conn_1", a) == event_id("conn_1", b)
    assert event_id("conn_1", a) != event_id("conn_2", a)
    c = example("emailOpen")
    c["dataFields"]["createdAt"] = "2016-12-02 18:51:41 +00:00"
    assert event_id("conn_1", a) != event_id("conn_1", c)


def test_event_id_shape_survives_log_redaction():
    eid = event_id("conn_1", example("emailOpen"))
    assert eid.startswith("ev_") and len(eid) == 27
    assert redact(f"published {eid}") == f"published {eid}"


def test_unknown_event_name_has_no_type_but_an_id():
    item = normalise({"email": "a@example.com", "eventName": "pushSend"}, "c")
    assert item.event_type is None and item.event_id.startswith("ev_")


def test_event_names_match_case_insensitively():
    assert normalise({"email": "a@b.c", "eventName": "emailunsubscribe"}, "c").event_type is EventType.UNSUBSCRIBE


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"eventName": NaN}', "invalid_json"),
        (b"[1, 2]", "invalid_payload"),
        (b"", "invalid_json"),
    ],
)
def test_bad_bodies(body, code):
    with pytest.raises(BadPayload) as caught:
        parse_body(body)
    assert caught.value.code == code


@pytest.mark.parametrize(
    "payload, code",
    [
        ({"email": "a@example.com"}, "missing_event_name"),
        ({"email": "a@example.com", "eventName": "  "}, "missing_event_name"),
        ({"eventName": "emailOpen", "dataFields": {}}, "missing_user"),
        ({"eventName": "emailOpen", "email": "", "userId": None}, "missing_user"),
    ],
)
def test_required_fields(payload, code):
    with pytest.raises(BadPayload) as caught:
        normalise(payload, "c")
    assert caught.value.code == code


def test_recipient_key_keeps_one_recipient_together():
    a = normalise(example("emailOpen", email="Ann@Example.com"), "c").key
    b = normalise(example("emailClick", email="ann@example.com"), "c").key
    assert a == b == b"c:ann@example.com"
