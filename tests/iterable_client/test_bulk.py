"""bulkUpdate: per-user result parsing and packing under Iterable's caps."""

from __future__ import annotations

import json

import httpx
import pytest

from liftstack_shared.iterable import (
    MAX_BODY_BYTES,
    BulkUpdateResponse,
    BulkUpdateResult,
    BulkUpdateUser,
    FailureReason,
    IterableBadRequest,
    pack_users,
)
from liftstack_shared.iterable.bulk import bulk_update_body

R = FailureReason


def by_email(*emails: str) -> list[BulkUpdateUser]:
    return [BulkUpdateUser(email=e, dataFields={"x": 1}) for e in emails]


def by_user_id(*ids: str) -> list[BulkUpdateUser]:
    return [BulkUpdateUser(userId=i, dataFields={"x": 1}) for i in ids]


def parse(users: list[BulkUpdateUser], body: dict) -> BulkUpdateResult:
    return BulkUpdateResult.from_response(users, BulkUpdateResponse.model_validate(body))


def test_user_needs_exactly_one_identifier() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BulkUpdateUser(email="a@x.test", userId="u1")
    with pytest.raises(ValueError, match="exactly one"):
        BulkUpdateUser(dataFields={"x": 1})
    assert BulkUpdateUser(userId="u1").to_body() == {"userId": "u1", "dataFields": {}}


def test_every_failure_category_maps_to_a_reason() -> None:
    users = by_email(*(f"{n}@x.test" for n in "abcdefg")) + by_user_id(*"uvwxyz")
    body = {
        "successCount": 2,
        "failCount": 11,
        "failedUpdates": {
            "invalidEmails": ["a@x.test"],
            "invalidUserIds": ["u"],
            "notFoundEmails": ["b@x.test"],
            "notFoundUserIds": ["v"],
            "forgottenEmails": ["c@x.test"],
            "forgottenUserIds": ["w"],
            "conflictEmails": ["d@x.test"],
            "conflictUserIds": ["x"],
            "invalidDataEmails": ["e@x.test"],
            "invalidDataUserIds": ["y"],
        },
        "invalidEmails": ["f@x.test"],  # deprecated top-level list
        "createdFields": ["x"],
        "filteredOutFields": ["junk"],
    }
    result = parse(users, body)
    assert result.failed == {
        "a@x.test": R.INVALID,
        "u": R.INVALID,
        "b@x.test": R.NOT_FOUND,
        "v": R.NOT_FOUND,
        "c@x.test": R.FORGOTTEN,
        "w": R.FORGOTTEN,
        "d@x.test": R.CONFLICT,
        "x": R.CONFLICT,
        "e@x.test": R.INVALID_DATA,
        "y": R.INVALID_DATA,
        "f@x.test": R.INVALID,
    }
    assert result.succeeded == ["g@x.test", "z"]
    assert (result.successCount, result.failCount) == (2, 11)
    assert result.createdFields == ["x"] and result.filteredOutFields == ["junk"]
    assert result.failed_by_reason == {R.INVALID: 3, R.NOT_FOUND: 2, R.FORGOTTEN: 2, R.CONFLICT: 2, R.INVALID_DATA: 2}
    assert [o.ok for o in result.outcomes] == [False] * 6 + [True] + [False] * 5 + [True]


def test_retryable_never_includes_forgotten() -> None:
    users = by_email("nf@x.test", "gone@x.test", "bad@x.test", "clash@x.test", "ok@x.test")
    result = parse(
        users,
        {
            "successCount": 1,
            "failCount": 4,
            "failedUpdates": {
                "notFoundEmails": ["nf@x.test"],
                "forgottenEmails": ["gone@x.test"],
                "invalidDataEmails": ["bad@x.test"],
                "conflictEmails": ["clash@x.test"],
            },
        },
    )
    # Nothing is resubmitted by default: notFound* is for subscribe/unsubscribe and
    # conflict* is deterministic (the spec); the reasons are kept per user.
    assert result.retryable() == []
    assert result.failed["nf@x.test"] == FailureReason.NOT_FOUND
    assert result.failed["clash@x.test"] == FailureReason.CONFLICT
    everything = result.retryable(reasons=list(FailureReason))
    assert "gone@x.test" not in [u.email for u in everything]
    assert len(everything) == 3


def test_forgotten_wins_when_listed_twice() -> None:
    users = by_email("a@x.test")
    body = {
        "successCount": 0,
        "failCount": 1,
        "invalidEmails": ["a@x.test"],
        "failedUpdates": {"forgottenEmails": ["a@x.test"], "notFoundEmails": ["a@x.test"]},
    }
    assert parse(users, body).failed == {"a@x.test": R.FORGOTTEN}


def test_emails_match_case_insensitively_user_ids_exactly() -> None:
    users = [BulkUpdateUser(email="Ann@X.test"), BulkUpdateUser(userId="Abc")]
    result = parse(
        users,
        {
            "successCount": 0,
            "failCount": 1,
            "failedUpdates": {"invalidEmails": ["ann@x.test"], "invalidUserIds": ["abc"]},
        },
    )
    assert result.failed == {"Ann@X.test": R.INVALID}
    assert result.succeeded == ["Abc"]
    assert result.unmatched == {"abc": R.INVALID}


def test_malformed_email_inside_data_fields_is_attributed() -> None:
    users = [BulkUpdateUser(userId="u1", dataFields={"email": "not-an-email"}), BulkUpdateUser(userId="u2")]
    result = parse(users, {"successCount": 1, "failCount": 1, "failedUpdates": {"invalidEmails": ["not-an-email"]}})
    assert result.failed == {"u1": R.INVALID}


