"""Seed files: projects (with known keys), lists, users, templates and webhooks
created at start-up, so a demo or staging stack has a sandbox it already knows.

    {
      "projects": [
        {
          "name": "demo", "region": "US", "identity": "email",
          "config": {"retry_after": true},
          "keys": [{"type": "server_side", "key": "0123456789abcdef0123456789abcdef"}],
          "users": [{"email": "ann@example.com", "dataFields": {"firstName": "Ann"}}],
          "lists": [{"name": "Newsletter", "members": ["ann@example.com"]},
                    {"name": "Big", "generate": {"count": 100000}}],
          "templates": [{"name": "Welcome", "clientTemplateId": "welcome", "subject": "Hi {{firstName}}"}],
          "webhooks": [{"endpoint": "http://127.0.0.1:8102/webhooks/iterable", "authType": "OAuth2", "token": "..."}]
        }
      ]
    }
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from liftstack_sandbox import admin, templates, users
from liftstack_sandbox.state import Project, SandboxState


def apply_seed(state: SandboxState, seed: dict[str, Any]) -> list[Project]:
    created: list[Project] = []
    for spec in seed.get("projects", []):
        project_spec = admin.ProjectSpec.model_validate(
            {k: v for k, v in spec.items() if k in admin.ProjectSpec.model_fields}
        )
        project, _ = admin.create_project(state, project_spec)
        if spec.get("users"):
            entries, create_new = users.validate_bulk_body({"users": spec["users"]})
            with state.lock:
                users.bulk_update(project, entries, create_new)
        for list_spec in spec.get("lists", []):
            admin.create_list(state, project, admin.ListSpec.model_validate(list_spec))
        for template_spec in spec.get("templates", []):
            fields = templates.parse_template_fields(template_spec, "seed", "name")
            templates.create(state, project, fields)
        for webhook_spec in spec.get("webhooks", []):
            admin.add_webhook(state, project, admin.WebhookSpec.model_validate(webhook_spec))
        created.append(project)
    return created


def load_seed_file(state: SandboxState, path: str | Path) -> list[Project]:
    return apply_seed(state, json.loads(Path(path).read_text()))
