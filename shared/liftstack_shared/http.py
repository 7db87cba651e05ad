"""Starlette helpers every HTTP service uses: JSON bodies validated by pydantic,
one error shape, health and metrics endpoints, an OpenAPI document built from the
same pydantic models the handlers use, and the uvicorn entry point."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from liftstack_shared.errors import ApiError
from liftstack_shared.logging import setup_logging
from liftstack_shared.settings import CommonSettings

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M], max_bytes: int = 1_000_000) -> M:
    """Read and validate a JSON body; 413/400/422 with a clear message otherwise."""
    raw = await request.body()
    if len(raw) > max_bytes:
        raise ApiError(413, "body_too_large", f"Request body is over {max_bytes} bytes.")
    try:
        data = json.loads(raw or b"null")
    except ValueError:
        raise ApiError(400, "invalid_json", "Request body is not valid JSON.") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or None
    # Never echo the input value: it may be a secret.
    message = f"{where}: {first['msg']}" if where else first["msg"]
    details = [
        {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
    ]
    return ApiError(422, "validation_error", message, field=where, extra={"details": details})


def json_response(model: BaseModel | dict[str, Any] | list[Any], status: int = 200) -> Response:
    if isinstance(model, BaseModel):
        return Response(model.model_dump_json(), status_code=status, media_type="application/json")
    return JSONResponse(model, status_code=status)


async def _api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _unexpected_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"error": {"code": "internal_error", "message": "Internal error.", "field": None}},
        status_code=500,
    )


EXCEPTION_HANDLERS = {ApiError: _api_error_handler, Exception: _unexpected_error_handler}


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
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
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


def standard_routes(
    service: str, endpoints: list[Endpoint], checks: dict[str, HealthCheck] | None = None
) -> list[Route]:
    """`/healthz` (liveness + dependency checks), `/metrics`, `/openapi.json`."""
    checks = checks or {}
    document = openapi_document(f"liftstack {service}", "1", endpoints)

    async def healthz(request: Request) -> Response:
        results: dict[str, str] = {}
        ok = True
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
                ok = False
                results[name] = f"error: {type(exc).__name__}"
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
