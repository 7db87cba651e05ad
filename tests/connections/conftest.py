"""Fixtures for the connections service: one app over real HTTP on the session's
Kafka topics and Mongo database, and a log capture for the whole run that must never
see a tracked secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from liftstack_connections.app import create_app
from liftstack_connections.settings import ConnectionsSettings
from liftstack_shared.settings import CommonSettings
from tests.connections import support
from tests.fixtures.asgi import serve_asgi
from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.secrets import record_text

OUR_LOGGERS = ("liftstack", "liftstack_connections", "liftstack_shared")


class LogCapture(logging.Handler):
    """Keeps every record's full text (message and traceback), from every thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record_text(record))


@pytest.fixture(scope="session", autouse=True)
def log_capture() -> Iterator[LogCapture]:
    """Every log record of the session, checked at the end for secrets: everything at
    INFO (what production ships), liftstack's own loggers down to DEBUG. (Libraries'
    DEBUG wire dumps would flood pytest's failure reports, which share the root.)"""
    capture = LogCapture()
    root = logging.getLogger()
    ours = [logging.getLogger(name) for name in OUR_LOGGERS]
    old_levels = [root.level, *(lg.level for lg in ours)]
    root.addHandler(capture)
    root.setLevel(logging.INFO)
    for lg in ours:
        lg.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for lg, level in zip([root, *ours], old_levels):
            lg.setLevel(level)
    leaks = sorted({s[-4:] for s in support.TRACKED_SECRETS for t in capture.texts if s in t})
    assert not leaks, f"secrets ending in {leaks} appeared in the captured logs"


@pytest.fixture(scope="session")
def conn_settings(kafka_topics: CommonSettings, sandbox_server: SandboxHandle) -> ConnectionsSettings:
    """The session's settings, with Iterable played by the sandbox."""
    settings = ConnectionsSettings(
        **kafka_topics.model_dump(exclude={"port", "iterable_base_url", "ingest_public_url"}),
        iterable_base_url=sandbox_server.base_url,
        ingest_public_url="https://hooks.liftstack.test",
        test_timeout_s=20.0,
    )
    for secret in (settings.master_keys, settings.service_token):
        support.track(secret.get_secret_value())
    return settings


@pytest.fixture(scope="session")
def api(conn_settings: ConnectionsSettings) -> Iterator[str]:
    with serve_asgi(create_app(conn_settings)) as url:
        yield url


@pytest.fixture
def ws(conn_settings: ConnectionsSettings, api: str) -> support.Workspace:
    return support.Workspace(conn_settings, api)


@pytest.fixture
def other_ws(conn_settings: ConnectionsSettings, api: str) -> support.Workspace:
    return support.Workspace(conn_settings, api)
