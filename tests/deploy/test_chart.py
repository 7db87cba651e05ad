"""The Helm chart (deploy/helm/liftstack): helm lint, schema validation of everything it
renders, and the invariants the issue asks for — probes, resources and a non-root
context on every Deployment, KEDA capped at the partition count, secrets only by
reference, the sandbox never exposed, single-writer services pinned."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from liftstack_shared.settings import CommonSettings
from liftstack_shared.topics import ALL_TOPICS
from tests.deploy.chart import (
    CHART,
    KUBE_VERSIONS,
    Manifest,
    by_name,
    component,
    env_of,
    helm,
    of_kind,
    render,
    render_error,
    validation_errors,
    walk_strings,
)

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
# The services the chart deploys, with the port each one's settings default to.
SERVICES = {
    "connections": ("liftstack_connections", 8101),
    "ingest": ("liftstack_ingest", 8102),
    "ingest-events": ("liftstack_ingest", 8102),
    "writeback": ("liftstack_writeback", 8103),
    "templates": ("liftstack_templates", 8104),
    "audiences": ("liftstack_audiences", 8105),
    "experiments": ("liftstack_experiments", 8106),
    "console": ("liftstack_console", 8080),
}
SINGLE_WRITERS = {"connections", "templates"}
SANDBOX_ON = {"sandbox": {"enabled": True}}


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    return render(tmp_path_factory.mktemp("default"))


@pytest.fixture(scope="module")
def with_sandbox(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    return render(tmp_path_factory.mktemp("sandbox"), SANDBOX_ON)


def containers(deployment: Manifest) -> list[dict[str, Any]]:
    return list(deployment["spec"]["template"]["spec"]["containers"])


# --------------------------------------------------------------------------- helm


def test_helm_lint_passes_strict(tmp_path: Path) -> None:
    for values in ({}, SANDBOX_ON):
        done = helm("lint", "--strict", str(CHART), values=values, tmp=tmp_path)
        print(done.stdout, done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_rendered_object_validates_against_its_schema(tmp_path: Path, kube_version: str) -> None:
    """Built-in kinds against the Kubernetes API schemas of that version, ScaledObject
    and ServiceMonitor against their CRDs; strict: an unknown field is an error."""
    for values in ({}, SANDBOX_ON):
        manifests = render(tmp_path, values, kube_version=kube_version)
        assert validation_errors(manifests, kube_version) == []
        kinds = {m["kind"] for m in manifests}
        assert {"Deployment", "Service", "ScaledObject", "ServiceMonitor", "NetworkPolicy", "Job"} <= kinds


def test_schema_validation_catches_a_misspelt_field(default: list[Manifest]) -> None:
    """The validation above can fail: a typo in a built-in kind and in a custom resource."""
    deployment = dict(of_kind(default, "Deployment")[0])
    deployment["spec"] = {**deployment["spec"], "replica": 2}
    scaled = dict(of_kind(default, "ScaledObject")[0])
    scaled["spec"] = {**scaled["spec"], "maxReplicas": 6}
    monitor = dict(of_kind(default, "ServiceMonitor")[0])
    monitor["spec"] = {**monitor["spec"], "endpoints": [{"port": "http", "pathh": "/metrics"}]}
    errors = validation_errors([deployment, scaled, monitor], KUBE_VERSIONS[-1])
    assert len(errors) == 3, errors


# --------------------------------------------------------------------------- deployments


def test_a_deployment_and_a_service_per_service(default: list[Manifest]) -> None:
    deployments = {component(d): d for d in of_kind(default, "Deployment")}
    services = {component(s): s for s in of_kind(default, "Service")}
    assert set(deployments) == set(SERVICES)
    assert set(services) == set(SERVICES)
    for name, (module, port) in SERVICES.items():
        (container,) = containers(deployments[name])
        assert container["command"] == ["/app/.venv/bin/python", "-m", module]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert env_of(container)["LIFTSTACK_PORT"]["value"] == str(port)
        assert env_of(container)["LIFTSTACK_HOST"]["value"] == "0.0.0.0"
        assert services[name]["spec"]["ports"][0]["port"] == port


def test_every_deployment_has_probes_resources_and_a_non_root_context(with_sandbox: list[Manifest]) -> None:
    deployments = of_kind(with_sandbox, "Deployment")
    assert len(deployments) == len(SERVICES) + 1  # and the sandbox
    for deployment in deployments:
        name = component(deployment)
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                assert container[probe]["httpGet"]["port"] == "http", (name, probe)
                assert container[probe]["timeoutSeconds"] >= 2, (name, probe)  # /healthz answers in < 2 s
            assert container["readinessProbe"]["httpGet"]["path"] == "/healthz", name
            if name != "iterable-sandbox":
                # /healthz is 503 during a Kafka/MongoDB outage: liveness must not restart pods for it.
                assert container["livenessProbe"]["httpGet"]["path"] == "/metrics", name
            # Read-only root: a writable /tmp.
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name


def test_single_writer_services_are_pinned_to_one_replica(tmp_path: Path, default: list[Manifest]) -> None:
    deployments = {component(d): d for d in of_kind(default, "Deployment")}
    for name in SINGLE_WRITERS:
        spec = deployments[name]["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}  # no overlap during a rollout
    autoscaled = {m["spec"]["scaleTargetRef"]["name"] for m in of_kind(default, "ScaledObject")}
    autoscaled |= {m["spec"]["scaleTargetRef"]["name"] for m in of_kind(default, "HorizontalPodAutoscaler")}
    assert not {n for n in autoscaled if n.rsplit("-", 1)[-1] in SINGLE_WRITERS}
    for name in SINGLE_WRITERS:
        error = render_error(tmp_path, {"services": {name: {"replicas": 2}}})
        assert "pinned to one replica" in error
    # The reason is written next to the setting.
    text = (CHART / "values.yaml").read_text()
    assert text.count("singleWriter: true") == len(SINGLE_WRITERS)
    assert "liftstack_shared.mongo.SingleWriter" in text and "FerretDB loses" in text


def test_pod_disruption_budgets_and_network_policies_cover_every_deployment(with_sandbox: list[Manifest]) -> None:
    deployments = {component(d) for d in of_kind(with_sandbox, "Deployment")}
    budgets = {component(p) for p in of_kind(with_sandbox, "PodDisruptionBudget")}
    assert budgets == deployments - {"iterable-sandbox"}
    policies = {component(p): p for p in of_kind(with_sandbox, "NetworkPolicy")}
    assert deployments <= set(policies)
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


# --------------------------------------------------------------------------- autoscaling


def test_ingest_scales_on_cpu(default: list[Manifest]) -> None:
    (hpa,) = of_kind(default, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "lift-liftstack-ingest",
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    ingest = by_name(default, "Deployment")["lift-liftstack-ingest"]
    assert "replicas" not in ingest["spec"]  # the HPA owns it
    # The gateways don't run the Events page consumer; ingest-events does, on its lag.
    (gateway,) = containers(ingest)
    assert env_of(gateway)["LIFTSTACK_EVENTS_CONSUMER_ENABLED"]["value"] == "false"
    (events,) = containers(by_name(default, "Deployment")["lift-liftstack-ingest-events"])
    assert env_of(events)["LIFTSTACK_EVENTS_CONSUMER_ENABLED"]["value"] == "true"


def code_consumer_groups() -> dict[str, str]:
    """The consumer group (before the topic prefix) each KEDA-scaled service's code uses."""
    from liftstack_experiments.settings import ExperimentsSettings
    from liftstack_ingest.consumers import CONSUMER_NAME
    from liftstack_writeback.settings import WritebackSettings

    return {
        "writeback": WritebackSettings(topic_prefix="").group_id,
        "ingest-events": CONSUMER_NAME,
        "experiments": ExperimentsSettings().results_group,
    }


