"""The credentials port every Iterable-calling service uses (liftstack_shared.credentials):
the connections-service adapter over real HTTP against a stand-in internal endpoint,
and the in-memory source."""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from liftstack_shared.auth import SERVICE_TOKEN_HEADER
from liftstack_shared.connections_client import ConnectionsClient
from liftstack_shared.credentials import (
    ConnectionInOtherWorkspace,
    ConnectionNotFound,
    ConnectionsServiceCredentials,
    CredentialsSource,
    CredentialsUnavailable,
    IterableCredentials,
    StaticCredentials,
)
from liftstack_shared.iterable import Region
from liftstack_shared.settings import CommonSettings
from tests.fixtures.asgi import serve_asgi

KEY = "k" * 32


def internal_connection(connection_id: str = "conn-1", workspace_id: str = "ws-1") -> dict:
    return {
        "connection_id": connection_id,
        "workspace_id": workspace_id,
        "name": "Main",
        "platform": "iterable",
        "region": "EU",
        "api_key": KEY,
        "webhook_secrets": [],
        "event_types": ["open"],
        "status": "connected",
    }


@dataclass
class FakeConnections:
    """A stand-in for the connections service's internal endpoint."""

    url: str = ""
    seen: list[str | None] = field(default_factory=list)
    answer: str = "ok"  # ok | broken | garbage


@pytest.fixture
def fake() -> Iterator[FakeConnections]:
    state = FakeConnections()

    async def internal(request: Request) -> Response:
        state.seen.append(request.headers.get(SERVICE_TOKEN_HEADER))
        if state.answer == "broken":
            return PlainTextResponse("oops", status_code=500)
        if state.answer == "garbage":
            return PlainTextResponse("<html>not json</html>")
        if request.path_params["connection_id"] != "conn-1":
            return JSONResponse({"error": {"code": "not_found"}}, status_code=404)
        return JSONResponse(internal_connection())

    app = Starlette(routes=[Route("/internal/connections/{connection_id}", internal)])
    with serve_asgi(app) as url:
        state.url = url
        yield state


def source_for(settings: CommonSettings, fake: FakeConnections) -> ConnectionsServiceCredentials:
    client = ConnectionsClient(settings.model_copy(update={"connections_url": fake.url}))
    return ConnectionsServiceCredentials(client)


async def test_connections_service_source_asks_with_the_service_token(
    settings: CommonSettings,
    fake: FakeConnections,
) -> None:
    source: CredentialsSource = source_for(settings, fake)
    try:
        creds = await source.get("ws-1", "conn-1")
        with pytest.raises(ConnectionNotFound):
            await source.get("ws-1", "conn-2")
    finally:
        await source.aclose()
    assert creds == IterableCredentials("conn-1", "ws-1", SecretStr(KEY), Region.EU)
    assert fake.seen == [settings.service_token.get_secret_value()] * 2


async def failure(
    settings: CommonSettings, fake: FakeConnections, workspace_id: str, expected: type[Exception]
) -> Exception:
    """What asking for conn-1 in `workspace_id` raises (it must be `expected`)."""
    source = source_for(settings, fake)
    try:
        with pytest.raises(expected) as info:
            await source.get(workspace_id, "conn-1")
    finally:
        await source.aclose()
    return info.value


async def test_another_workspaces_connection_is_not_found(
    settings: CommonSettings,
    fake: FakeConnections,
) -> None:
    error = await failure(settings, fake, "ws-other", ConnectionNotFound)
    # The same error a missing connection gets; internal callers may tell it apart.
    assert isinstance(error, ConnectionInOtherWorkspace)
    assert KEY not in rendered(error)


async def test_answers_are_cached_until_invalidated(
    settings: CommonSettings,
    fake: FakeConnections,
) -> None:
    source = source_for(settings, fake)
    try:
        await source.get("ws-1", "conn-1")
        await source.get("ws-1", "conn-1")
        assert len(fake.seen) == 1
        source.invalidate("conn-1")
        await source.get("ws-1", "conn-1")
        assert len(fake.seen) == 2
    finally:
        await source.aclose()


@pytest.mark.parametrize("answer", ["broken", "garbage", "down"])
async def test_unusable_answers_are_unavailable_and_chain_nothing(
    settings: CommonSettings,
    fake: FakeConnections,
    answer: str,
) -> None:
    fake.answer = answer
    if answer == "down":
        fake.url = "http://127.0.0.1:1"  # nothing listens there
    error = await failure(settings, fake, "ws-1", CredentialsUnavailable)
    # httpx errors carry the request and so the service token: nothing is chained.
    assert error.__cause__ is None and error.__context__ is None
    assert settings.service_token.get_secret_value() not in rendered(error)


def rendered(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_reprs_never_show_the_key() -> None:
    creds = IterableCredentials("conn-1", "ws-1", SecretStr(KEY), Region.US)
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert KEY not in text and "conn-1" in text
    assert "*" not in repr(creds)  # not even masked
    with pytest.raises(AttributeError):
        creds.api_key = SecretStr("other")  # type: ignore[misc]  # frozen


async def test_static_credentials() -> None:
    source = StaticCredentials()
    added = source.add(workspace_id="ws-1", connection_id="conn-1", api_key=KEY, region="EU")
    assert added == IterableCredentials("conn-1", "ws-1", SecretStr(KEY), Region.EU)
    assert await source.get("ws-1", "conn-1") == added
    with pytest.raises(ConnectionInOtherWorkspace):
        await source.get("ws-2", "conn-1")
    with pytest.raises(ConnectionNotFound):
        await source.get("ws-1", "conn-2")
    source.invalidate("conn-1")
    assert source.invalidated == ["conn-1"]
    source.remove("conn-1")
    with pytest.raises(ConnectionNotFound):
        await source.get("ws-1", "conn-1")
    preset = StaticCredentials(added)
    assert await preset.get("ws-1", "conn-1") == added
    await source.aclose()
