"""Contract tests: every client method over real HTTP against the Iterable sandbox
(services/iterable_sandbox, fixture `sandbox` from tests/fixtures/sandbox.py)."""

from __future__ import annotations

import httpx
import pytest

from liftstack_shared.iterable import (
    MAX_BODY_BYTES,
    BulkUpdateUser,
    EmailTemplateUpdate,
    EmailTemplateUpsert,
    FailureReason,
    IterableAuthError,
    IterableBadRequest,
    IterableClient,
    IterableNotFound,
    ListType,
    NoRateLimits,
    TemplateType,
    pack_users,
)
from liftstack_shared.iterable.bulk import bulk_update_body

from .sandbox_support import sandbox_client

R = FailureReason


@pytest.fixture
def project(sandbox):
    # Functional tests: the server's limits off (tests/test_sandbox_resilience covers them).
    return sandbox.create_project(region="US", rate_limits=False)


@pytest.fixture
def key(sandbox, project, watched_keys) -> str:
    value = sandbox.create_key(project)
    watched_keys.add(value)
    return value


# --- users/bulkUpdate ----------------------------------------------------------------


async def test_bulk_update_writes_and_merges_nested_objects(sandbox, project, key) -> None:
    async with sandbox_client(sandbox, key) as client:
        first = await client.bulk_update(
            [
                BulkUpdateUser(
                    email="ann@example.com",
                    dataFields={"lf_assignments": {"cmp-1": "A"}, "plan": "pro"},
                    mergeNestedObjects=True,
                ),
            ]
        )
        second = await client.bulk_update(
            [
                BulkUpdateUser(
                    email="ann@example.com", dataFields={"lf_assignments": {"cmp-2": "B"}}, mergeNestedObjects=True
                ),
            ]
        )
    assert first.succeeded == ["ann@example.com"] and first.failed == {}
    assert "plan" in first.createdFields
    assert second.successCount == 1
    profile = sandbox.user(project, "ann@example.com")
    assert profile["dataFields"] == {"lf_assignments": {"cmp-1": "A", "cmp-2": "B"}, "plan": "pro"}


async def test_bulk_update_partial_failures_per_user(sandbox, project, key) -> None:
    sandbox.put_users(
        project,
        [
            {"email": "typed@example.com", "dataFields": {"age": 41}},
            {"email": "gone@example.com", "dataFields": {"x": 1}},
        ],
    )
    sandbox.forget(project, "gone@example.com")
    users = [
        BulkUpdateUser(email="ok@example.com", dataFields={"plan": "free"}),
        BulkUpdateUser(email="not-an-email", dataFields={"plan": "free"}),
        BulkUpdateUser(email="gone@example.com", dataFields={"plan": "free"}),
        BulkUpdateUser(userId="nobody", dataFields={"plan": "free"}),  # email project
        BulkUpdateUser(userId="created", preferUserId=True, dataFields={"plan": "free"}),
        BulkUpdateUser(email="mistyped@example.com", dataFields={"age": "forty"}),
        BulkUpdateUser(userId="trailing ", dataFields={"plan": "free"}),
        BulkUpdateUser(userId="inner", preferUserId=True, dataFields={"email": "broken"}),
    ]
    async with sandbox_client(sandbox, key) as client:
        result = await client.bulk_update(users)
    assert result.failed == {
        "not-an-email": R.INVALID,
        "gone@example.com": R.FORGOTTEN,
        # Iterable names an unknown userId only in the deprecated invalidUserIds.
        "nobody": R.INVALID,
        "mistyped@example.com": R.INVALID_DATA,
        "trailing ": R.INVALID,
        "inner": R.INVALID,  # attributed through dataFields.email
    }
    assert result.succeeded == ["ok@example.com", "created"]
    assert (result.successCount, result.failCount) == (2, 6)
    assert result.unmatched == {} and result.unattributed_fail_count == 0
    assert result.retryable() == []  # nothing bulkUpdate reports is worth resubmitting
    assert [u.identifier for u in result.retryable(list(R))] == [
        "not-an-email",
        "nobody",
        "mistyped@example.com",
        "trailing ",
        "inner",
    ]
    assert sandbox.user(project, "ok@example.com")["dataFields"] == {"plan": "free"}
    assert sandbox.user(project, "created")["dataFields"] == {"plan": "free"}


async def test_bulk_update_not_found_emails_in_a_user_id_project(sandbox, watched_keys) -> None:
    project = sandbox.create_project(identity="userId", rate_limits=False)
    key = sandbox.create_key(project)
    watched_keys.add(key)
    async with sandbox_client(sandbox, key) as client:
        result = await client.bulk_update(
            [BulkUpdateUser(email="new@example.com"), BulkUpdateUser(userId="u1", dataFields={"a": 1})]
        )
    # Never notFoundEmails (that is for subscribe/unsubscribe): the deprecated list.
    assert result.failed == {"new@example.com": R.INVALID}
    assert result.succeeded == ["u1"]