def test_failures_for_unknown_identifiers_and_unattributed_counts() -> None:
    users = by_email("a@x.test", "b@x.test")
    result = parse(
        users, {"successCount": 0, "failCount": 2, "failedUpdates": {"conflictEmails": ["someone-else@x.test"]}}
    )
    assert result.unmatched == {"someone-else@x.test": R.CONFLICT}
    assert result.failed == {} and result.unattributed_fail_count == 2


def test_duplicate_submissions_share_an_outcome() -> None:
    users = by_email("a@x.test", "a@x.test", "b@x.test")
    result = parse(users, {"successCount": 1, "failCount": 2, "failedUpdates": {"invalidDataEmails": ["a@x.test"]}})
    assert [o.reason for o in result.outcomes] == [R.INVALID_DATA, R.INVALID_DATA, None]


def test_minimal_response() -> None:
    result = parse(by_user_id("u1"), {"successCount": 1, "failCount": 0})
    assert result.succeeded == ["u1"] and result.failed == {} and result.unmatched == {}


# --- packing -----------------------------------------------------------------------


def test_pack_by_count() -> None:
    users = by_user_id(*(str(i) for i in range(2500)))
    batches = list(pack_users(users))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert [u for b in batches for u in b] == users


def test_pack_under_4mb_measures_serialised_size() -> None:
    # ~9 KB users: 1,000 of them would be ~9 MB, so size, not count, decides.
    blob = "é" * 4500  # 2 bytes each in UTF-8: the measure must be bytes, not chars
    users = [
        BulkUpdateUser(email=f"user{i}@x.test", dataFields={"blob": blob, "i": i}, mergeNestedObjects=True)
        for i in range(1000)
    ]
    batches = list(pack_users(users))
    assert len(batches) > 2
    assert [u for b in batches for u in b] == users
    for batch in batches:
        body = bulk_update_body(batch, True)
        assert len(body) <= MAX_BODY_BYTES
    # Greedy: adding the next user to any batch would have crossed the cap.
    for batch, following in zip(batches, batches[1:]):
        assert len(bulk_update_body(batch + following[:1], True)) > MAX_BODY_BYTES


def test_pack_exact_fit() -> None:
    users = by_user_id(*(str(i) for i in range(10)))
    exact = len(bulk_update_body(users[:4], True))
    batches = list(pack_users(users, max_bytes=exact))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert all(len(bulk_update_body(b, True)) <= exact for b in batches)


def test_pack_rejects_a_user_larger_than_a_request() -> None:
    huge = BulkUpdateUser(email="huge@x.test", dataFields={"blob": "x" * MAX_BODY_BYTES})
    with pytest.raises(ValueError, match="huge@x.test"):
        list(pack_users([huge]))


def test_pack_empty() -> None:
    assert list(pack_users([])) == []


async def test_client_refuses_a_body_over_the_cap(make_client) -> None:
    sent: list[httpx.Request] = []
    users = [BulkUpdateUser(userId=str(i), dataFields={"blob": "x" * 5000}) for i in range(1000)]
    async with make_client(lambda r: sent.append(r) or httpx.Response(500)) as client:
        with pytest.raises(IterableBadRequest, match="pack_users"):
            await client.bulk_update(users)
    assert sent == []


async def test_client_sends_exactly_what_was_measured(make_client) -> None:
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        n = len(json.loads(request.content)["users"])
        return httpx.Response(200, json={"successCount": n, "failCount": 0})

    users = [BulkUpdateUser(email=f"u{i}@x.test", dataFields={"s": "ü" * 3000}) for i in range(3000)]
    async with make_client(handler) as client:
        for batch in pack_users(users):
            result = await client.bulk_update(batch)
            assert len(result.succeeded) == len(batch)
    assert all(len(body) <= MAX_BODY_BYTES for body in sent)
    assert sum(len(json.loads(b)["users"]) for b in sent) == 3000


def test_filtered_out_fields_fail_the_users_that_carried_them() -> None:
    users = [
        BulkUpdateUser(email="a@x.test", dataFields={"lf_assignments": {"c1": "v1"}}, mergeNestedObjects=True),
        BulkUpdateUser(email="b@x.test", dataFields={"plan": "pro"}),
        BulkUpdateUser(email="c@x.test", dataFields={"lf_assignments": {"c1": "v2"}}),
    ]
    result = parse(
        users,
        {
            "successCount": 2,
            "failCount": 1,
            "filteredOutFields": ["lf_assignments.c1"],
            "failedUpdates": {"invalidDataEmails": ["c@x.test"]},
        },
    )
    assert result.failed == {"a@x.test": FailureReason.FIELD_DROPPED, "c@x.test": FailureReason.INVALID_DATA}
    assert result.succeeded == ["b@x.test"]
    assert result.unattributed_fail_count == 0  # a dropped field is not one of Iterable's failures


def test_fail_count_nobody_is_named_for_is_kept() -> None:
    users = by_email("a@x.test", "b@x.test", "c@x.test")
    result = parse(users, {"successCount": 1, "failCount": 2, "failedUpdates": {"invalidEmails": ["b@x.test"]}})
    assert result.failed == {"b@x.test": FailureReason.INVALID}
    assert result.unattributed_fail_count == 1


def test_nulls_and_unknown_fields_in_the_response_are_tolerated() -> None:
    users = by_email("a@x.test")
    result = parse(
        users,
        {
            "successCount": "1",
            "failCount": 0,
            "failedUpdates": None,
            "filteredOutFields": None,
            "createdFields": ["x"],
            "somethingNew": {"a": 1},
        },
    )
    assert result.succeeded == ["a@x.test"] and result.successCount == 1
