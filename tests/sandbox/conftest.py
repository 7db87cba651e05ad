"""Sandbox tests: real HTTP against the sandbox served by uvicorn in a thread.

The fixtures come from tests/fixtures/sandbox.py; importing them here makes this
directory work whether or not the root conftest registers that plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from liftstack_sandbox.state import Project
from tests.fixtures.sandbox import SandboxHandle, sandbox, sandbox_server  # noqa: F401 - fixtures, used by name


@dataclass
class Api:
    """A project, its server-side key and a sync client on the project's region."""

    project: Project
    key: str
    client: httpx.Client


@pytest.fixture
def api(sandbox: SandboxHandle) -> Iterator[Api]:  # noqa: F811 - `sandbox` is the imported fixture, by name
    project = sandbox.create_project()
    key = sandbox.create_key(project)
    with httpx.Client(base_url=sandbox.api_url(project), headers=sandbox.headers(key), timeout=30) as client:
        yield Api(project, key, client)
