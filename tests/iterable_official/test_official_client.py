"""The judge: Iterable's own TypeScript client (`@iterable/api`, pinned in
package-lock.json next to this file) against the sandbox, over real HTTP.

Iterable's client validates every answer with zod schemas that its integration tests
run against the live API, so a sandbox answer it rejects is an answer real Iterable
would not give, and a Python client built against that answer would break on real
Iterable. Every endpoint liftstack calls (see liftstack_shared/iterable/client.py)
is exercised, plus the error paths the project relies on: a bad key's 401, a rate
limit's 429, a bad templateId's 400, and an unknown clientTemplateId.

Needs Node (the machine's) and `npm ci` in this directory (deploy/local/bootstrap).
No network: the client is only ever given the sandbox's base URL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxHandle

HERE = Path(__file__).parent
JUDGE = HERE / "judge.mjs"
CLIENT_PACKAGE = HERE / "node_modules" / "@iterable" / "api" / "package.json"
PINNED_VERSION = json.loads((HERE / "package.json").read_text())["dependencies"]["@iterable/api"]


def run_judge(base_url: str, keys: dict[str, str], steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: the official-client judge needs the machine's Node", pytrace=False)
    if not CLIENT_PACKAGE.exists():
        pytest.fail(
            f"@iterable/api is not installed in {HERE}: run deploy/local/bootstrap (npm ci there)",
            pytrace=False,
        )
    installed = json.loads(CLIENT_PACKAGE.read_text())["version"]
    assert installed == PINNED_VERSION, f"installed @iterable/api {installed}, pinned {PINNED_VERSION}: npm ci"
    plan = {"baseUrl": base_url, "keys": keys, "steps": steps}
    # LOG_STDERR etc. are the client's own env settings; keep its logger quiet.
    env = {"PATH": os.environ.get("PATH", ""), "LOG_LEVEL": "error", "NODE_ENV": "test"}
    done = subprocess.run(
        [node, str(JUDGE)],
        input=json.dumps(plan),
        capture_output=True,
        text=True,
        cwd=HERE,
        env=env,
        timeout=120,
    )
    if done.returncode not in (0, 1):
        pytest.fail(f"judge crashed (exit {done.returncode}):\n{done.stderr}", pytrace=False)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(results) == len(steps), f"judge answered {len(results)} of {len(steps)} steps:\n{done.stderr}"
    return results


def report(results: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"  {'ok ' if r['pass'] else 'BAD'} {r['name']} ({r['method']}): expected {r['expect']},"
        f" got {r['kind']} {r['status']}: {r['detail']}"
        for r in results
    )


def assert_all_pass(results: list[dict[str, Any]]) -> None:
    failed = [r for r in results if not r["pass"]]
    assert not failed, f"Iterable's official client rejected {len(failed)} answers:\n{report(results)}"


def populate(sandbox: SandboxHandle, identity: str = "email") -> dict[str, Any]:
    """A project with content behind every endpoint liftstack reads."""
    project = sandbox.create_project(identity=identity)
    key = sandbox.create_key(project)
    read_only = sandbox.create_key(project, type="read_only")
    sandbox.put_users(
        project,
        [
            {"email": "Ada@Example.com", "dataFields": {"plan": "pro", "lf_assignments": {"c1": "v1"}}},
            {"email": "bob@example.com", "dataFields": {"visits": 3}},
        ],
    )
    list_id = sandbox.create_list(project, "audience", ["ada@example.com", "bob@example.com"], generate=25)
    sandbox.create_list(project, "segment", dynamic=True, generate=5, prefix="seg")
    template_ids = [
        sandbox.create_template(project, clientTemplateId=f"lf-{i}", name=f"Template {i}", html="<p>hi</p>")
        for i in range(12)
    ]
    sandbox.add_webhook(project, "https://hooks.example.com/iterable", authType="Basic", token="tkn")
    return {
        "project": project,
        "key": key,
        "read_only": read_only,
        "list_id": list_id,
        "template_ids": template_ids,
    }


def endpoint_steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One step per endpoint liftstack calls, with the arguments liftstack uses."""
    first = data["template_ids"][0]
    return [
        {
            "name": "users/bulkUpdate",
            "method": "bulkUpdateUsers",
            "expect": "ok",
            "args": {
                "users": [
                    {
                        "email": "carol@example.com",
                        "dataFields": {"lf_assignments": {"c1": "v2"}},
                        "mergeNestedObjects": True,
                    },
                    {"email": "not-an-email", "dataFields": {"x": 1}},
                ],
                "createNewFields": True,
            },
        },
        {"name": "users/getFields", "method": "getUserFields", "expect": "ok"},
        {"name": "lists", "method": "getLists", "expect": "ok"},
        {"name": "lists/getUsers", "method": "getListUsers", "expect": "ok", "args": {"listId": data["list_id"]}},
        {"name": "lists/{id}/size", "method": "getListSize", "expect": "ok", "args": {"listId": data["list_id"]}},
        {
            "name": "templates (page 1)",
            "method": "getTemplates",
            "expect": "ok",
            "args": {"templateType": "Base", "messageMedium": "Email", "page": 1, "pageSize": 5},
        },
        {"name": "templates (page 2)", "method": "getTemplates", "expect": "ok", "args": {"page": 2, "pageSize": 5}},
        {"name": "templates/email/get", "method": "getEmailTemplate", "expect": "ok", "args": {"templateId": first}},
        {
            "name": "templates/getByClientTemplateId",
            "method": "getTemplateByClientId",
            "expect": "ok",
            "args": {"clientTemplateId": "lf-0"},
        },
        {
            "name": "templates/email/upsert (new)",
            "method": "upsertEmailTemplate",
            "expect": "ok",
            "args": {
                "clientTemplateId": "lf-new",
                "name": "New",
                "subject": "Hello",
                "html": "<p>{{x}}</p>",
                "fromEmail": "news@example.com",
                "fromName": "News",
                "locale": "en",
                "linkParams": [{"key": "utm_source", "value": "liftstack"}],
            },
        },
        {
            "name": "templates/getByClientTemplateId (upserted)",
            "method": "getTemplateByClientId",
            "expect": "ok",
            "args": {"clientTemplateId": "lf-new"},
        },
        {
            "name": "templates/email/update",
            "method": "updateEmailTemplate",
            "expect": "ok",
            "args": {"templateId": first, "html": "<p>changed</p>", "subject": "Changed"},
        },
        {
            "name": "templates/email/get (updated)",
            "method": "getEmailTemplate",
            "expect": "ok",
            "args": {"templateId": first},
        },
        {"name": "webhooks", "method": "getWebhooks", "expect": "ok"},
    ]


