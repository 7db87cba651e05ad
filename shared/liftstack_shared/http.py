"""Starlette helpers every HTTP service uses: JSON bodies validated by pydantic,
one error shape, a body-size cap, health and metrics endpoints, an OpenAPI document
built from the same pydantic models the handlers use, and the uvicorn entry point.

Every service builds its app with `middleware=service_middleware(settings)` and
`exception_handlers=EXCEPTION_HANDLERS`, which give it:
- a cap on every request body (`LIFTSTACK_MAX_BODY_BYTES`, 1 MiB by default): 413
  `body_too_large` before reading when Content-Length says more, and as soon as a
  chunked body passes it;
- MongoDB unreachable -> 503 `database_unavailable` with Retry-After (not a 500);
- unmatched routes and methods -> 404 `not_found` / 405 `method_not_allowed` in the
  one JSON error shape.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from pymongo.errors import ConnectionFailure, PyMongoError
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from liftstack_shared import bounds
from liftstack_shared.errors import ApiError
from liftstack_shared.logging import setup_logging
from liftstack_shared.settings import CommonSettings

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

RETRY_AFTER_S = "5"
# Every /healthz check gets this long; they run concurrently, so /healthz answers
# within about this bound whatever is down (liveness probes wait 1-2 s).
HEALTH_CHECK_TIMEOUT_S = 1.25


# ---------------------------------------------------------------------- bodies


class BodyTooLarge(ApiError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, "body_too_large", f"Request body is over {max_bytes} bytes.")
        self.max_bytes = max_bytes


class BodyLimitMiddleware:
    """Caps every HTTP request body at `max_bytes` without buffering more than that.

    A declared Content-Length over the cap is answered 413 before the app runs; a
    chunked (or lying) body is counted as the app reads it, and the read that
    passes the cap raises `BodyTooLarge` (an ApiError, so the app's handler answers
    413; if the app has no handler for it, this middleware does)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_error(send, BodyTooLarge(self.max_bytes))
            return
        received = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await _send_error(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() and len(text) < 19 else bounds.INT64_MAX
    return None


async def _send_error(send: Send, exc: ApiError) -> None:
    response = JSONResponse(exc.body(), status_code=exc.status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def service_middleware(settings: CommonSettings, max_body_bytes: int | None = None) -> list[Middleware]:
    """The middleware every service app runs (the body cap)."""
    return [Middleware(BodyLimitMiddleware, max_bytes=max_body_bytes or settings.max_body_bytes)]


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, streamed and refused (413 `body_too_large`) once past `max_bytes`:
    Content-Length is checked before reading, a chunked body while reading."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and (len(declared) >= 19 or int(declared) > max_bytes):
        raise BodyTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(raw: bytes, model: type[M]) -> M:
    """Validate JSON bytes against `model`: 400 (invalid_json, invalid_encoding,
    too_deep, duplicate_key, number_out_of_range, invalid_string) or 422."""
    try:
        data = bounds.loads_json(raw) if raw.strip() else None
    except bounds.OutOfBounds as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def parse_body(request: Request, model: type[M], max_bytes: int = 1_000_000) -> M:
    """Read (capped) and validate a JSON body; 413/400/422 with a clear message."""
    return parse_json(await read_body(request, max_bytes), model)


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or None
    # Never echo the input value: it may be a secret.
    message = f"{where}: {first['msg']}" if where else first["msg"]
    details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
    return ApiError(422, "validation_error", message, field=where, extra={"details": details})


def json_response(model: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> Response:
    if isinstance(model, BaseModel):
        return Response(model.model_dump_json(), status_code=status, media_type="application/json")
    return JSONResponse(model, status_code=status)


async def _api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no route, wrong method) in the one error shape."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        ApiError(exc.status_code, code, str(exc.detail)).body(),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def is_mongo_unavailable(exc: BaseException) -> bool:
    """MongoDB can't be reached or timed out (as opposed to refusing an operation)."""
    return isinstance(exc, ConnectionFailure) or (isinstance(exc, PyMongoError) and exc.timeout)


async def _mongo_error_handler(request: Request, exc: Exception) -> Response:
    if is_mongo_unavailable(exc):
        log.warning("MongoDB unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse(
            ApiError(503, "database_unavailable", "The database is unavailable; try again.").body(),
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )
    return await _unexpected_error_handler(request, exc)


async def _unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "Internal error.", "field": None}},
        status_code=500,
    )


