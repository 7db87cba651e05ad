"""Schemathesis against a running service's own /openapi.json: every operation,
positive and negative data, seeded. A case fails when the service answers a 5xx
other than 503 (real unavailability) or a response breaks the document (status
not described, wrong content type, body not matching its schema)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from schemathesis.generation import GenerationMode

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class OpenApiReport:
    service: str
    operations: int = 0
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    schema_violations: list[str] = field(default_factory=list)
    # (operation, mode) pairs with nothing to generate (e.g. no negative data for
    # an operation whose only parameter is any string).
    not_generated: list[str] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "operations": self.operations,
            "cases": self.cases,
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors_other_than_503": len(self.server_errors),
            "schema_violations": len(self.schema_violations),
            "not_generated": self.not_generated,
            "error_codes": dict(self.codes.most_common(8)),
        }


def fuzz_openapi(
    service: str,
    base_url: str,
    headers: dict[str, str],
    path_values: dict[str, str],
    examples_per_operation: int,
    seed_value: int,
) -> OpenApiReport:
    """`path_values`: path parameters to pin (e.g. the caller's workspace, so
    requests get past the workspace check); the others are generated."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.validate()  # a valid OpenAPI document, or this raises
    report = OpenApiReport(service)
    for result in schema.get_all_operations():
        operation = result.ok()
        report.operations += 1
        pinned = {
            p["name"]: path_values[p["name"]]
            for p in operation.definition.raw.get("parameters", [])
            if p.get("in") == "path" and p["name"] in path_values
        }
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(mode, path_parameters=pinned or None)

            @seed(seed_value)
            @settings(
                max_examples=examples_per_operation,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: schemathesis.Case) -> None:
                response = case.call(base_url=base_url, headers=headers, timeout=30)
                report.cases += 1
                report.statuses[response.status_code] += 1
                label = f"{case.method} {case.formatted_path} -> {response.status_code}"
                if response.status_code >= 400:
                    try:
                        report.codes[response.json()["error"]["code"]] += 1
                    except (ValueError, KeyError, TypeError):
                        pass
                if response.status_code >= 500 and response.status_code != 503:
                    report.server_errors.append(f"{label}: {response.text[:200]}")
                try:
                    case.validate_response(response, checks=CHECKS)
                except Exception as exc:  # noqa: BLE001 - schemathesis's failure group
                    report.schema_violations.append(f"{label}: {str(exc)[:300]}")

            try:
                run()
            except Unsatisfiable:
                report.not_generated.append(f"{operation.label} ({mode.value})")
    return report
