"""`liftstack_shared.bounds`: the one place the edge bounds live, enforced by the
message contracts too, so a producer bug can't publish what a consumer can't store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from liftstack_shared import bounds
from liftstack_shared.messages import AudienceSyncProgress, EngagementEvent, EventType, IngestObservation

AT = datetime(2026, 1, 1, tzinfo=UTC)


def _event(**overrides):
    values = dict(
        event_id="ev_1",
        workspace_id="ws",
        connection_id="c",
        event_type=EventType.OPEN,
        iterable_event_name="emailOpen",
        email="a@example.com",
        occurred_at=AT,
    )
    return EngagementEvent(**{**values, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"campaign_id": 10**40},
        {"template_id": -(2**63) - 1},
        {"email": "a\x00@example.com"},
        {"email": "\ud800@example.com"},
        {"email": "a" * 321},
        {"user_id": ""},
        {"url": "u" * 8193},
        {"iterable_event_name": "e" * 129},
        {"occurred_at": datetime(2200, 1, 1, tzinfo=UTC)},
        {"received_at": datetime(1969, 12, 31, tzinfo=UTC)},
        {"raw": {"x": 2**64}},
        {"raw": {"x": float("inf")}},
        {"raw": {"\x00": 1}},
        {"raw": {"x": "\udc00"}},
        {"raw": {"x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
    ],
)
def test_the_engagement_contract_refuses_what_no_consumer_could_store(overrides):
    with pytest.raises(ValidationError):
        _event(**overrides)


def test_the_contract_keeps_every_value_inside_the_bounds():
    event = _event(
        campaign_id=2**63 - 1,
        template_id=-(2**63),
        raw={"a": [1.5, None, True, "é"]},
        occurred_at=datetime(1970, 1, 1, tzinfo=UTC),
    )
    assert EngagementEvent.model_validate_json(event.to_bytes()) == event


def test_other_contracts_bound_their_ids_and_names():
    with pytest.raises(ValidationError):
        AudienceSyncProgress(sync_id="s", workspace_id="w", connection_id="c", list_id=2**63, status="running")
    with pytest.raises(ValidationError):
        IngestObservation(workspace_id="w", connection_id="c", event_name="e" * 500, outcome="rejected")


def test_the_tree_check_is_iterative_at_any_depth():
    deep: list = []
    node = deep
    for _ in range(100_000):  # far past Python's recursion limit
        child: list = []
        node.append(child)
        node = child
    with pytest.raises(bounds.OutOfBounds) as caught:
        bounds.check_json_tree({"x": deep})
    assert caught.value.code == "too_deep"


def test_depth_is_measured_before_parsing_and_ignores_brackets_in_strings():
    assert bounds.loads_json(b'{"a": "[[[[{{{{", "b": "\\\\\\"[["}') == {"a": "[[[[{{{{", "b": '\\"[['}
    with pytest.raises(bounds.OutOfBounds) as caught:
        bounds.loads_json(b"[" * 1_000_000)
    assert caught.value.code == "too_deep"
    # An unterminated string can't make the scan quadratic.
    with pytest.raises(bounds.OutOfBounds):
        bounds.loads_json(b'["' + b'\\\\"' * 200_000)


# The fast parser (orjson + cross-checks) must answer exactly as the exact parser:
# the same value when both accept, and the exact parser's error otherwise.
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20,
)


def _exact(body: bytes) -> object:
    try:
        data = bounds.loads_json(body)
        if not isinstance(data, dict):
            raise bounds.OutOfBounds("invalid_payload", "")
        return bounds.check_json_tree(data)
    except bounds.OutOfBounds as exc:
        return ("error", exc.code)


def _either(body: bytes) -> object:
    try:
        return bounds.parse_json_object(body)
    except bounds.OutOfBounds as exc:
        return ("error", exc.code)


@settings(max_examples=400, deadline=None)
@given(_json_values, st.sampled_from(["plain", "duplicate", "escaped_duplicate", "bigint", "surrogate"]))
def test_the_fast_parser_agrees_with_the_exact_one(value, twist):
    text = json.dumps({"v": value}, ensure_ascii=bool(len(str(value)) % 2))
    if twist == "duplicate":
        text = text[:-1] + ', "v": 1}'
    elif twist == "escaped_duplicate":
        text = text[:-1] + ', "\\u0076": 1}'
    elif twist == "bigint":
        text = text[:-1] + ', "big": 18446744073709551616}'
    elif twist == "surrogate":
        text = text[:-1] + ', "s": "\\udc00"}'
    body = text.encode()
    assert _either(body) == _exact(body)
