"""Rendering deploy/helm/liftstack with the pinned helm, and validating what it renders
offline: built-in kinds against the Kubernetes API's JSON schemas (the
kubernetes-validate package bundles them), custom resources against their CRDs'
OpenAPI schemas (KEDA's and prometheus-operator's Go modules, see deploy/local/helm).

The tools are installed by `deploy/local/bootstrap --test`; when they are missing the
tests fail with how to install them (they never skip).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "liftstack"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# whose API schemas kubernetes-validate bundles: both are validated.
KUBE_VERSIONS = ("1.27.0", "1.37.0")
RELEASE = "lift"

# What every render needs from an operator (the chart requires them).
REQUIRED_VALUES = {
    "secrets": {"existingSecret": "liftstack"},
    "oidc": {
        "issuer": "https://idp.example.com",
        "jwksUrl": "https://idp.example.com/jwks.json",
        "clientId": "liftstack-console",
    },
}

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Tools:
    helm: str
    keda_crds: Path
    prometheus_crds: Path


@cache
def tools() -> Tools:
    where = subprocess.run([str(REPO / "deploy" / "local" / "helm"), "--where"], capture_output=True, text=True)
    if where.returncode != 0:
        pytest.fail(
            f"the chart checks need helm and the CRD schemas: run deploy/local/bootstrap --test\n{where.stderr}",
            pytrace=False,
        )
    paths = dict(
        line.removeprefix("export ").split("=", 1) for line in where.stdout.splitlines() if line.startswith("export ")
    )
    return Tools(paths["LIFTSTACK_HELM"], Path(paths["LIFTSTACK_KEDA_CRDS"]), Path(paths["LIFTSTACK_PROMETHEUS_CRDS"]))


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def helm(*args: str, values: dict[str, Any] | None = None, tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run helm on the chart with REQUIRED_VALUES merged with `values` (a values file)."""
    argv = [tools().helm, *args]
    if values is not None:
        assert tmp is not None
        path = tmp / f"values-{len(list(tmp.glob('values-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(merge(REQUIRED_VALUES, values)))
        argv += ["--values", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def render(tmp: Path, values: dict[str, Any] | None = None, kube_version: str = KUBE_VERSIONS[-1]) -> list[Manifest]:
    done = helm("template", RELEASE, str(CHART), "--kube-version", kube_version, values=values or {}, tmp=tmp)
    assert done.returncode == 0, f"helm template failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_error(tmp: Path, values: dict[str, Any]) -> str:
    """helm template's error for values the chart must refuse."""
    done = helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSIONS[-1], values=values, tmp=tmp)
    assert done.returncode != 0, "the chart rendered values it must refuse"
    return done.stderr


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def by_name(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in of_kind(manifests, kind)}


def component(manifest: Manifest) -> str:
    return str(manifest["metadata"]["labels"]["app.kubernetes.io/component"])


def walk_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from walk_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)


# --------------------------------------------------------------------------- schemas


def _strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as strict JSON Schema: objects with declared properties
    accept no others (the API server would silently prune a misspelt field)."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema, from the CRDs the chart's custom resources use."""
    files = [
        tools().keda_crds / "keda.sh_scaledobjects.yaml",
        tools().prometheus_crds / "monitoring.coreos.com_servicemonitors.yaml",
    ]
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in files:
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            # metadata is the API server's (ObjectMeta), not the CRD's to describe.
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate(manifest: Manifest, kube_version: str) -> None:
    """Raise if `manifest` does not match its kind's schema (strict: no unknown fields)."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key in crd_schemas():
        jsonschema.Draft7Validator(crd_schemas()[key]).validate(manifest)
    else:
        kubernetes_validate.validate(manifest, kube_version, strict=True)


def validation_errors(manifests: list[Manifest], kube_version: str) -> list[str]:
    errors = []
    for manifest in manifests:
        try:
            validate(manifest, kube_version)
        except (jsonschema.ValidationError, kubernetes_validate.utils.SchemaNotFoundError) as exc:
            where = ".".join(str(p) for p in getattr(exc, "path", []))
            message = getattr(exc, "message", str(exc))
            errors.append(f"{manifest['kind']}/{manifest['metadata']['name']}: {where}: {message}")
    return errors


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def environ_without_liftstack() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LIFTSTACK_")}
