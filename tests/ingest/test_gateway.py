"""The webhook gateway over real HTTP, real Kafka and real MongoDB."""

from __future__ import annotations

import base64
import json

import pytest

from liftstack_ingest.normalise import event_id
from liftstack_shared.messages import EventType
from liftstack_shared.topics import ENGAGEMENT_EVENTS
from tests.ingest.conftest import eventually, summary_of, window
from tests.ingest.payloads import EMAIL, EXAMPLES, example

pytestmark = pytest.mark.integration


async def test_documented_examples_are_published_and_read_back_normalised(http, make_connection, event_log):
    conn = make_connection()
    for name in EXAMPLES:
        response = await http.post(conn.path, json=example(name), headers=conn.auth())
        assert response.status_code == 200, (name, response.text)
        assert response.json()["status"] == "published"
        assert response.json()["event_id"] == event_id(conn.id, example(name))

    stored = await event_log.wait_for(conn.id, len(EXAMPLES))
    assert len(stored) == len(EXAMPLES)
    by_name = {event.iterable_event_name: (record, event) for record, event in stored}
    assert set(by_name) == set(EXAMPLES)

    record, click = by_name["emailClick"]
    assert click.event_type is EventType.CLICK
    assert click.workspace_id == conn.workspace_id
    assert click.email == EMAIL and click.campaign_id == 59667 and click.template_id == 93849
    assert click.message_id == "d0aa7801f91f4824997a631f3ed583c3"
    assert click.url == "https://www.iterable.com"
    assert click.occurred_at.isoformat() == "2016-12-02T18:51:45+00:00"
    assert click.raw == example("emailClick")
    assert record.key == f"{conn.id}:{EMAIL}".encode()
    assert by_name["emailUnSubscribe"][1].event_type is EventType.UNSUBSCRIBE
    assert by_name["hostedUnsubscribeClick"][1].event_type is EventType.HOSTED_UNSUBSCRIBE_CLICK
    assert by_name["customEvent"][1].user_id == "user-43"
    assert {event.event_type for _, event in stored} >= {
        EventType.SEND,
        EventType.OPEN,
        EventType.BOUNCE,
        EventType.COMPLAINT,
        EventType.SUBSCRIBE,
        EventType.CONVERSION,
    }


async def test_one_recipients_events_share_a_partition_in_order(http, make_connection, event_log):
    conn = make_connection()
    names = ["emailSend", "emailOpen", "emailClick", "emailUnSubscribe"]
    for i, name in enumerate(names):
        body = example(name, email="order@example.com")
        body["dataFields"]["createdAt"] = f"2024-05-01 10:00:0{i} +00:00"
        assert (await http.post(conn.path, json=body, headers=conn.auth())).status_code == 200
    stored = await event_log.wait_for(conn.id, len(names))
    assert len({record.partition for record, _ in stored}) == 1
    ordered = sorted(stored, key=lambda pair: pair[0].offset)
    assert [event.iterable_event_name for _, event in ordered] == names


@pytest.mark.parametrize(
    "headers_of",
    [
        lambda c: {"Authorization": f"OAuth2 {c.secret}"},
        lambda c: {"Authorization": f"Basic {c.secret}"},
        lambda c: {"Authorization": c.secret},
        lambda c: {"X-Liftstack-Webhook-Secret": c.secret},
    ],
)
async def test_secret_forms_are_accepted(http, make_connection, headers_of):
    conn = make_connection()
    response = await http.post(conn.path, json=example("emailOpen"), headers=headers_of(conn))
    assert response.status_code == 200, response.text