async def test_create_new_fields_false_filters_unknown_fields(sandbox, project, key) -> None:
    sandbox.put_users(project, [{"email": "a@example.com", "dataFields": {"known": 1}}])
    async with sandbox_client(sandbox, key) as client:
        result = await client.bulk_update(
            [BulkUpdateUser(email="a@example.com", dataFields={"known": 2, "unknown": 3})],
            create_new_fields=False,
        )
    assert result.filteredOutFields == ["unknown"] and result.createdFields == []
    assert sandbox.user(project, "a@example.com")["dataFields"] == {"known": 2}
    # Iterable counts the user as a success; a dropped field means it is not one.
    assert result.successCount == 1
    assert result.failed == {"a@example.com": R.FIELD_DROPPED} and result.succeeded == []


async def test_dropped_lf_assignments_fails_only_users_that_carried_it(sandbox, project, key) -> None:
    sandbox.put_users(
        project,
        [
            {"email": "a@example.com", "dataFields": {"plan": "pro"}},
            {"email": "b@example.com", "dataFields": {"plan": "pro"}},
        ],
    )
    async with sandbox_client(sandbox, key) as client:
        result = await client.bulk_update(
            [
                BulkUpdateUser(
                    email="a@example.com", dataFields={"lf_assignments": {"c1": "v1"}}, mergeNestedObjects=True
                ),
                BulkUpdateUser(email="b@example.com", dataFields={"plan": "free"}),
            ],
            create_new_fields=False,
        )
    assert result.filteredOutFields == ["lf_assignments"]
    assert result.failed == {"a@example.com": R.FIELD_DROPPED}
    assert result.succeeded == ["b@example.com"] and result.unattributed_fail_count == 0
    assert "lf_assignments" not in sandbox.user(project, "a@example.com")["dataFields"]


async def test_packed_batches_fit_the_sandbox_body_cap(sandbox, project, key) -> None:
    blob = "x" * 20_000
    users = [BulkUpdateUser(email=f"big{i}@example.com", dataFields={"blob": blob}) for i in range(300)]  # ~6 MB in all
    batches = list(pack_users(users))
    assert len(batches) == 2
    assert all(len(bulk_update_body(b, True)) <= MAX_BODY_BYTES for b in batches)
    async with sandbox_client(sandbox, key) as client:
        results = [await client.bulk_update(batch) for batch in batches]
    assert sum(r.successCount for r in results) == 300
    assert sandbox.stats(project)["users/bulkUpdate"] == {200: 2}


async def test_region_eu(sandbox, watched_keys) -> None:
    project = sandbox.create_project(region="EU", rate_limits=False)
    key = sandbox.create_key(project)
    watched_keys.add(key)
    async with sandbox_client(sandbox, key, "EU") as client:
        assert client.base_url.endswith("/eu")
        result = await client.bulk_update([BulkUpdateUser(email="eu@example.com")])
    assert result.succeeded == ["eu@example.com"]
    # The fixture's own addressing (`api_url`) works too, via `base_url`.
    async with IterableClient(key, base_url=sandbox.api_url(project), rate_limits=NoRateLimits()) as client:
        assert await client.get_lists() == []


# --- users/getFields -------------------------------------------------------------------


async def test_get_user_fields(sandbox, project, key) -> None:
    sandbox.put_users(project, [{"email": "a@example.com", "dataFields": {"plan": "pro", "score": 1.5}}])
    async with sandbox_client(sandbox, key) as client:
        fields = (await client.get_user_fields()).fields
    assert fields["plan"] == "string" and fields["score"] == "double"


async def test_get_user_by_email_and_user_id(sandbox, project, key) -> None:
    sandbox.put_users(project, [{"email": "a@example.com", "dataFields": {"lf_assignments": {"spring": "B"}}}])
    async with sandbox_client(sandbox, key) as client:
        user = await client.get_user(email="a@example.com")
        assert user is not None and user["dataFields"]["lf_assignments"] == {"spring": "B"}
        assert await client.get_user(email="nobody@example.com") is None
        assert await client.get_user(user_id="no-such-id") is None
        with pytest.raises(ValueError):
            await client.get_user()


# --- lists -----------------------------------------------------------------------------


