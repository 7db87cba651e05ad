"""The admin API (/_sandbox) for out-of-process users, the seed file and the
`python -m liftstack_sandbox` entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from liftstack_sandbox.seed import apply_seed, load_seed_file
from liftstack_sandbox.state import SandboxState
from tests.fixtures.asgi import free_port
from tests.fixtures.sandbox import SandboxHandle

KNOWN_KEY = "0123456789abcdef0123456789abcdef"


def test_admin_http_round_trip(sandbox: SandboxHandle) -> None:
    with httpx.Client(base_url=sandbox.base_url) as admin:
        assert admin.get("/healthz").json() == {"service": "iterable-sandbox", "status": "ok"}
        created = admin.post(
            "/_sandbox/projects",
            json={"name": "demo", "region": "EU", "keys": [{"type": "server_side"}, {"type": "read_only"}]},
        )
        assert created.status_code == 201
        project = created.json()
        pid, key = project["id"], project["keys"][0]["key"]
        assert project["region"] == "EU" and len(key) == 32
        extra = admin.post(f"/_sandbox/projects/{pid}/keys", json={"type": "server_side", "key": KNOWN_KEY}).json()
        assert extra["key"] == KNOWN_KEY
        # Keys are only shown on creation, never listed with their value.
        listed = admin.get(f"/_sandbox/projects/{pid}")
        assert KNOWN_KEY not in listed.text and key not in listed.text
        assert [k["type"] for k in listed.json()["keys"]] == ["server_side", "read_only", "server_side"]
        lst = admin.post(
            f"/_sandbox/projects/{pid}/lists",
            json={"name": "big", "generate": {"count": 5000}, "members": ["vip@example.com"]},
        )
        assert lst.status_code == 201 and lst.json()["size"] == 5001
        users = admin.post(
            f"/_sandbox/projects/{pid}/users",
            json={"users": [{"email": "vip@example.com", "dataFields": {"tier": "gold"}}]},
        )
        assert users.json()["successCount"] == 1
        assert admin.get(f"/_sandbox/projects/{pid}/users", params={"email": "vip@example.com"}).json()[
            "dataFields"
        ] == {"tier": "gold"}
        assert admin.get(f"/_sandbox/projects/{pid}/users", params={"email": "no@example.com"}).status_code == 404
        assert admin.get(f"/_sandbox/projects/{pid}/fields").json()["fields"]["tier"] == "string"
        template = admin.post(
            f"/_sandbox/projects/{pid}/templates", json={"name": "T", "clientTemplateId": "c", "subject": "s"}
        )
        assert template.status_code == 201
        assert (
            admin.post(f"/_sandbox/projects/{pid}/webhooks", json={"endpoint": "https://h.example.com"}).status_code
            == 201
        )
        config = admin.patch(f"/_sandbox/projects/{pid}/config", json={"retry_after": True, "faults": {"fail_next": 1}})
        assert config.json()["retry_after"] is True and config.json()["faults"]["fail_next"] == 1
        bad = admin.patch(f"/_sandbox/projects/{pid}/config", json={"faults": {"error_rate": 3}})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "faults.error_rate"
        assert (
            admin.post(f"/_sandbox/projects/{pid}/forget", json={"email": "vip@example.com"}).json()["existed"] is True
        )

        # The Iterable API sees all of it, on the EU host only.
        api = httpx.Client(base_url=f"{sandbox.base_url}/eu", headers={"Api-Key": KNOWN_KEY})
        assert api.get("/api/lists").status_code == 503  # the injected fault
        assert api.get(f"/api/lists/{lst.json()['id']}/size").text == "5000"
        assert api.get("/api/templates/getByClientTemplateId", params={"clientTemplateId": "c"}).json()["templates"]
        assert admin.get(f"/_sandbox/projects/{pid}/stats").json()["requests"]["lists"] == {"503": 1}

        kid = extra["id"]
        assert admin.post(f"/_sandbox/projects/{pid}/keys/{kid}/disable").json()["disabled"] is True
        assert api.get("/api/webhooks").status_code == 401
        admin.post(f"/_sandbox/projects/{pid}/keys/{kid}/enable")
        assert api.get("/api/webhooks").status_code == 200

        assert admin.post("/_sandbox/reset").status_code == 200
        assert admin.get("/_sandbox/projects").json() == {"projects": []}
        assert api.get("/api/webhooks").status_code == 401
        assert admin.get(f"/_sandbox/projects/{pid}").status_code == 404


def test_seed_file(tmp_path: Path) -> None:
    seed = {
        "projects": [
            {
                "name": "demo",
                "region": "US",
                "config": {"retry_after": True},
                "keys": [{"type": "server_side", "key": KNOWN_KEY}],
                "users": [{"email": "ann@example.com", "dataFields": {"firstName": "Ann"}}],
                "lists": [
                    {"name": "Newsletter", "members": ["ann@example.com"]},
                    {"name": "Big", "generate": {"count": 100}},
                ],
                "templates": [{"name": "Welcome", "clientTemplateId": "welcome", "subject": "Hi {{firstName}}"}],
                "webhooks": [{"endpoint": "https://h.example.com/i"}],
            }
        ]
    }
    state = SandboxState()
    [project] = apply_seed(state, seed)
    assert state.find_key(KNOWN_KEY).project_id == project.id
    assert project.config.retry_after is True
    assert [lst.name for lst in project.lists.values()] == ["Newsletter", "Big"]
    assert project.find_user(email="ann@example.com").data == {"firstName": "Ann"}
    assert len(project.templates) == 1 and len(project.webhooks) == 1


def test_demo_seed_file_loads() -> None:
    demo = Path(__file__).resolve().parents[2] / "services" / "iterable_sandbox" / "demo-seed.json"
    state = SandboxState()
    [project] = load_seed_file(state, demo)
    assert {k.type for k in project.keys.values()} == {"server_side", "read_only"}
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in project.keys)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    seed_file = tmp_path / "seed.json"
    seed_file.write_text(json.dumps({"projects": [{"region": "EU", "keys": [{"key": KNOWN_KEY}]}]}))
    port = free_port()
    env = {**os.environ, "LIFTSTACK_SANDBOX_PORT": str(port), "LIFTSTACK_SANDBOX_SEED_FILE": str(seed_file)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "liftstack_sandbox"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.1)
        response = httpx.get(f"http://127.0.0.1:{port}/eu/api/lists", headers={"Api-Key": KNOWN_KEY})
        assert response.status_code == 200 and response.json() == {"lists": []}
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert KNOWN_KEY not in output  # keys are never logged
    assert "seeded project" in output