def error_steps(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "bad key: lists", "key": "bad", "method": "getLists", "expect": 401},
        {
            "name": "bad key: bulkUpdate",
            "key": "bad",
            "method": "bulkUpdateUsers",
            "expect": 401,
            "args": {"users": [{"email": "a@example.com", "dataFields": {}}]},
        },
        {
            "name": "read-only key: upsert",
            "key": "read_only",
            "method": "upsertEmailTemplate",
            "expect": 401,
            "args": {"clientTemplateId": "lf-x"},
        },
        {
            "name": "email/get unknown templateId",
            "method": "getEmailTemplate",
            "expect": 400,
            "args": {"templateId": 999_999_999},
        },
        {
            "name": "getByClientTemplateId unknown id",
            "method": "getTemplateByClientId",
            "expect": "ok",
            "args": {"clientTemplateId": "never-created"},
        },
        {
            "name": "bulkUpdate malformed body",
            "method": "bulkUpdateUsers",
            "expect": 400,
            "args": {"users": "not-a-list"},
        },
    ]


def rate_limit_steps() -> list[dict[str, Any]]:
    # getFields: 3/s at Iterable; the sandbox admits one period's worth then 429s.
    return [
        {"name": "rate limit: getFields 429", "method": "getUserFields", "expect": 429, "until": "error", "max": 30},
        {
            "name": "rate limit: bulkUpdate 429",
            "method": "bulkUpdateUsers",
            "expect": 429,
            "until": "error",
            "max": 40,
            "args": {"users": [{"email": "rl@example.com", "dataFields": {"n": 1}}]},
        },
    ]


@pytest.mark.parametrize("identity", ["email", "userId", "hybrid"])
def test_official_client_accepts_every_endpoint_liftstack_calls(sandbox: SandboxHandle, identity: str) -> None:
    data = populate(sandbox, identity)
    sandbox.configure(data["project"], rate_limits=False)
    keys = {"good": data["key"], "bad": "0" * 32, "read_only": data["read_only"]}
    results = run_judge(sandbox.api_url(data["project"]), keys, endpoint_steps(data) + error_steps(data))
    print(report(results))
    assert_all_pass(results)


def test_official_client_reads_rate_limit_answers(sandbox: SandboxHandle) -> None:
    data = populate(sandbox)
    sandbox.configure(data["project"], rate_limits=True, retry_after=True)
    results = run_judge(sandbox.api_url(data["project"]), {"good": data["key"]}, rate_limit_steps())
    print(report(results))
    assert_all_pass(results)


@pytest.mark.parametrize("answer", [400, 404])
def test_official_client_reads_unknown_client_template_id_errors(sandbox: SandboxHandle, answer: int) -> None:
    """The other ways Iterable says "no template with this clientTemplateId" are
    error bodies the official client reads as Iterable's (IterableApiError)."""
    data = populate(sandbox)
    sandbox.configure(data["project"], rate_limits=False, unknown_client_template_id=str(answer))
    steps = [
        {
            "name": f"getByClientTemplateId unknown id ({answer})",
            "method": "getTemplateByClientId",
            "expect": answer,
            "args": {"clientTemplateId": "never-created"},
        }
    ]
    results = run_judge(sandbox.api_url(data["project"]), {"good": data["key"]}, steps)
    print(report(results))
    assert_all_pass(results)