async def test_get_lists(sandbox, project, key) -> None:
    standard = sandbox.create_list(project, "Newsletter", ["a@example.com"], description="weekly")
    dynamic = sandbox.create_list(project, "Engaged", generate=10, dynamic=True)
    async with sandbox_client(sandbox, key) as client:
        lists = await client.get_lists()
    by_id = {x.id: x for x in lists}
    assert by_id[standard].listType == ListType.STANDARD
    assert by_id[standard].name == "Newsletter" and by_id[standard].description == "weekly"
    assert by_id[dynamic].listType == ListType.DYNAMIC
    assert all(isinstance(x.createdAt, int) for x in lists)


async def test_iter_list_users_streams_a_large_list(sandbox, project, key) -> None:
    list_id = sandbox.create_list(project, "big", generate=300_000)
    async with sandbox_client(sandbox, key) as client:
        count, first, last = 0, None, None
        async for identifier in client.iter_list_users(list_id):
            first = first or identifier
            last = identifier
            count += 1
        size = await client.get_list_size(list_id)
    assert (count, size) == (300_000, 300_000)
    assert first == "user0@example.com" and last == "user299999@example.com"


async def test_iter_list_users_prefer_user_id(sandbox, project, key) -> None:
    list_id = sandbox.create_list(project, "ids", generate=3, user_ids=True, prefix="m")
    async with sandbox_client(sandbox, key) as client:
        by_user_id = [i async for i in client.iter_list_users(list_id, prefer_user_id=True)]
        by_email = [i async for i in client.iter_list_users(list_id)]
    assert by_user_id == ["m0", "m1", "m2"]
    assert by_email == ["m0@example.com", "m1@example.com", "m2@example.com"]


async def test_unknown_list_is_a_bad_request(sandbox, project, key) -> None:
    async with sandbox_client(sandbox, key) as client:
        with pytest.raises(IterableBadRequest, match="does not exist"):
            await client.get_list_size(999_999)
        with pytest.raises(IterableBadRequest):
            [i async for i in client.iter_list_users(999_999)]


# --- templates -------------------------------------------------------------------------


async def test_template_upsert_lookup_update_get(sandbox, project, key) -> None:
    async with sandbox_client(sandbox, key) as client:
        upserted = await client.upsert_email_template(
            EmailTemplateUpsert(
                clientTemplateId="lf-cmp-1",
                name="lf cmp 1",
                subject="v1",
                html="<p>{{a}}</p>",
                fromName="Acme",
                fromEmail="news@acme.example.com",
            )
        )
        (entry,) = await client.get_templates_by_client_template_id("lf-cmp-1")
        assert upserted.ids_in_msg() == [entry.templateId]
        updated = await client.update_email_template(EmailTemplateUpdate(templateId=entry.templateId, subject="v2"))
        template = await client.get_email_template(entry.templateId)
        again = await client.upsert_email_template(
            EmailTemplateUpsert(clientTemplateId="lf-cmp-1", preheaderText="pre")
        )
        assert await client.get_templates_by_client_template_id("nothing-here") == []
    assert updated.code == "Success" and str(entry.templateId) in updated.msg
    assert (template.subject, template.html, template.clientTemplateId) == ("v2", "<p>{{a}}</p>", "lf-cmp-1")
    assert template.metadata is not None and template.metadata.templateId == entry.templateId
    assert again.ids_in_msg() == [entry.templateId]  # matched, not created
    assert sandbox.template(project, entry.templateId)["preheaderText"] == "pre"


async def test_existing_template_is_found_with_locale_strings(sandbox, project, key) -> None:
    """Defect: locales were modelled as objects, so the first publish of a campaign
    whose template already existed raised against real Iterable (locale strings)."""
    existing = sandbox.create_template(project, clientTemplateId="lf-old", name="old", locale="fr")
    async with sandbox_client(sandbox, key) as client:
        (entry,) = await client.get_templates_by_client_template_id("lf-old")
    assert entry.templateId == existing and entry.locales == ["fr"]


@pytest.mark.parametrize("answer", ["empty", "404", "400"])
async def test_unknown_client_template_id_means_none(sandbox, project, key, answer) -> None:
    """getByClientTemplateId for an unknown id: 200 [], 404 and a not-found 400 all
    mean "no template" (the spec lists 200/400/401)."""
    sandbox.configure(project, unknown_client_template_id=answer)
    async with sandbox_client(sandbox, key) as client:
        assert await client.get_templates_by_client_template_id("never-created") == []
    assert sandbox.stats(project)["templates/getByClientTemplateId"] == {
        {"empty": 200, "404": 404, "400": 400}[answer]: 1
    }


async def test_other_400s_of_get_by_client_template_id_still_raise(sandbox, project, key) -> None:
    async with sandbox_client(sandbox, key) as client:
        with pytest.raises(IterableBadRequest, match="Missing required parameter"):
            await client.get_templates_by_client_template_id("")