# Every service registers these (the console adds its own on top).
EXCEPTION_HANDLERS = {
    ApiError: _api_error_handler,
    HTTPException: _http_exception_handler,
    PyMongoError: _mongo_error_handler,
    Exception: _unexpected_error_handler,
}


@dataclass
class Endpoint:
    """An OpenAPI description of one route, from the pydantic models it uses."""

    method: str
    path: str
    summary: str
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: str | None = "bearer"  # "bearer", "service", "webhook" or None
    tags: list[str] = field(default_factory=list)
    # JSON schemas of path parameters that aren't plain strings, by name.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Query parameters: name -> (JSON schema, required).
    query: dict[str, tuple[dict[str, Any], bool]] = field(default_factory=dict)


# A path parameter that is an Iterable id (a 64-bit integer).
INT64_PARAM = {"type": "integer", "minimum": 0, "maximum": bounds.INT64_MAX}


class Int64Convertor(Convertor[int]):
    """`{name:int64}`: at most 19 digits, so a longer number is no route (404)
    instead of a giant int; the handler still checks <= INT64_MAX."""

    regex = "[0-9]{1,19}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("int64", Int64Convertor())


def openapi_document(title: str, version: str, endpoints: list[Endpoint]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, Any] = {}
    for ep in endpoints:
        op: dict[str, Any] = {"summary": ep.summary, "tags": ep.tags, "responses": {}}
        # OpenAPI requires every templated path segment to be declared as a parameter.
        params = re.findall(r"{([^}:]+)(?::[^}]*)?}", ep.path)
        parameters = [
            {"name": p, "in": "path", "required": True, "schema": ep.params.get(p, {"type": "string"})} for p in params
        ] + [
            {"name": name, "in": "query", "required": required, "schema": schema}
            for name, (schema, required) in ep.query.items()
        ]
        if parameters:
            op["parameters"] = parameters
        if ep.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(ep.request)}},
            }
        ok: dict[str, Any] = {"description": "OK"}
        if ep.response is not None:
            ok["content"] = {"application/json": {"schema": ref(ep.response)}}
        op["responses"][str(ep.status)] = ok
        op["responses"]["default"] = {
            "description": "Error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        if ep.auth == "bearer":
            op["security"] = [{"bearer": []}]
        elif ep.auth == "service":
            op["security"] = [{"service": []}]
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    schemas["Error"] = {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "field": {"type": ["string", "null"]},
                },
                "required": ["code", "message"],
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "service": {"type": "apiKey", "in": "header", "name": "X-Liftstack-Service-Token"},
            },
        },
    }


HealthCheck = Callable[[], Awaitable[None]]


async def run_health_checks(
    checks: dict[str, HealthCheck], timeout_s: float = HEALTH_CHECK_TIMEOUT_S
) -> dict[str, str]:
    """Every check at once, each cut off after `timeout_s`: name -> "ok" or
    "error: <ExceptionName>" ("error: timeout" when cut off)."""

    async def one(check: HealthCheck) -> str:
        started = time.monotonic()
        try:
            await asyncio.wait_for(check(), timeout_s)
            return "ok"
        except TimeoutError:
            return f"error: timeout after {time.monotonic() - started:.2f}s"
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
            return f"error: {type(exc).__name__}"

    outcomes = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, outcomes))


def standard_routes(
    service: str, endpoints: list[Endpoint], checks: dict[str, HealthCheck] | None = None
) -> list[Route]:
    """`/healthz` (liveness + dependency checks), `/metrics`, `/openapi.json`."""
    checks = checks or {}
    document = openapi_document(f"liftstack {service}", "1", endpoints)

    async def healthz(request: Request) -> Response:
        results = await run_health_checks(checks)
        ok = all(result == "ok" for result in results.values())
        return JSONResponse(
            {"service": service, "status": "ok" if ok else "degraded", "checks": results},
            status_code=200 if ok else 503,
        )

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


def serve(app: Starlette, settings: CommonSettings) -> None:
    """Entry point shared by every service's `__main__`."""
    setup_logging(settings.log_level, settings.log_json)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
