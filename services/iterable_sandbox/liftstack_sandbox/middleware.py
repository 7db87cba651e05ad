"""The outermost ASGI layer: region prefixes and dropped connections.

Regions: one sandbox plays both of Iterable's data centres at one base URL.
`{base}/us/api/...` is https://api.iterable.com/api/..., `{base}/eu/api/...` is
https://api.eu.iterable.com/api/..., and a bare `{base}/api/...` is US. We strip the
prefix and put the region (and the external base URL) in the ASGI scope, so routes
are declared once.

Dropped connections: handlers and streaming bodies raise `DropConnection`. Here we
close the client's TCP connection without a response (or mid-body, for a stream
already started), which is what a client sees when a load balancer or network
fails. uvicorn exposes no API for that, so we reach its transport through the
`receive` callable it passes in (a bound method of its request cycle). If that ever
stops working, the fallback announces a body it never sends, which also surfaces as
a protocol error on the client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liftstack_sandbox.errors import DropConnection

log = logging.getLogger(__name__)

REGION_PREFIXES = {"/us": "US", "/eu": "EU"}
SCOPE_REGION = "sandbox.region"
SCOPE_PREFIX = "sandbox.prefix"


def _is_drop(exc: BaseException) -> bool:
    if isinstance(exc, DropConnection):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_drop(e) for e in exc.exceptions)
    return False


class SandboxMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = self._route_region(scope)
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except BaseException as exc:  # only DropConnection is handled
            if not _is_drop(exc):
                raise
            await _drop(receive, send, started)

    @staticmethod
    def _route_region(scope: Scope) -> Scope:
        path: str = scope["path"]
        region, prefix = "US", ""
        for candidate, name in REGION_PREFIXES.items():
            if path == candidate or path.startswith(candidate + "/"):
                region, prefix = name, candidate
                path = path[len(candidate) :] or "/"
                break
        scope = dict(scope)
        scope["path"] = path
        if prefix:
            raw: bytes = scope.get("raw_path") or path.encode()
            scope["raw_path"] = raw[len(prefix) :] or b"/"
        scope[SCOPE_REGION] = region
        scope[SCOPE_PREFIX] = prefix
        return scope


async def _drop(receive: Receive, send: Send, started: bool) -> None:
    cycle: Any = getattr(receive, "__self__", None)
    transport: Any = getattr(cycle, "transport", None)
    if transport is not None:
        if started:
            transport.close()  # flush what was written, then FIN: a truncated body
        else:
            transport.abort()  # nothing written: the client sees no response at all
        # Let the server's connection_lost callback run, so it knows the client is
        # gone and doesn't try to answer a 500 on a closed connection.
        for _ in range(3):
            await asyncio.sleep(0)
        return
    log.warning("cannot reach the server transport; dropping by truncating the response")
    if not started:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000"), (b"content-type", b"text/plain")],
            }
        )
