"""Iterable payload -> EngagementEvent, without any infrastructure."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from liftstack_ingest.normalise import BadPayload, event_id, normalise, parse_body, parse_iterable_time
from liftstack_shared.connections_client import InternalConnection, Region
from liftstack_shared.logging import redact
from liftstack_shared.messages import EventType
from tests.ingest.payloads import EMAIL, EXAMPLES, example

CONN = InternalConnection(
    connection_id="conn_1",
    workspace_id="ws_1",
    name="P",
    region=Region.US,
    api_key=SecretStr("k"),
    status="active",
)
NOW = datetime(2024, 1, 1, tzinfo=UTC)

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
    assert event.occurred_at == datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)


def test_journey_webhook_fields_are_coerced_and_user_id_is_an_identity():
    payload = example("customEvent")
    item = normalise(payload, "conn_1")
    event = item.event(payload, CONN, NOW)
    assert event.email is None and event.user_id == "user-43"
    assert event.campaign_id == 59667  # "59667" in the body
    assert event.occurred_at == datetime(2016, 12, 3, 9, 15, tzinfo=UTC)
    assert item.key == b"conn_1:userId:user-43"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2016-12-02 18:51:45 +00:00", datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
        ("2016-12-02 20:51:45 +02:00", datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
        ("2016-12-02 18:51:45.250 +00:00", datetime(2016, 12, 2, 18, 51, 45, 250000, tzinfo=UTC)),
        ("2016-12-02T18:51:45Z", datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
        ("2016-12-02T18:51:45", datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
        (1480704705000, datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
        (1480704705, datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
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
        (b"\xff\xfe", "invalid_encoding"),
        (b'{"eventName": NaN}', "invalid_json"),
        (b"[1, 2]", "invalid_payload"),
        (b"", "invalid_json"),
        # Outside liftstack's bounds (liftstack_shared.bounds), each with its code.
        (b'{"email": "a@b.c", "x": ' + b"[" * 33 + b"]" * 33 + b"}", "too_deep"),
        (b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too_deep"),
        (b'{"x": ' + b'{"a":' * 600 + b"1" + b"}" * 600 + b"}", "too_deep"),
        (b'{"dataFields": {"campaignId": ' + str(10**40).encode() + b"}}", "number_out_of_range"),
        (b'{"x": 9223372036854775808}', "number_out_of_range"),
        (b'{"x": -9223372036854775809}', "number_out_of_range"),
        (b'{"x": ' + b"9" * 5000 + b"}", "number_out_of_range"),
        (b'{"x": 1e400}', "number_out_of_range"),
        (b'{"x": -1e400}', "number_out_of_range"),
        (b'{"x": Infinity}', "invalid_json"),
        (b'{"x": -Infinity}', "invalid_json"),
        (b'{"\\ud800": 1}', "invalid_key"),
        (b'{"x": "\\udfff"}', "invalid_string"),
        (b'{"a\\u0000b": 1}', "invalid_key"),
        (b'{"x": ["\\u0000"]}', "invalid_string"),
        (b'{"x": "\xed\xa0\x80"}', "invalid_encoding"),  # a surrogate encoded in "UTF-8"
        (b'{"x": "\xc3\x28"}', "invalid_encoding"),
        ('{"x": 1}'.encode("utf-16"), "invalid_encoding"),
        (b'{"x": 1, "x": 2}', "duplicate_key"),
        (b'{"": 1}', "invalid_key"),
        (b'{"' + b"k" * 257 + b'": 1}', "invalid_key"),
        (b'{"x": "' + b"s" * 16_385 + b'"}', "string_too_long"),
        (b'{"x": [' + b",".join([b"1"] * 10_001) + b"]}", "too_many_items"),
        (b"null", "invalid_payload"),
        (b'"text"', "invalid_payload"),
        (b"   ", "invalid_json"),
        (b'{"x": 1} {"y": 2}', "invalid_json"),
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


def test_a_bom_and_surrounding_whitespace_are_accepted():
    assert parse_body(b'\xef\xbb\xbf {"eventName": "emailOpen"} \n') == {"eventName": "emailOpen"}


def test_every_int64_is_accepted_and_kept_exactly():
    body = b'{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.5e300}'
    assert parse_body(body) == {"a": 2**63 - 1, "b": -(2**63), "c": 1.5e300}


def test_brackets_and_escapes_inside_strings_are_not_nesting():
    deep_looking = "[{" * 100 + '\\"'
    payload = parse_body(('{"x": "' + deep_looking.replace('\\"', '\\\\\\"') + '"}').encode())
    assert payload["x"].startswith("[{[{")


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"campaignId": "1" + "0" * 40}, "invalid_campaign_id"),
        ({"campaignId": "9" * 5000}, "invalid_campaign_id"),
        ({"templateId": "9223372036854775808"}, "invalid_template_id"),
        ({"email": "a" * 321}, "invalid_email"),
        ({"userId": "u" * 513}, "invalid_user_id"),
        ({"messageId": "m" * 513}, "invalid_message_id"),
        ({"url": "https://x/" + "p" * 8200}, "invalid_url"),
        ({"createdAt": "yesterday"}, "invalid_created_at"),
        ({"createdAt": "9999-12-31 23:59:59 -14:00"}, "invalid_created_at"),
        ({"createdAt": "1969-12-31T23:59:59Z"}, "invalid_created_at"),
        ({"createdAt": 99999999999999999}, "invalid_created_at"),  # year 3,170,843
        ({"createdAt": -1}, "invalid_created_at"),
        ({"createdAt": "2101-01-01 00:00:00 +00:00"}, "invalid_created_at"),
        ({"createdAt": {"nested": 1}}, "invalid_created_at"),
    ],
)
def test_fields_outside_their_bounds_are_named(fields, code):
    payload = {"email": "a@example.com", "eventName": "emailOpen", **fields}
    with pytest.raises(BadPayload) as caught:
        normalise(payload, "c")
    assert caught.value.code == code


def test_a_long_event_name_is_refused():
    with pytest.raises(BadPayload) as caught:
        normalise({"email": "a@example.com", "eventName": "e" * 129}, "c")
    assert caught.value.code == "invalid_event_name"


@pytest.mark.parametrize(
    "created_at, expected",
    [
        ("1480704705", datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
        ("1480704705000", datetime(2016, 12, 2, 18, 51, 45, tzinfo=UTC)),
        (1480704705.5, datetime(2016, 12, 2, 18, 51, 45, 500000, tzinfo=UTC)),
        ("2016-12-02T18:51:45.123+00:00", datetime(2016, 12, 2, 18, 51, 45, 123000, tzinfo=UTC)),
        ("", None),
    ],
)
def test_timestamps_as_strings_seconds_millis_and_iso(created_at, expected):
    payload = {"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"createdAt": created_at}}
    event = normalise(payload, "c").event(payload, CONN, NOW)
    assert event.occurred_at == (expected or NOW)


def test_ids_are_64_bit_integers_from_numbers_or_digit_strings():
    payload = {
        "email": "a@example.com",
        "eventName": "emailOpen",
        "dataFields": {"campaignId": "9223372036854775807", "templateId": -3},
    }
    event = normalise(payload, "c").event(payload, CONN, NOW)
    assert (event.campaign_id, event.template_id) == (2**63 - 1, -3)
    # Not numbers at all (a float, a word, unicode digits): not an id, ignored.
    for odd in (12.5, "12ab", "\u00b2\u00b3", [1]):
        payload["dataFields"] = {"campaignId": odd}
        assert normalise(payload, "c").event(payload, CONN, NOW).campaign_id is None


def test_emails_keep_their_case_and_unicode_and_key_on_lower_case():
    payload = {"email": " Ünïcode.Üser@Exämple.COM ", "eventName": "emailOpen"}
    item = normalise(payload, "c")
    assert item.email == "Ünïcode.Üser@Exämple.COM"
    assert item.key == "c:ünïcode.üser@exämple.com".encode()


# The fast paths must give exactly what the general ones give.
_text_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=15,
)


@settings(max_examples=500, deadline=None)
@given(_text_values)
def test_event_ids_do_not_depend_on_the_serialiser(value):
    payload = {"eventName": "emailOpen", "dataFields": {"v": value}}
    stdlib = json.dumps({"c": "conn_1", "p": payload}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert event_id("conn_1", payload) == "ev_" + hashlib.sha256(stdlib.encode()).hexdigest()[:24]


def _strptime_answer(text: str) -> datetime | None:
    for fmt in ("%Y-%m-%d %H:%M:%S %z", "%Y-%m-%d %H:%M:%S.%f %z"):
        try:
            return datetime.strptime(text, fmt).astimezone(UTC)
        except (ValueError, OverflowError):
            continue
    return None


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(0, 30),
    st.integers(0, 99),
    st.sampled_from(["+", "-"]),
    st.sampled_from(["", ":"]),
    st.sampled_from(["", ".1", ".123456", ".5000"]),
)
def test_iterable_times_parse_as_strptime_would(moment, off_h, off_m, sign, colon, fraction):
    text = f"{moment:%Y-%m-%d %H:%M:%S}{fraction} {sign}{off_h:02d}{colon}{off_m:02d}"
    expected = _strptime_answer(text)
    if expected is not None:
        assert parse_iterable_time(text) == expected