async def test_get_templates_pages(sandbox, project, key) -> None:
    ids = [sandbox.create_template(project, name=f"t{i}", clientTemplateId=f"c{i}") for i in range(5)]
    async with sandbox_client(sandbox, key) as client:
        page1 = await client.get_templates(page=1, page_size=2)
        page3 = await client.get_templates(page=3, page_size=2)
        base = await client.get_templates(TemplateType.BASE, page_size=1000)
        blast = await client.get_templates(TemplateType.BLAST)
    assert [t.templateId for t in page1.templates] == ids[:2] and page1.nextPageUrl
    assert [t.templateId for t in page3.templates] == ids[4:] and page3.previousPageUrl
    assert page3.nextPageUrl is None
    assert len(base.templates) == 5 and blast.templates == []
    assert page1.templates[0].name == "t0" and page1.templates[0].clientTemplateId == "c0"


async def test_template_dates_as_epoch_millis(sandbox, project, key) -> None:
    sandbox.configure(project, template_dates="epoch_ms")
    sandbox.create_template(project, name="t")
    async with sandbox_client(sandbox, key) as client:
        (summary,) = (await client.get_templates()).templates
    assert isinstance(summary.createdAt, int)


async def test_template_errors(sandbox, project, key) -> None:
    template_id = sandbox.create_template(project, name="t", locale="en")
    async with sandbox_client(sandbox, key) as client:
        with pytest.raises(IterableBadRequest, match="does not exist"):
            await client.get_email_template(123_456_789)
        with pytest.raises(IterableNotFound, match="locale"):
            await client.get_email_template(template_id, locale="fr")
        with pytest.raises(IterableBadRequest):
            await client.update_email_template(EmailTemplateUpdate(templateId=123_456_789))


# --- webhooks --------------------------------------------------------------------------


async def test_get_webhooks(sandbox, project, key) -> None:
    sandbox.add_webhook(project, "https://hooks.example.com/iterable", authType="Basic", username="u", password="p")
    async with sandbox_client(sandbox, key) as client:
        (hook,) = await client.get_webhooks()
    assert hook.endpoint == "https://hooks.example.com/iterable"
    assert hook.authType == "Basic" and hook.enabled is True


# --- auth ------------------------------------------------------------------------------


class CountingClient:
    """Counts requests on the wire, to prove auth failures are never retried."""

    def __init__(self) -> None:
        self.count = 0

    async def hook(self, request: httpx.Request) -> None:
        self.count += 1


async def test_unknown_key_is_401_not_retried(sandbox, project, watched_keys) -> None:
    bogus = "00000000000000000000000000000000"
    watched_keys.add(bogus)
    counter = CountingClient()
    async with sandbox_client(sandbox, bogus, event_hooks={"request": [counter.hook]}) as client:
        with pytest.raises(IterableAuthError) as info:
            await client.get_lists()
    assert info.value.status == 401 and info.value.message == "Invalid API key"
    assert counter.count == 1


async def test_key_of_the_other_region_is_401(sandbox, watched_keys) -> None:
    eu = sandbox.create_project(region="EU", rate_limits=False)
    key = sandbox.create_key(eu)
    watched_keys.add(key)
    async with sandbox_client(sandbox, key, "US") as client:
        with pytest.raises(IterableAuthError, match="Invalid API key"):
            await client.get_webhooks()


async def test_disabled_key_is_401(sandbox, project, key) -> None:
    sandbox.disable_key(project, key)
    counter = CountingClient()
    async with sandbox_client(sandbox, key, event_hooks={"request": [counter.hook]}) as client:
        with pytest.raises(IterableAuthError, match="Disabled API key or insufficient privileges"):
            await client.bulk_update([BulkUpdateUser(email="a@example.com")])
    assert counter.count == 1


async def test_read_only_key_reads_but_cannot_write(sandbox, project, watched_keys) -> None:
    key = sandbox.create_key(project, type="read_only")
    watched_keys.add(key)
    async with sandbox_client(sandbox, key) as client:
        assert await client.get_lists() == []
        await client.get_user_fields()
        await client.get_templates()
        with pytest.raises(IterableAuthError, match="insufficient privileges"):
            await client.bulk_update([BulkUpdateUser(email="a@example.com")])
        with pytest.raises(IterableAuthError, match="insufficient privileges"):
            await client.upsert_email_template(EmailTemplateUpsert(clientTemplateId="x"))


async def test_client_side_key_is_401(sandbox, project, watched_keys) -> None:
    key = sandbox.create_key(project, type="js")
    watched_keys.add(key)
    async with sandbox_client(sandbox, key) as client:
        with pytest.raises(IterableAuthError):
            await client.get_lists()