def rfc7617(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_journey_webhook_rfc7617_basic_conversion_is_published(http, make_connection, event_log):
    """Defect: a journey webhook's Basic auth is base64(user:password); it was
    compared raw, so a connection with a secret answered 403 to every conversion."""
    conn = make_connection()
    response = await http.post(conn.path, json=example("purchase"), headers=rfc7617("iterable", conn.secret))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "published"
    stored = await event_log.wait_for(conn.id, 1)
    assert [event.event_type for _, event in stored] == [EventType.CONVERSION]
    wrong = await http.post(conn.path, json=example("purchase"), headers=rfc7617("iterable", "not-it"))
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "bad_secret"


async def test_a_connection_names_its_own_secret_header(http, make_connection):
    conn = make_connection(webhook_header="x-acme-hook")
    ok = await http.post(conn.path, json=example("emailOpen"), headers={"X-Acme-Hook": conn.secret})
    assert ok.status_code == 200, ok.text
    other = make_connection()  # a connection that named no header ignores it
    response = await http.post(other.path, json=example("emailOpen"), headers={"X-Acme-Hook": other.secret})
    assert response.status_code == 403 and response.json()["error"]["code"] == "missing_secret"


async def test_oauth2_client_credentials_answer_a_documented_403(http, make_connection):
    conn = make_connection()
    foreign = await http.post(
        conn.path, json=example("purchase"), headers={"Authorization": "Bearer access-token-from-elsewhere"}
    )
    assert foreign.status_code == 403
    error = foreign.json()["error"]
    assert error["code"] == "oauth2_client_credentials_unsupported"
    assert "Basic" in error["message"] and "access-token-from-elsewhere" not in foreign.text
    token_request = await http.post(
        conn.path,
        content=b"grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded", **rfc7617("client", conn.secret)},
    )
    assert token_request.status_code == 403
    assert token_request.json()["error"]["code"] == "oauth2_client_credentials_unsupported"
    assert conn.secret not in token_request.text


async def test_sandbox_sends_reach_ingest_with_iterable_auth(http, make_connection, event_log, sandbox, gateway_url):
    """The sandbox posts as Iterable does: engagement events as system webhooks (the
    Basic token bare), the conversion as a journey webhook (RFC 7617)."""
    conn = make_connection()
    project = sandbox.create_project()
    list_id = sandbox.create_list(project, "l", ["ann@example.com"])
    template_id = sandbox.create_template(project, name="t", subject="s", html="<p>x</p>")
    summary = await sandbox.send(
        project,
        templateId=template_id,
        listId=list_id,
        campaignId=11,
        webhook={"url": gateway_url + conn.path, "authType": "Basic", "token": conn.secret},
        engagement={"default": {"open": 1.0, "conversion": 1.0}},
        concurrency=1,
    )
    assert summary["deliveries"]["failed"] == 0, summary
    stored = await event_log.wait_for(conn.id, 3)
    assert sorted(e.event_type.value for _, e in stored) == sorted(
        [EventType.SEND.value, EventType.OPEN.value, EventType.CONVERSION.value]
    )


async def test_wrong_or_missing_secret_is_403_counted_and_not_published(http, make_connection, event_log, user_token):
    conn = make_connection()
    wrong = await http.post(conn.path, json=example("emailOpen"), headers={"Authorization": "OAuth2 nope"})
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "bad_secret"
    missing = await http.post(conn.path, json=example("emailOpen"))
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "missing_secret"
    assert "nope" not in wrong.text

    async def counted():
        summary = await summary_of(http, conn, user_token(conn.workspace_id))
        return summary if window(summary, "1h")["totals"]["rejected"] == 2 else None

    summary = await eventually(counted)
    assert summary, "rejections were not counted"
    assert window(summary, "1h")["rejected_by_reason"] == {"bad_secret": 1, "missing_secret": 1}
    assert window(summary, "1h")["totals"]["published"] == 0
    assert summary["status"] == "none_processed"
    assert event_log.for_connection(conn.id) == []

    metrics = (await http.get("/metrics")).text
    assert 'liftstack_ingest_webhooks_rejected_total{reason="bad_secret"}' in metrics


async def test_two_secrets_during_rotation(http, make_connection):
    conn = make_connection(secrets_=["new-secret-value", "old-secret-value"])
    for secret in ("new-secret-value", "old-secret-value"):
        response = await http.post(
            conn.path, json=example("emailOpen", email=f"{secret}@x.io"), headers={"Authorization": f"OAuth2 {secret}"}
        )
        assert response.status_code == 200
    response = await http.post(
        conn.path, json=example("emailOpen"), headers={"Authorization": "OAuth2 older-secret-value"}
    )
    assert response.status_code == 403


async def test_no_secret_configured_accepts_unauthenticated(http, make_connection):
    conn = make_connection(with_secret=False)
    assert (await http.post(conn.path, json=example("emailOpen"))).status_code == 200


