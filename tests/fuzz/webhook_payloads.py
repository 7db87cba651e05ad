"""Hypothesis strategies for webhook bodies: what Iterable (or a customer's journey
webhook) may legally send, and what anyone holding a webhook URL could send.

`webhook_bodies()` gives raw request bodies (bytes): Iterable-shaped JSON with every
field drawn from legal and odd values (ids as numbers, digit strings, huge numbers;
timestamps in each format and out of range; emails with odd case and unicode;
nested and unicode-keyed dataFields), serialised in several ways, and hostile
bodies (deep nesting, non-finite numbers, lone surrogates and NULs in keys and
values, invalid UTF-8, BOMs, duplicate keys, truncation, non-object top levels).
Used by the CI fuzz tests and by bench/fuzz_webhooks.py.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

from tests.ingest.payloads import EXAMPLES

INT64_MAX = 2**63 - 1

EVENT_NAMES = [
    *EXAMPLES,
    "emailopen",
    "EMAILCLICK",
    " emailSend ",
    "pushSend",
    "smsSend",
    "inAppOpen",
    "webPushClick",
    "",
    "   ",
    "e" * 200,
]

# Lone surrogates and NULs are included on purpose (st.text() leaves surrogates out).
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
short_text = st.text(max_size=20)
keys = st.one_of(short_text, any_text, st.sampled_from(["", "$set", "a.b", "\x00", "\ud800", "k" * 300]))

integers = st.one_of(
    st.integers(-(2**63), INT64_MAX),
    st.sampled_from([0, -1, INT64_MAX, -(2**63), 2**63, -(2**63) - 1, 10**40, 2**64]),
    st.integers(),
)
floats = st.floats(allow_nan=False, allow_infinity=False)
json_leaves = st.one_of(st.none(), st.booleans(), integers, floats, any_text)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=12,
)

_moments = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-14)), timezone(timedelta(hours=5, minutes=30))]),
)
created_at = st.one_of(
    _moments.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S %z")[:-2] + ":" + d.strftime("%z")[-2:]),
    _moments.map(lambda d: d.isoformat()),
    _moments.map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.integers(-(10**13), 10**14),  # epoch seconds or milliseconds, sane and not
    st.integers(-(10**13), 10**14).map(str),
    st.floats(-1e12, 1e15, allow_nan=False),
    st.sampled_from(["", "yesterday", "2016-13-45 99:99:99 +00:00", "0", "9" * 30]),
    json_values,
)
ids = st.one_of(
    integers,
    integers.map(str),
    st.sampled_from(["", " 42 ", "12ab", "\u0663", "9" * 5000]),
    floats,
    json_values,
)
emails = st.one_of(
    st.emails().map(lambda e: e.upper() if len(e) % 2 else e),
    st.sampled_from(["Ünïcode.Üser@Exämple.COM", " Spaced@Example.com ", "a" * 330 + "@x.io", "@", ""]),
    any_text,
    integers,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(_ABSENT), strategy)


_ABSENT = object()


@st.composite
def iterable_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """An Iterable-shaped webhook object (any field may be absent or odd)."""
    data_fields: dict[str, Any] = {}
    for name, strategy in (
        ("campaignId", ids),
        ("templateId", ids),
        ("messageId", st.one_of(short_text, any_text, integers)),
        ("createdAt", created_at),
        ("url", st.one_of(short_text, any_text)),
        ("email", emails),
        ("userId", st.one_of(short_text, integers)),
        ("eventName", st.sampled_from(EVENT_NAMES)),
    ):
        value = draw(_maybe(strategy))
        if value is not _ABSENT:
            data_fields[name] = value
    data_fields.update(draw(st.dictionaries(keys, json_values, max_size=4)))
    payload: dict[str, Any] = {}
    for name, strategy in (
        ("email", emails),
        ("userId", st.one_of(short_text, integers)),
        ("eventName", st.one_of(st.sampled_from(EVENT_NAMES), any_text, json_values)),
    ):
        value = draw(_maybe(strategy))
        if value is not _ABSENT:
            payload[name] = value
    payload["dataFields"] = draw(st.one_of(st.just(data_fields), json_values)) if draw(st.booleans()) else data_fields
    if draw(st.booleans()):
        payload["itblInternal"] = draw(json_values)
    return payload


@st.composite
def realistic_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """One of Iterable's documented examples with up to three fields redrawn:
    mostly acceptable, so the path to Kafka and the consumers is well covered."""
    payload = copy.deepcopy(draw(st.sampled_from(list(EXAMPLES.values()))))
    fields = payload.setdefault("dataFields", {})
    legal_ids = st.one_of(st.integers(0, INT64_MAX), st.integers(0, INT64_MAX).map(str))
    legal_times = st.one_of(
        st.datetimes(datetime(1971, 1, 1), datetime(2099, 1, 1), timezones=st.just(UTC)).map(
            lambda d: d.strftime("%Y-%m-%d %H:%M:%S +00:00")
        ),
        st.integers(31_536_000, 4_000_000_000),
        st.integers(31_536_000_000, 4_000_000_000_000),
    )
    choices = {
        "campaignId": st.one_of(legal_ids, ids),
        "templateId": st.one_of(legal_ids, ids),
        "createdAt": st.one_of(legal_times, created_at),
        "email": emails,
        "messageId": st.one_of(short_text, any_text),
        "url": short_text,
        "extra": st.dictionaries(keys, json_values, max_size=3),
    }
    for name in draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=3, unique=True)):
        value = draw(choices[name])
        if name == "extra":
            fields.update(value)
        elif name == "email":
            payload["email"] = value
        else:
            fields[name] = value
    return payload


def _serialise(payload: Any, how: str) -> bytes:
    if how == "ascii":
        return json.dumps(payload, ensure_ascii=True, allow_nan=False).encode()
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False)
    # Lone surrogates can't be UTF-8: sent as the (invalid) bytes a sloppy encoder writes.
    return text.encode("utf-8", "surrogatepass")


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    base = _serialise(draw(iterable_payloads()), "ascii")
    kind = draw(
        st.sampled_from(
            [
                "deep_array",
                "deep_object",
                "nan",
                "infinity",
                "huge_float",
                "huge_int",
                "bom",
                "truncated",
                "random_bytes",
                "top_level",
                "duplicate_keys",
                "nul_key",
                "surrogate_key",
                "long_string",
                "many_keys",
                "empty",
                "utf16",
                "trailing_garbage",
            ]
        )
    )
    depth = draw(st.integers(30, 3000))
    if kind == "deep_array":
        return b'{"email":"a@b.co","eventName":"emailOpen","x":' + b"[" * depth + b"]" * depth + b"}"
    if kind == "deep_object":
        return b'{"email":"a@b.co","eventName":"emailOpen","x":' + b'{"k":' * depth + b"1" + b"}" * depth + b"}"
    if kind == "nan":
        return b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{"campaignId":NaN}}'
    if kind == "infinity":
        return b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{"x":-Infinity}}'
    if kind == "huge_float":
        return b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{"x":1e400}}'
    if kind == "huge_int":
        digits = draw(st.integers(19, 6000))
        return b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{"campaignId":' + b"9" * digits + b"}}"
    if kind == "bom":
        return b"\xef\xbb\xbf" + base
    if kind == "truncated":
        return base[: draw(st.integers(0, max(len(base) - 1, 0)))]
    if kind == "random_bytes":
        return draw(st.binary(max_size=200))
    if kind == "top_level":
        return _serialise(draw(json_values), "ascii")
    if kind == "duplicate_keys":
        return b'{"email":"a@b.co","email":"b@b.co","eventName":"emailOpen"}'
    if kind == "nul_key":
        return b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{"a\\u0000":1}}'
    if kind == "surrogate_key":
        return b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{"\\udc00":1}}'
    if kind == "long_string":
        return (
            b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{"x":"'
            + b"s" * draw(st.integers(16_000, 200_000))
            + b'"}}'
        )
    if kind == "many_keys":
        n = draw(st.integers(9_000, 12_000))
        fields = b",".join(b'"k%d":%d' % (i, i) for i in range(n))
        return b'{"email":"a@b.co","eventName":"emailOpen","dataFields":{' + fields + b"}}"
    if kind == "empty":
        return b""
    if kind == "utf16":
        return base.decode().encode("utf-16")
    return base + b" {}"


def webhook_bodies() -> st.SearchStrategy[bytes]:
    """Raw webhook bodies: mostly Iterable-shaped, some hostile."""
    how = st.sampled_from(["ascii", "utf8"])
    shaped = st.builds(_serialise, iterable_payloads(), how)
    realistic = st.builds(_serialise, realistic_payloads(), how)
    return st.one_of(realistic, realistic, shaped, shaped, hostile_bodies())
