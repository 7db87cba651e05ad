"""Cross-site request forgery protection for the cookie-authenticated console.

A state-changing request (anything but GET/HEAD/OPTIONS) is served only when the
browser says it comes from the console's own origin: its `Origin` header equals
`LIFTSTACK_CONSOLE_PUBLIC_URL`'s origin, or, when a browser sends no Origin, its
`Sec-Fetch-Site` is `same-origin`. A request with neither is refused too (non-browser
clients such as `liftstack demo` send their Origin). The JSON API (`/api/...`)
additionally takes only `application/json` bodies: a cross-site form or a
`text/plain` fetch can't produce that content type without a CORS preflight, which
the console never grants.

SameSite=Lax cookies stop most cross-site requests already; this makes the server
check them rather than trust every browser to.
"""

from __future__ import annotations

import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfMiddleware:
    def __init__(self, app: ASGIApp, origin: str, json_prefix: str = "/api/") -> None:
        self.app, self.origin, self.json_prefix = app, origin.lower(), json_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope["path"], headers)
        if refusal is not None:
            status, code, message = refusal
            await _json_error(send, status, code, message)
            return
        await self.app(scope, receive, send)

    def _refusal(self, path: str, headers: Headers) -> tuple[int, str, str] | None:
        origin = headers.get("origin")
        fetch_site = headers.get("sec-fetch-site")
        if origin is not None:
            same_origin = origin.lower() == self.origin
        else:
            same_origin = fetch_site == "same-origin"
        if fetch_site is not None and fetch_site != "same-origin":
            same_origin = False
        if not same_origin:
            return 403, "cross_origin_request", "State-changing requests must come from the console itself."
        if path.startswith(self.json_prefix):
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if (content_type or has_body) and content_type != "application/json":
                return 415, "unsupported_media_type", "The console's API takes application/json bodies only."
        return None


async def _json_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "field": None}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
