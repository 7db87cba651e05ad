"""Iterable's error shape, `{"msg", "code", "params"}`, and fast JSON responses.

Every Iterable API error the sandbox answers goes through `IterableError`, so status
codes, `code` values and bodies stay consistent with the spec (IterableApiResponse).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

# Messages Iterable answers verbatim (iterable-api.md); clients may match on them.
INVALID_KEY_MSG = "Invalid API key"
DISABLED_KEY_MSG = "Disabled API key or insufficient privileges"
TIMEOUT_MSG = "Request timeout. Try again later."
RATE_LIMIT_MSG = "Rate limit exceeded. Please slow down and try again later."
GENERIC_ERROR_MSG = "An unexpected error occurred. Please try again later."


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def success(msg: str, params: Any = None) -> Response:
    return json_response({"msg": msg, "code": "Success", "params": params})


class IterableError(Exception):
    """An error answered as Iterable would: HTTP status + `{"msg","code","params"}`."""

    def __init__(
        self,
        status: int,
        code: str,
        msg: str,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.params = params
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response(
            {"msg": self.msg, "code": self.code, "params": self.params},
            status=self.status,
            headers=self.headers,
        )


def bad_params(msg: str, params: Any = None) -> IterableError:
    return IterableError(400, "BadParams", msg, params)


def bad_json(endpoint: str, params: dict[str, Any] | None = None, detail: str | None = None) -> IterableError:
    """Iterable validates bodies with Play JSON: the message names the endpoint and
    `params` maps each bad path (`obj.users[0].email`) to Play's error keys."""
    msg = f"[{endpoint}] Invalid JSON body"
    if detail:
        msg = f"{msg}: {detail}"
    return IterableError(400, "BadJsonBody", msg, params)


class DropConnection(BaseException):
    """Raised anywhere in a request (also inside a streaming body) to make the server
    drop the TCP connection instead of answering; caught by `middleware.py`.

    A BaseException on purpose: Starlette's error middleware turns any `Exception`
    into a 500 response on the way out, which is exactly what must not happen."""