async def test_unknown_or_deleted_connection_is_404(http, make_connection, connections):
    response = await http.post("/webhooks/iterable/no-such-token-0123456789", json=example("emailOpen"))
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    for malformed in ("..", "short", "a%2E%2E" + "b" * 20):
        response = await http.post(f"/webhooks/iterable/{malformed}", json=example("emailOpen"))
        assert response.status_code == 404
    conn = make_connection()
    connections.remove(conn.id)
    response = await http.post(conn.path, json=example("emailOpen"), headers=conn.auth())
    assert response.status_code == 404


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{not json", "invalid_json"),
        (b"[]", "invalid_payload"),
        (json.dumps({"email": "a@example.com", "dataFields": {}}).encode(), "missing_event_name"),
        (json.dumps({"eventName": "emailOpen", "dataFields": {"campaignId": 1}}).encode(), "missing_user"),
        # The report of issue 12: a valid JSON number no consumer can store.
        (
            json.dumps(
                {"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"campaignId": 10**40}}
            ).encode(),
            "number_out_of_range",
        ),
        (
            json.dumps(
                {"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"campaignId": "9" * 5000}}
            ).encode(),
            "invalid_campaign_id",
        ),
        (b'{"email": "a@example.com", "eventName": "emailOpen", "x": ' + b"[" * 500 + b"]" * 500 + b"}", "too_deep"),
        (b'{"email": "a@example.com", "eventName": "emailOpen", "x": ' + b"[" * 350 + b"]" * 350 + b"}", "too_deep"),
        (b'{"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"\\ud800": 1}}', "invalid_key"),
        (b'{"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"x": "\\u0000"}}', "invalid_string"),
        (b'{"email": "a@example.com", "eventName": "emailOpen", "dataFields": {"x": 1e400}}', "number_out_of_range"),
        (b'{"email": "a@example.com", "email": "b@example.com", "eventName": "emailOpen"}', "duplicate_key"),
        (b"\xff\xfe{}", "invalid_encoding"),
        (b"", "invalid_json"),
    ],
)
async def test_bad_input_is_400_and_publishes_nothing(http, make_connection, event_log, body, code):
    conn = make_connection()
    response = await http.post(conn.path, content=body, headers={**conn.auth(), "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert await event_log.wait_for(conn.id, 1, timeout_s=1.0) == []


# A form-encoded POST is an OAuth2 token request (RFC 6749 4.4.2), answered with its own
# 403 whatever its auth: see test_oauth2_client_credentials_answer_a_documented_403.
@pytest.mark.parametrize(
    "content_type", ["text/html", "text/plain", "multipart/form-data; boundary=x", "application/xml"]
)
async def test_non_json_content_types_are_415_and_publish_nothing(http, make_connection, event_log, content_type):
    conn = make_connection()
    body = json.dumps(example("emailOpen")).encode()
    response = await http.post(conn.path, content=body, headers={**conn.auth(), "Content-Type": content_type})
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert await event_log.wait_for(conn.id, 1, timeout_s=1.0) == []


@pytest.mark.parametrize("content_type", [None, "application/json; charset=UTF-8", "application/vnd.iterable+json"])
async def test_json_content_types_or_none_are_accepted(http, make_connection, content_type):
    conn = make_connection()
    headers = {**conn.auth(), **({"Content-Type": content_type} if content_type else {})}
    response = await http.post(conn.path, content=json.dumps(example("emailOpen")).encode(), headers=headers)
    assert response.status_code == 200, response.text


async def test_oversized_body_is_413(http, make_connection, ingest_settings, event_log):
    conn = make_connection()
    body = example("emailOpen")
    body["dataFields"]["padding"] = "x" * (ingest_settings.webhook_max_body_bytes + 1)
    response = await http.post(conn.path, json=body, headers=conn.auth())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"

    async def chunks():
        yield b'{"eventName": "emailOpen", "email": "a@example.com", "x": "'
        for _ in range(ingest_settings.webhook_max_body_bytes // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    # Without a Content-Length (chunked), the limit holds while streaming.
    response = await http.post(conn.path, content=chunks(), headers=conn.auth())
    assert response.status_code == 413
    assert await event_log.wait_for(conn.id, 1, timeout_s=1.0) == []


async def test_types_the_connection_does_not_process_are_filtered(http, make_connection, event_log, user_token):
    conn = make_connection(event_types=["click"])
    sent = await http.post(conn.path, json=example("emailSend"), headers=conn.auth())
    assert sent.status_code == 200 and sent.json()["status"] == "filtered"
    click = await http.post(conn.path, json=example("emailClick"), headers=conn.auth())
    assert click.json()["status"] == "published"
    stored = await event_log.wait_for(conn.id, 1)
    assert [event.iterable_event_name for _, event in stored] == ["emailClick"]

    async def counted():
        summary = await summary_of(http, conn, user_token(conn.workspace_id))
        return summary if window(summary, "1h")["totals"]["received"] == 2 else None

    summary = await eventually(counted)
    assert summary
    by_name = window(summary, "24h")["by_event_name"]
    assert by_name["emailSend"]["filtered"] == 1 and by_name["emailSend"]["published"] == 0
    assert by_name["emailClick"]["published"] == 1
    assert summary["processed_event_types"] == ["click"]


async def test_unknown_event_names_are_accepted_counted_not_published(http, make_connection, event_log, user_token):
    conn = make_connection()
    body = {"email": "a@example.com", "eventName": "pushSend", "dataFields": {"campaignId": 1}}
    response = await http.post(conn.path, json=body, headers=conn.auth())
    assert response.status_code == 200 and response.json()["status"] == "unknown"
    assert await event_log.wait_for(conn.id, 1, timeout_s=1.0) == []

    async def counted():
        summary = await summary_of(http, conn, user_token(conn.workspace_id))
        return summary if window(summary, "1h")["totals"]["unknown"] == 1 else None

    summary = await eventually(counted)
    assert summary and window(summary, "1h")["by_event_name"]["pushSend"]["unknown"] == 1
    assert summary["status"] == "none_processed"


async def test_iterable_retries_are_stored_but_counted_once(http, make_connection, event_log, user_token):
    conn = make_connection()
    body = example("emailOpen")
    ids = set()
    for _ in range(3):
        response = await http.post(conn.path, json=body, headers=conn.auth())
        assert response.status_code == 200
        ids.add(response.json()["event_id"])
    assert len(ids) == 1
    # A filtered retry dedupes the same way.
    other = make_connection(event_types=["click"])
    for _ in range(2):
        await http.post(other.path, json=body, headers=other.auth())

    stored = await event_log.wait_for(conn.id, 3)
    assert len(stored) == 3 and {event.event_id for _, event in stored} == ids

    async def counted():
        summary = await summary_of(http, conn, user_token(conn.workspace_id))
        events = await http.get(f"/v1/connections/{conn.id}/events", headers=user_token(conn.workspace_id))
        return (summary, events.json()) if window(summary, "1h")["totals"]["published"] >= 1 else None

    result = await eventually(counted)
    assert result
    # Give the consumer time to (wrongly) count the later copies, then check.
    await eventually(lambda: None, timeout_s=2.0)
    summary = await summary_of(http, conn, user_token(conn.workspace_id))
    for name in ("1h", "24h", "7d"):
        assert window(summary, name)["totals"] == {
            "received": 1,
            "published": 1,
            "filtered": 0,
            "unknown": 0,
            "rejected": 0,
        }
    listing = (await http.get(f"/v1/connections/{conn.id}/events", headers=user_token(conn.workspace_id))).json()
    assert [item["event_id"] for item in listing["items"]] == list(ids)
    assert listing["items"][0]["email"] == EMAIL

    other_summary = await eventually(lambda: _filtered_count(http, other, user_token), timeout_s=30)
    assert other_summary == 1


async def _filtered_count(http, conn, user_token):
    summary = await summary_of(http, conn, user_token(conn.workspace_id))
    n = window(summary, "1h")["totals"]["filtered"]
    return n or None


async def test_health_metrics_and_openapi(http, make_connection):
    health = await http.get("/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["checks"] == {"kafka": "ok", "mongo": "ok"}
    doc = (await http.get("/openapi.json")).json()
    assert "/webhooks/iterable/{token}" in doc["paths"]
    assert "/v1/connections/{connection_id}/events/summary" in doc["paths"]
    conn = make_connection()
    await http.post(conn.path, json=example("emailOpen"), headers=conn.auth())
    metrics = (await http.get("/metrics")).text
    assert 'liftstack_ingest_webhooks_published_total{event_type="open"}' in metrics
    assert "liftstack_ingest_publish_seconds_bucket" in metrics


def test_partitioning_constant_matches_topic_catalogue():
    assert ENGAGEMENT_EVENTS.key == "connection_id:recipient"