def test_keda_scales_each_consumer_on_its_groups_lag_capped_at_the_partitions(default: list[Manifest]) -> None:
    partitions = {t.name: t.partitions for t in ALL_TOPICS}
    # The chart's copy of the partition counts is the catalogue's.
    assert VALUES["kafka"]["topics"]["partitions"] == {
        name: partitions[name] for name in VALUES["kafka"]["topics"]["partitions"]
    }
    scaled = {
        m["spec"]["scaleTargetRef"]["name"].removeprefix("lift-liftstack-"): m for m in of_kind(default, "ScaledObject")
    }
    assert set(scaled) == {"writeback", "ingest-events", "experiments"}
    groups = code_consumer_groups()
    for name, obj in scaled.items():
        (trigger,) = obj["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert 1 <= obj["spec"]["minReplicaCount"] <= obj["spec"]["maxReplicaCount"] <= partitions[meta["topic"]], name
        assert meta["bootstrapServers"] == VALUES["kafka"]["bootstrap"]
        if name in groups:
            assert meta["consumerGroup"] == groups[name], name
    assert scaled["writeback"]["spec"]["triggers"][0]["metadata"]["topic"] == "campaign.assignments"


def test_keda_names_prefixed_groups_and_topics(tmp_path: Path) -> None:
    manifests = render(tmp_path, {"kafka": {"topicPrefix": "stage."}})
    scaled = by_name(manifests, "ScaledObject")["lift-liftstack-writeback"]
    meta = scaled["spec"]["triggers"][0]["metadata"]
    assert meta["consumerGroup"] == CommonSettings(topic_prefix="stage.").topic("liftstack-writeback")
    assert meta["topic"] == "stage.campaign.assignments"


def test_more_replicas_than_partitions_is_refused(tmp_path: Path) -> None:
    error = render_error(tmp_path, {"services": {"writeback": {"keda": {"maxReplicas": 7}}}})
    assert "exceeds the 6 partitions of campaign.assignments" in error


# --------------------------------------------------------------------------- secrets


PLANTED = "planted-8f3e1c0ffee"


def test_no_secret_value_in_any_rendered_object(tmp_path: Path) -> None:
    """Secret-looking values put where an operator might try them never come out: the
    chart has no place for a secret value, and every secret setting is a secretKeyRef."""
    planted = {
        "secrets": {
            "existingSecret": "liftstack",
            "masterKeys": f"{PLANTED}-a",
            "values": {"masterKeys": f"{PLANTED}-b", "serviceToken": f"{PLANTED}-c"},
        },
        "mongo": {"url": f"mongodb://user:{PLANTED}-d@mongo:27017/", "password": f"{PLANTED}-e"},
        "oidc": {"clientSecret": f"{PLANTED}-f"},
        "kafka": {"sasl": {"password": f"{PLANTED}-g"}},
        "sandbox": {"enabled": True, "apiKey": f"{PLANTED}-h"},
    }
    manifests = render(tmp_path, planted)
    assert not [s for m in manifests for s in walk_strings(m) if PLANTED in s]
    assert not of_kind(manifests, "Secret") and not of_kind(manifests, "ConfigMap")
    secret_settings = {
        "LIFTSTACK_MONGO_URL",
        "LIFTSTACK_SERVICE_TOKEN",
        "LIFTSTACK_MASTER_KEYS",
        "LIFTSTACK_OIDC_CLIENT_SECRET",
    }
    seen = set()
    for deployment in of_kind(manifests, "Deployment"):
        for name, item in env_of(containers(deployment)[0]).items():
            if name in secret_settings:
                assert set(item) == {"name", "valueFrom"}, name
                assert item["valueFrom"]["secretKeyRef"]["name"] == "liftstack"
                seen.add(name)
    assert seen == secret_settings


def test_only_connections_gets_the_master_keys(default: list[Manifest]) -> None:
    holders = {
        component(d) for d in of_kind(default, "Deployment") if "LIFTSTACK_MASTER_KEYS" in env_of(containers(d)[0])
    }
    assert holders == {"connections"}


@pytest.mark.parametrize(
    "setting",
    ["LIFTSTACK_MASTER_KEYS", "LIFTSTACK_SERVICE_TOKEN", "LIFTSTACK_MONGO_URL", "LIFTSTACK_OIDC_CLIENT_SECRET"],
)
def test_a_secret_setting_given_as_a_value_is_refused(tmp_path: Path, setting: str) -> None:
    error = render_error(tmp_path, {"services": {"writeback": {"env": {setting: PLANTED}}}})
    assert "secrets are never chart values" in error
    assert PLANTED not in error


def test_the_chart_requires_an_existing_secret(tmp_path: Path) -> None:
    error = render_error(tmp_path, {"secrets": {"existingSecret": ""}})
    assert "secrets.existingSecret is required" in error


# --------------------------------------------------------------------------- exposure


def test_sandbox_is_off_by_default(default: list[Manifest]) -> None:
    assert not [m for m in default if component(m) == "iterable-sandbox"]
    for deployment in of_kind(default, "Deployment"):
        env = env_of(containers(deployment)[0])
        assert "LIFTSTACK_ITERABLE_BASE_URL" not in env and "LIFTSTACK_SANDBOX_URL" not in env


def test_sandbox_when_enabled_is_reachable_only_from_the_release(tmp_path: Path) -> None:
    # Even asked to, the chart exposes nothing outside the cluster.
    manifests = render(tmp_path, {"sandbox": {"enabled": True, "service": {"type": "LoadBalancer"}}})
    service = by_name(manifests, "Service")["lift-liftstack-iterable-sandbox"]
    assert service["spec"]["type"] == "ClusterIP"
    policy = by_name(manifests, "NetworkPolicy")["lift-liftstack-iterable-sandbox"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "liftstack", "app.kubernetes.io/instance": "lift"}}}
    ]
    assert policy["spec"]["egress"] == []
    for deployment in of_kind(manifests, "Deployment"):
        if component(deployment) != "iterable-sandbox":
            env = env_of(containers(deployment)[0])
            assert env["LIFTSTACK_ITERABLE_BASE_URL"]["value"] == "http://lift-liftstack-iterable-sandbox:8200"


