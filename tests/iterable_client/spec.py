"""Validates HTTP traffic against Iterable's Swagger 2.0 spec
(/work/shared/reference/iterable-openapi.json), so the client can't drift from it.

openapi-core only reads OpenAPI 3, so this uses jsonschema directly: Swagger 2.0
schema objects are JSON Schema draft 4 plus a few ignorable keywords ("example").
Checks: the path template and method exist, required query/path parameters are
present with the declared type and enum, unknown query parameters are rejected, the
JSON body validates against the body parameter's schema, and the Api-Key header
(the spec's only security scheme) is sent.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft4Validator


def _spec_path() -> Path:
    """$ITERABLE_OPENAPI, else the provided shared/ beside the repository (where CI lays
    it), else the developers' /work/shared."""
    if os.environ.get("ITERABLE_OPENAPI"):
        return Path(os.environ["ITERABLE_OPENAPI"])
    beside = Path(__file__).resolve().parents[3] / "shared" / "reference" / "iterable-openapi.json"
    return beside if beside.exists() else Path("/work/shared/reference/iterable-openapi.json")


SPEC_PATH = _spec_path()
# The sandbox plays both regions under one base URL, by path prefix.
_PREFIX = re.compile(r"^(?:.*?)/(?:us|eu)(?=/api/)")


@cache
def spec() -> dict[str, Any]:
    """Iterable's spec, corrected where its official client (@iterable/api, whose zod
    schemas run against the live API) shows the live API differs: template dates are
    epoch ms, totalTemplatesCount a number, getByClientTemplateId locales strings
    (services/iterable_sandbox/README.md, "Where the sources disagree")."""
    loaded = json.loads(SPEC_PATH.read_text())
    defs = loaded["definitions"]
    for name in ("createdAt", "updatedAt"):
        defs["ApiTemplateResponse"]["properties"][name] = {"type": "integer", "format": "int64"}
    defs["GetTemplatesResponse"]["properties"]["totalTemplatesCount"] = {"type": "integer"}
    defs["ApiTemplateEntry"]["properties"]["locales"]["items"] = {"type": "string"}
    return loaded  # type: ignore[no-any-return]


def schema_validator(schema: dict[str, Any]) -> Draft4Validator:
    return Draft4Validator({**schema, "definitions": spec()["definitions"]})


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", r"([^/]+)", re.escape(template)) + "$")


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """(path template, operation) for a concrete request path; AssertionError if the
    spec has no such operation. Exact templates win over parameterised ones."""
    path = _PREFIX.sub("", path)
    paths = spec()["paths"]
    candidates = [path] if path in paths else [t for t in paths if _template_regex(t).match(path)]
    for template in candidates:
        operation = paths[template].get(method.lower())
        if operation is not None:
            return template, operation
    raise AssertionError(f"{method} {path} is not an operation in Iterable's spec")


def _check_type(name: str, value: str, param: dict[str, Any]) -> list[str]:
    kind = param.get("type")
    if kind == "integer" and not re.fullmatch(r"-?\d+", value):
        return [f"query {name}={value!r} is not an integer"]
    if kind == "boolean" and value not in ("true", "false"):
        return [f"query {name}={value!r} is not a boolean"]
    if "enum" in param and value not in param["enum"]:
        return [f"query {name}={value!r} not in {param['enum']}"]
    return []


def request_problems(request: httpx.Request) -> list[str]:
    """Everything about `request` that Iterable's spec does not allow."""
    template, operation = find_operation(request.method, request.url.path)
    params = operation.get("parameters", [])
    problems: list[str] = []
    if not request.headers.get("Api-Key"):
        problems.append("no Api-Key header")

    query = dict(request.url.params.multi_items())
    declared = {p["name"]: p for p in params if p["in"] == "query"}
    for name in query:
        if name not in declared:
            problems.append(f"query parameter {name!r} is not in the spec")
    for name, param in declared.items():
        if name in query:
            problems += _check_type(name, query[name], param)
        elif param.get("required"):
            problems.append(f"required query parameter {name!r} missing")

    path_params = [p for p in params if p["in"] == "path"]
    if path_params:
        values = _template_regex(template).match(_PREFIX.sub("", request.url.path))
        assert values is not None
        for param, value in zip(path_params, values.groups()):
            problems += _check_type(param["name"], value, param)

    body_params = [p for p in params if p["in"] == "body"]
    content = request.content
    if body_params:
        if not content:
            problems.append("body missing")
        else:
            if "application/json" not in request.headers.get("Content-Type", ""):
                problems.append("body is not declared application/json")
            body = json.loads(content)
            validator = schema_validator(body_params[0]["schema"])
            problems += [
                f"body{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)
            ]
    elif content:
        problems.append(f"{request.method} {template} takes no body")
    return problems


def response_problems(request: httpx.Request, status: int, body: bytes) -> list[str]:
    """Problems with a 200 response body per the operation's declared schema."""
    _, operation = find_operation(request.method, request.url.path)
    declared = operation.get("responses", {}).get(str(status))
    if declared is None or "schema" not in declared:
        return []
    schema = declared["schema"]
    if schema.get("type") == "string":
        return []  # text/plain bodies (getUsers, size)
    validator = schema_validator(schema)
    return [
        f"response{''.join(f'[{p!r}]' for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(json.loads(body))
    ]
