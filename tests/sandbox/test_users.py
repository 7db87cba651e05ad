"""users/bulkUpdate and the user reads: merge semantics, field types, per-user
failures, GDPR-forgotten users, identity rules, body limits."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.sandbox import SandboxHandle
from tests.sandbox.conftest import Api

EMPTY_FAILURES = {
    name: []
    for name in (
        # No notFound*: per the spec those are for subscribe/unsubscribe, never bulkUpdate.
        "invalidEmails",
        "invalidUserIds",
        "forgottenEmails",
        "forgottenUserIds",
        "conflictEmails",
        "conflictUserIds",
        "invalidDataEmails",
        "invalidDataUserIds",
    )
}


def bulk(api: Api, users: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    response = api.client.post("/api/users/bulkUpdate", json={"users": users, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def failures(**lists: list[str]) -> dict[str, list[str]]:
    return {**EMPTY_FAILURES, **lists}


def test_success_shape_and_top_level_merge(sandbox: SandboxHandle, api: Api) -> None:
    body = bulk(api, [{"email": "ann@example.com", "dataFields": {"firstName": "Ann", "plan": {"tier": "gold"}}}])
    assert body == {
        "successCount": 1,
        "failCount": 0,
        "createdFields": ["firstName", "plan", "plan.tier"],
        "filteredOutFields": [],
        "failedUpdates": EMPTY_FAILURES,
        "invalidEmails": [],
        "invalidUserIds": [],
    }
    # Fields not mentioned survive; a nested object is REPLACED without mergeNestedObjects.
    bulk(api, [{"email": "ann@example.com", "dataFields": {"plan": {"seats": 3}, "age": 40}}])
    assert sandbox.user(api.project, "ann@example.com")["dataFields"] == {
        "firstName": "Ann",
        "plan": {"seats": 3},
        "age": 40,
    }


def test_merge_nested_objects_keeps_other_keys(sandbox: SandboxHandle, api: Api) -> None:
    bulk(
        api, [{"email": "ann@example.com", "dataFields": {"lf_assignments": {"cmp-1": "A", "deep": {"x": 1, "y": 2}}}}]
    )
    bulk(
        api,
        [
            {
                "email": "ann@example.com",
                "mergeNestedObjects": True,
                "dataFields": {"lf_assignments": {"cmp-2": "B", "deep": {"y": 3}}},
            }
        ],
    )
    assert sandbox.user(api.project, "ann@example.com")["dataFields"]["lf_assignments"] == {
        "cmp-1": "A",
        "cmp-2": "B",
        "deep": {"x": 1, "y": 3},
    }
    # mergeNestedObjects false (explicitly) replaces again.
    bulk(
        api,
        [{"email": "ann@example.com", "mergeNestedObjects": False, "dataFields": {"lf_assignments": {"cmp-3": "C"}}}],
    )
    assert sandbox.user(api.project, "ann@example.com")["dataFields"]["lf_assignments"] == {"cmp-3": "C"}


def test_field_type_is_fixed_by_first_write(sandbox: SandboxHandle, api: Api) -> None:
    bulk(
        api,
        [
            {
                "email": "a@example.com",
                "dataFields": {"score": 1, "ratio": 0.5, "signup": "2024-01-31 10:00:00 +00:00", "tags": ["x"]},
            }
        ],
    )
    body = bulk(
        api,
        [
            {"email": "b@example.com", "dataFields": {"score": "high"}},  # string into long
            {"email": "c@example.com", "dataFields": {"ratio": 2}},  # long into double: fine
            {"email": "d@example.com", "dataFields": {"signup": "not a date"}},  # string into date
            {"userId": "no-such-user", "dataFields": {}},  # email-based project: fails, unlisted
            {"email": "e@example.com", "dataFields": {"score": 2.5}},  # double into long
            {"email": "f@example.com", "dataFields": {"tags": [1, 2]}},  # long array into string
            {"email": "g@example.com", "dataFields": {"score": None}},  # null clears, any type
        ],
    )
    assert body["successCount"] == 2 and body["failCount"] == 5
    assert body["failedUpdates"] == failures(
        invalidDataEmails=["b@example.com", "d@example.com", "e@example.com", "f@example.com"],
    )
    assert body["invalidUserIds"] == ["no-such-user"]  # only the deprecated list names it
    assert sandbox.user(api.project, "b@example.com") is None  # rejected users are not created
    assert sandbox.user(api.project, "c@example.com")["dataFields"] == {"ratio": 2}
    fields = api.client.get("/api/users/getFields").json()["fields"]
    assert {k: fields[k] for k in ("score", "ratio", "signup", "tags", "email")} == {
        "score": "long",
        "ratio": "double",
        "signup": "date",
        "tags": "string",
        "email": "string",
    }


def test_type_mismatch_within_one_request_rejects_the_later_user(sandbox: SandboxHandle, api: Api) -> None:
    body = bulk(
        api, [{"email": "a@example.com", "dataFields": {"n": 1}}, {"email": "b@example.com", "dataFields": {"n": "x"}}]
    )
    assert body["successCount"] == 1
    assert body["failedUpdates"]["invalidDataEmails"] == ["b@example.com"]


def test_invalid_identifiers_are_per_user_failures(sandbox: SandboxHandle, api: Api) -> None:
    body = bulk(
        api,
        [
            {"email": "good@example.com", "dataFields": {"a": 1}},
            {"email": "not-an-email", "dataFields": {"a": 1}},
            {"email": "two@@example.com", "dataFields": {"a": 1}},
            {"userId": "trailing ", "preferUserId": True, "dataFields": {"a": 1}},
            {"email": "ok2@example.com", "dataFields": {"email": "bad-inner"}},
        ],
    )
    assert body["successCount"] == 1 and body["failCount"] == 4
    assert body["failedUpdates"] == failures(
        invalidEmails=["not-an-email", "two@@example.com", "bad-inner"], invalidUserIds=["trailing "]
    )
    # The deprecated top-level lists name every failed user.
    assert body["invalidEmails"] == ["not-an-email", "two@@example.com", "ok2@example.com"]
    assert body["invalidUserIds"] == ["trailing "]


def test_forgotten_users_are_reported_and_never_written(sandbox: SandboxHandle, api: Api) -> None:
    bulk(
        api,
        [{"email": "gone@example.com", "dataFields": {"a": 1}}, {"email": "stay@example.com", "dataFields": {"a": 1}}],
    )
    response = api.client.post("/api/users/forget", json={"email": "gone@example.com"})
    assert response.status_code == 200 and response.json()["code"] == "Success"
    assert api.client.get("/api/users/getByEmail", params={"email": "gone@example.com"}).json() == {}
    sandbox.forget(api.project, "never-existed")  # a userId
    body = bulk(
        api,
        [
            {"email": "gone@example.com", "dataFields": {"a": 2}},
            {"userId": "never-existed", "preferUserId": True, "dataFields": {"a": 2}},
            {"email": "stay@example.com", "dataFields": {"a": 2}},
        ],
    )
    assert body["successCount"] == 1 and body["failCount"] == 2
    assert body["failedUpdates"] == failures(forgottenEmails=["gone@example.com"], forgottenUserIds=["never-existed"])
    assert sandbox.user(api.project, "gone@example.com") is None
    assert sandbox.user(api.project, "never-existed") is None
    assert sandbox.user(api.project, "stay@example.com")["dataFields"] == {"a": 2}


def test_create_new_fields_false_filters_unknown_fields(sandbox: SandboxHandle, api: Api) -> None:
    bulk(api, [{"email": "a@example.com", "dataFields": {"known": 1, "obj": {"k": 1}}}])
    body = bulk(
        api,
        [
            {
                "email": "a@example.com",
                "mergeNestedObjects": True,
                "dataFields": {"known": 2, "brandNew": "x", "obj": {"k": 2, "newKey": 3}},
            }
        ],
        createNewFields=False,
    )
    assert body["successCount"] == 1
    assert body["createdFields"] == []
    assert body["filteredOutFields"] == ["brandNew", "obj.newKey"]
    assert sandbox.user(api.project, "a@example.com")["dataFields"] == {"known": 2, "obj": {"k": 2}}
    # The project default applies when createNewFields is omitted.
    sandbox.configure(api.project, create_new_fields=False)
    assert bulk(api, [{"email": "a@example.com", "dataFields": {"other": 1}}])["filteredOutFields"] == ["other"]


def test_prefer_user_id_and_identity_modes(sandbox: SandboxHandle, api: Api) -> None:
    # Email-based project: an unknown userId is created only with preferUserId.
    body = bulk(
        api, [{"userId": "u1", "dataFields": {"a": 1}}, {"userId": "u2", "preferUserId": True, "dataFields": {"a": 1}}]
    )
    assert body["failCount"] == 1 and body["successCount"] == 1
    assert body["failedUpdates"] == EMPTY_FAILURES and body["invalidUserIds"] == ["u1"]
    u2 = sandbox.user(api.project, "u2")
    assert u2["userId"] == "u2" and u2["email"].endswith("@placeholder.email")
    # Attaching a real email to that user replaces the placeholder.
    bulk(api, [{"email": "u2@example.com", "userId": "u2", "dataFields": {"b": 1}}])
    assert sandbox.user(api.project, "u2@example.com") == {**sandbox.user(api.project, "u2"), "email": "u2@example.com"}
    # userId-based project: userIds are created, unknown emails are not.
    by_id = sandbox.create_project(identity="userId")
    key = sandbox.create_key(by_id)
    with httpx.Client(base_url=sandbox.api_url(by_id), headers=sandbox.headers(key)) as client:
        body = client.post(
            "/api/users/bulkUpdate",
            json={
                "users": [
                    {"userId": "x1", "dataFields": {"a": 1}},
                    {"email": "nobody@example.com", "dataFields": {"a": 1}},
                ]
            },
        ).json()
    assert body["successCount"] == 1 and body["failCount"] == 1
    assert body["failedUpdates"] == EMPTY_FAILURES and body["invalidEmails"] == ["nobody@example.com"]


def test_identity_conflicts(sandbox: SandboxHandle, api: Api) -> None:
    bulk(
        api,
        [{"email": "a@example.com", "userId": "ua", "dataFields": {}}, {"email": "b@example.com", "dataFields": {}}],
    )
    body = bulk(api, [{"email": "b@example.com", "userId": "ua", "dataFields": {"x": 1}}])
    assert body["failCount"] == 1 and body["failedUpdates"] == failures(conflictUserIds=["ua"])
    assert sandbox.user(api.project, "b@example.com")["dataFields"] == {}


def test_bad_bodies(sandbox: SandboxHandle, api: Api) -> None:
    response = api.client.post(
        "/api/users/bulkUpdate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == "BadJsonBody"
    response = api.client.post("/api/users/bulkUpdate", json={"people": []})
    assert response.status_code == 400
    assert response.json() == {
        "msg": "[/api/users/bulkUpdate] Invalid JSON body",
        "code": "BadJsonBody",
        "params": {"obj.users": [{"msg": ["error.path.missing"], "args": []}]},
    }
    response = api.client.post("/api/users/bulkUpdate", json={"users": [{"email": 5, "dataFields": []}]})
    assert response.status_code == 400 and set(response.json()["params"]) == {
        "obj.users[0].email",
        "obj.users[0].dataFields",
    }
    response = api.client.post("/api/users/bulkUpdate", json={"users": [{"dataFields": {"a": 1}}]})
    assert response.status_code == 400 and response.json()["code"] == "BadParams"
    assert sandbox.field_types(api.project) == {}


def test_body_cap(sandbox: SandboxHandle, api: Api) -> None:
    filler = "x" * 1000
    users = [{"email": f"u{i}@example.com", "dataFields": {"f": filler}} for i in range(4100)]
    response = api.client.post("/api/users/bulkUpdate", json={"users": users})
    assert response.status_code == 413
    assert response.json()["code"] == "BatchTooLarge" and response.json()["params"]["maxBytes"] == 4_000_000
    assert sandbox.user(api.project, "u0@example.com") is None
    sandbox.configure(api.project, body_too_large_status=400)
    assert api.client.post("/api/users/bulkUpdate", json={"users": users}).status_code == 400
    # Just under the cap is accepted.
    under = users[:3700]
    assert len(httpx.Request("POST", "http://x", json={"users": under}).content) < 4_000_000
    assert bulk(api, under)["successCount"] == 3700


def test_user_reads(sandbox: SandboxHandle, api: Api) -> None:
    bulk(api, [{"email": "ann@example.com", "userId": "ann-1", "dataFields": {"firstName": "Ann"}}])
    by_email = api.client.get("/api/users/getByEmail", params={"email": "ann@example.com"}).json()
    assert by_email["user"]["email"] == "ann@example.com" and by_email["user"]["userId"] == "ann-1"
    assert by_email["user"]["dataFields"]["firstName"] == "Ann"
    assert "signupDate" in by_email["user"]["dataFields"]
    assert api.client.get("/api/users/byUserId/ann-1").json() == by_email
    assert api.client.get("/api/users/byUserId", params={"userId": "ann-1"}).json() == by_email
    assert api.client.get("/api/users/ann@example.com").json() == by_email
    assert api.client.get("/api/users/getByEmail", params={"email": "who@example.com"}).json() == {}
    response = api.client.get("/api/users/getByEmail")
    assert response.status_code == 400 and response.json()["code"] == "BadParams"


def test_generated_list_members_have_profiles_on_demand(sandbox: SandboxHandle, api: Api) -> None:
    sandbox.create_list(api.project, "big", generate=1000, user_ids=True)
    assert sandbox.user(api.project, "user999@example.com") == {
        **sandbox.user(api.project, "user999@example.com"),
        "userId": "user999",
        "dataFields": {},
    }
    assert sandbox.user(api.project, "user1000@example.com") is None
    # A userId-only update finds the generated member (it exists) without preferUserId.
    body = bulk(api, [{"userId": "user5", "mergeNestedObjects": True, "dataFields": {"lf_assignments": {"c": "A"}}}])
    assert body["successCount"] == 1
    assert sandbox.user(api.project, "user5@example.com")["dataFields"] == {"lf_assignments": {"c": "A"}}
    assert api.client.get("/api/users/byUserId/user5").json()["user"]["email"] == "user5@example.com"


def test_emails_are_stored_lowercase_and_matched_case_insensitively(sandbox: SandboxHandle, api: Api) -> None:
    body = bulk(api, [{"email": "Ann.Lee@Example.COM", "dataFields": {"a": 1}}])
    assert body["successCount"] == 1
    assert sandbox.user(api.project, "ann.lee@example.com")["email"] == "ann.lee@example.com"
    # A second write in another case is the same user.
    bulk(api, [{"email": "ANN.LEE@example.com", "mergeNestedObjects": True, "dataFields": {"b": 2}}])
    assert sandbox.user(api.project, "Ann.Lee@example.com")["dataFields"] == {"a": 1, "b": 2}
    got = api.client.get("/api/users/getByEmail", params={"email": "ANN.LEE@EXAMPLE.COM"}).json()
    assert got["user"]["email"] == "ann.lee@example.com"
    # Lists answer emails lowercase, explicit and generated members alike.
    list_id = sandbox.create_list(
        api.project, "mixed", ["Zed@Example.com"], generate=2, prefix="Gen", domain="Example.ORG"
    )
    lines = api.client.get("/api/lists/getUsers", params={"listId": list_id}).text.split()
    assert lines == ["zed@example.com", "gen0@example.org", "gen1@example.org"]
    # Forgetting in any case forgets the user.
    sandbox.forget(api.project, "ZED@example.com")
    assert bulk(api, [{"email": "zed@EXAMPLE.com", "dataFields": {}}])["failedUpdates"]["forgottenEmails"] == [
        "zed@example.com"
    ]


def test_fields_past_the_project_limit_are_dropped_even_with_create_new_fields(
    sandbox: SandboxHandle, api: Api
) -> None:
    sandbox.configure(api.project, field_limit=2)
    bulk(api, [{"email": "a@example.com", "dataFields": {"plan": "pro", "visits": 1}}])
    body = bulk(
        api,
        [
            {
                "email": "a@example.com",
                "mergeNestedObjects": True,
                "dataFields": {"plan": "free", "lf_assignments": {"c1": "v1"}},
            }
        ],
        createNewFields=True,
    )
    # Iterable counts the user as a success and lists what it dropped.
    assert (body["successCount"], body["failCount"]) == (1, 0)
    assert body["filteredOutFields"] == ["lf_assignments"] and body["createdFields"] == []
    assert sandbox.user(api.project, "a@example.com")["dataFields"] == {"plan": "free", "visits": 1}