def test_nothing_is_exposed_outside_the_cluster(with_sandbox: list[Manifest]) -> None:
    assert not of_kind(with_sandbox, "Ingress")
    assert {s["spec"]["type"] for s in of_kind(with_sandbox, "Service")} == {"ClusterIP"}
    policies = {component(p): p for p in of_kind(with_sandbox, "NetworkPolicy")}
    # Only the public services accept traffic from the ingress controller's namespace.
    public_peer = VALUES["networkPolicy"]["publicFrom"][0]
    public = {name for name, p in policies.items() if any(public_peer in r["from"] for r in p["spec"]["ingress"])}
    assert public == {"ingest", "console"}


def test_console_demo_signin_is_off(tmp_path: Path, default: list[Manifest]) -> None:
    (console,) = containers(by_name(default, "Deployment")["lift-liftstack-console"])
    assert env_of(console)["LIFTSTACK_DEMO_SIGNIN"]["value"] == "false"
    assert "LIFTSTACK_DEMO_SIGNING_KEY_FILE" not in env_of(console)
    error = render_error(tmp_path, {"services": {"console": {"env": {"LIFTSTACK_DEMO_SIGNIN": "true"}}}})
    assert "demo sign-in" in error


def test_service_monitor_scrapes_metrics_of_the_services(default: list[Manifest]) -> None:
    (monitor,) = of_kind(default, "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = {component(s) for s in of_kind(default, "Service") if selector.items() <= s["metadata"]["labels"].items()}
    assert scraped == set(SERVICES)


# --------------------------------------------------------------------------- settings


def settings_fields(module: str) -> set[str]:
    """LIFTSTACK_* names of a service's settings class."""
    settings = importlib.import_module(f"{module}.settings")
    classes = [c for c in vars(settings).values() if isinstance(c, type) and issubclass(c, CommonSettings)]
    own = [c for c in classes if c is not CommonSettings]
    return {f"LIFTSTACK_{name.upper()}" for name in own[0].model_fields}


def test_every_setting_the_chart_sets_is_a_real_setting(default: list[Manifest]) -> None:
    """A misspelt LIFTSTACK_* variable would be ignored silently (extra="ignore")."""
    every = {f"LIFTSTACK_{n.upper()}" for n in CommonSettings.model_fields}
    own = {name: settings_fields(module) for name, (module, _) in SERVICES.items()}
    for fields in own.values():
        every |= fields
    for deployment in of_kind(default, "Deployment"):
        name = component(deployment)
        env = env_of(containers(deployment)[0])
        unknown = {k for k in env if k.startswith("LIFTSTACK_") and k not in every}
        assert not unknown, (name, unknown)
        if name in own:  # (ingest-events is ingest's code under another name)
            for key in VALUES["services"][name]["env"]:
                assert key in own[name], (name, key)
