"""Fixtures for the templates service tests: one real Handlebars renderer (Node) per
session, shared by every test; and for every test, a check that no Iterable key it
used shows up in its logs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from liftstack_shared.handlebars import HandlebarsRenderer
from tests.fixtures.secrets import WatchedSecrets, capture_debug


@pytest.fixture(autouse=True)
def watched_keys(caplog: pytest.LogCaptureFixture, no_secrets_in_logs: WatchedSecrets) -> WatchedSecrets:
    """Keys a test adds here never show up in a log record of any phase (templates,
    liftstack_shared, the Iterable client, httpx, httpcore at DEBUG)."""
    capture_debug(caplog, "liftstack_templates")
    return no_secrets_in_logs


@pytest.fixture(scope="session")
async def renderer() -> AsyncIterator[HandlebarsRenderer]:
    async with HandlebarsRenderer() as hb:
        yield hb
