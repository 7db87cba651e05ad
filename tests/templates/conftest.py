"""Fixtures for the templates service tests: one real Handlebars renderer (Node) per
session, shared by every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from liftstack_shared.handlebars import HandlebarsRenderer


@pytest.fixture(scope="session")
async def renderer() -> AsyncIterator[HandlebarsRenderer]:
    async with HandlebarsRenderer() as hb:
        yield hb
