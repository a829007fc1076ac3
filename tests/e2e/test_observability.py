"""Observability under the real tools: every alert rule through `promtool test rules` (series in, alerts
out), the prod render's monitors and rules against the Prometheus Operator's CRDs, and the layer on a
local cluster (`existing` mode with those CRDs installed, then `install` mode with kube-prometheus-stack
from the local chart repository).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from klutch import catalog
from klutch.central import observability, signals
from klutch.offline import render
from klutch.sandbox.cli import ROOT, Pulumi
from klutch.sandbox.controlplane import ControlPlane
from klutch.sandbox.local import TOOLCHAIN
from klutch.sandbox.servers import ChartRepository
from tests.e2e.helpers import Lab, succeeded
from tests.e2e.stacks import configure, existing_cluster_config, rendered_objects
from tests.e2e.test_central import live
from tests.e2e.test_upgrade import operations

pytestmark = pytest.mark.e2e
RELEASE = catalog.RELEASES[catalog.DEFAULT_RELEASE]
SIGNALS = signals.Signals(RELEASE.backend_namespace, RELEASE.backend_name)
ALERTS = {a.name: a for a in signals.alerts(SIGNALS)}
LABELS = {"prometheus": "klutch-e2e"}
MONITORING_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")


def crd_files() -> list[Path]:
    found = sorted((TOOLCHAIN / "crds").glob("prometheus-operator-*"))
    assert found, f"no Prometheus Operator CRDs in {TOOLCHAIN / 'crds'}: run e2e/toolchain/build"
    return sorted(found[-1].glob("*.yaml"))


# ------------------------------------------------------------------------------------------ rule tests
def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def fired(alert: str, labels: dict[str, str]) -> dict[str, Any]:
    """An expected alert: its labels (the severity added) and its annotations expanded for them."""
    rule = ALERTS[alert]
    summary = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m[1]], rule.summary)
    runbook = f"{catalog.RUNBOOK_DOC}#{rule.anchor()}"
    return {
        "exp_labels": {**labels, "severity": rule.severity},
        "exp_annotations": {"summary": summary, "runbook_url": runbook},
    }


def case(alert: str, at: str, inputs: list[dict[str, str]], expected: list[dict[str, str]]) -> dict[str, Any]:
    check = {"eval_time": at, "alertname": alert, "exp_alerts": [fired(alert, labels) for labels in expected]}
    return {"interval": "1m", "input_series": inputs, "alert_rule_test": [check]}


BACKEND = {"namespace": RELEASE.backend_namespace, "deployment": RELEASE.backend_name}
AVAILABLE = {**BACKEND, "condition": "Available", "status": "true"}
PROVIDER = {"customresource_kind": "Provider", "name": "provider-anynines", "type": "Healthy"}
CONFIGURATION = {"customresource_kind": "Configuration", "name": "anynines-dataservices", "type": "Healthy"}
CERT = {"namespace": RELEASE.backend_namespace, "name": "anynines-backend-tls"}
ERRORS = "controller_runtime_reconcile_errors_total"
CROSSPLANE = {"namespace": signals.CROSSPLANE_NAMESPACE}
DAY = 86400

# Each alert: its bad series fire it (with exactly these labels), its good series next to them stay silent.
RULE_CASES = [
    case(
        "KlutchPackageUnhealthy",
        "10m",
        [
            series("klutch_provider_condition", PROVIDER, "0x15"),
            series("klutch_configuration_condition", CONFIGURATION, "1x15"),
        ],
        [{"customresource_kind": "Provider", "name": "provider-anynines"}],
    ),
    case("KlutchPackageUnhealthy", "3m", [series("klutch_provider_condition", PROVIDER, "0x15")], []),  # not yet 5m
    case(
        "KlutchProviderConfigUnhealthy",
        "15m",
        [
            series(signals.PROVIDER_CONFIG_HEALTHY, {"name": "postgresql-service-broker"}, "0x20"),
            series(signals.PROVIDER_CONFIG_HEALTHY, {"name": "postgresql-backup-manager"}, "1x20"),
        ],
        [{"name": "postgresql-service-broker"}],
    ),
    case(
        "KlutchProviderConfigUnhealthy",
        "8m",
        [series(signals.PROVIDER_CONFIG_HEALTHY, {"name": "postgresql-service-broker"}, "0x20")],
        [],
    ),
    case("KlutchBackendUnavailable", "10m", [series("kube_deployment_status_condition", AVAILABLE, "0x15")], [BACKEND]),
    case("KlutchBackendUnavailable", "10m", [series("kube_deployment_status_condition", AVAILABLE, "1x15")], []),
    # kube-state-metrics reports nothing about the backend: absent, with the selector's labels
    case(
        "KlutchBackendUnavailable",
        "10m",
        [series("kube_deployment_status_condition", {**AVAILABLE, "deployment": "other"}, "1x15")],
        [AVAILABLE],
    ),
    case(
        "KlutchCertificateExpiringSoon",
        "2h",
        [
            series("certmanager_certificate_expiration_timestamp_seconds", CERT, f"{10 * DAY}x150"),
            series(
                "certmanager_certificate_expiration_timestamp_seconds", {**CERT, "name": "fresh"}, f"{60 * DAY}x150"
            ),
        ],
        [CERT],
    ),
    case(
        "KlutchCrossplaneReconcileErrors",
        "40m",
        [
            series(ERRORS, {**CROSSPLANE, "controller": "managed/postgresqlinstance"}, "0+3x60"),
            series(ERRORS, {**CROSSPLANE, "controller": "managed/mongodbinstance"}, "0+0.5x60"),
            series(ERRORS, {"namespace": "other", "controller": "managed/postgresqlinstance"}, "0+9x60"),
        ],
        [{"controller": "managed/postgresqlinstance"}],
    ),
]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    tool = TOOLCHAIN / "bin" / "promtool"
    assert tool.exists(), f"no promtool in {tool.parent}: run e2e/toolchain/build"
    return subprocess.run([str(tool), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_every_alert_fires_on_its_bad_series_and_stays_silent_on_good_ones(tmp_path: Path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(signals.rule_spec(ALERTS.values(), "")))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": RULE_CASES}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    checked = succeeded(promtool("check", "rules", "rules.yaml", cwd=tmp_path))
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout, checked.stdout
    succeeded(promtool("test", "rules", "tests.yaml", cwd=tmp_path))
    assert {c["alert_rule_test"][0]["alertname"] for c in RULE_CASES} == set(ALERTS)  # every alert is tested
    # the tests can fail: a wrong expectation is reported
    wrong = {**tests, "tests": [case("KlutchBackendUnavailable", "10m", RULE_CASES[5]["input_series"], [BACKEND])]}
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(wrong, sort_keys=False))
    assert promtool("test", "rules", "wrong.yaml", cwd=tmp_path).returncode != 0


# ------------------------------------------------------------------------------------------ schemas
class CrdLoader(yaml.SafeLoader):
    """YAML 1.1 without its `=` value tag (an enum of the CRDs holds a plain `=`)."""


CrdLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:value"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in crd_files():
        crd = yaml.load(path.read_text(), Loader=CrdLoader)
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[api_version, crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not declare (the API server would drop them silently)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict) and "properties" in schema:
        found = [f"{path}.{k}" for k in value if k not in schema["properties"]]
        for key, item in value.items():
            if key in schema["properties"]:
                found += unknown_fields(item, schema["properties"][key], f"{path}.{key}")
        return found
    if isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [f for k, v in value.items() for f in unknown_fields(v, schema["additionalProperties"], f"{path}.{k}")]
    if isinstance(value, list) and "items" in schema:
        return [f for i, v in enumerate(value) for f in unknown_fields(v, schema["items"], f"{path}[{i}]")]
    return []


def test_prod_render_has_monitors_rules_and_dashboard_valid_against_the_operator_crds(tmp_path: Path):
    assert render.main(["--project-dir", str(ROOT), "--stack", "prod", "--out", str(tmp_path)]) == 0
    objects = [yaml.safe_load(p.read_text()) for p in sorted(tmp_path.rglob("*.yaml")) if "/kubernetes/" in str(p)]
    monitoring = [o for o in objects if o["apiVersion"] == catalog.MONITORING_API]
    assert sorted({o["kind"] for o in monitoring}) == ["PodMonitor", "PrometheusRule"]
    assert [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == observability.DASHBOARD_CONFIGMAP
    ]
    schemas = crd_schemas()
    for obj in monitoring:
        schema = schemas[obj["apiVersion"], obj["kind"]]
        # the schema itself is not checked: its patterns are Go regular expressions
        jsonschema.Draft7Validator(schema).validate(obj)
        assert not unknown_fields(obj, schema), (obj["metadata"]["name"], unknown_fields(obj, schema))


# ------------------------------------------------------------------------------------------ on a cluster
class Observed:
    def __init__(
        self, pulumi: Pulumi, plane: ControlPlane, repo: ChartRepository, rendered: list[dict[str, Any]], plan: str
    ) -> None:
        self.pulumi, self.plane, self.repo, self.rendered, self.plan = pulumi, plane, repo, rendered, plan


def observability_config(plane: ControlPlane, repo: ChartRepository, block: dict[str, Any]) -> dict[str, Any]:
    config = existing_cluster_config(plane, repo, catalog.DEFAULT_RELEASE, "envoy-gateway")
    keys = ("crossplane", "cert-manager", "envoy-gateway", "kube-prometheus-stack", "kube-state-metrics")
    config["mirrors"]["charts"] = dict.fromkeys(keys, repo.url)
    return {**config, "observability": {"enabled": True, **block}}


@pytest.fixture(scope="module")
def observed(lab: Lab) -> Iterator[Observed]:
    """A stack deployed without the layer (what the previous release deployed), then `existing` mode
    turned on, on a cluster that already has the Prometheus Operator's CRDs."""
    chart_repo = lab.chart_repo
    with lab.cluster("observability") as plane:
        for path in crd_files():
            plane.kubectl("create", "-f", str(path))  # too big for a client-side apply's annotation
        pulumi = lab.central_project("observability")
        configure(pulumi, plane, {**observability_config(plane, chart_repo, {}), "observability": {"enabled": False}})
        pulumi.up()
        configure(
            pulumi, plane, observability_config(plane, chart_repo, {"mode": "existing", "selectorLabels": LABELS})
        )
        plan = pulumi.preview().stdout
        rendered = rendered_objects(pulumi, lab.tmp.mktemp("observability-render"))
        succeeded(pulumi.up(check=False))
        yield Observed(pulumi, plane, chart_repo, rendered, plan)


def test_turning_the_layer_on_only_adds_and_updates_two_charts_in_place(observed: Observed):
    ops = operations(observed.plan)
    assert not ops["replace"] and not ops["delete"], ops
    updated = {name for name in ops["update"] if not name.startswith("klutch-central-")}  # the stack: new outputs
    assert updated == {"crossplane", "edge-cert-manager"}, ops  # metrics port; cert-manager's ServiceMonitor
    assert {"observability-rule", "observability-dashboard", "observability-kube-state-metrics"} <= ops["create"]


def subset(want: Any, got: Any) -> bool:
    """`got` holds everything `want` has (the API server may add defaults, never drop a field)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and subset(v, got[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(want) == len(got) and all(map(subset, want, got))
    return want == got


def test_existing_mode_creates_every_object_and_previews_clean(observed: Observed):
    monitoring = [o for o in observed.rendered if o["apiVersion"] == catalog.MONITORING_API]
    assert len(monitoring) == 4  # 3 PodMonitors and the PrometheusRule (the charts' ServiceMonitors: below)
    dashboards = [o for o in observed.rendered if o["metadata"]["name"] == observability.DASHBOARD_CONFIGMAP]
    assert len(dashboards) == 1
    for obj in [*monitoring, *dashboards]:
        found = live(observed.plane, obj)
        body = "spec" if "spec" in obj else "data"
        assert subset(obj[body], found[body]), (obj["kind"], obj["metadata"]["name"])
        assert LABELS.items() <= found["metadata"]["labels"].items()
    service_monitors = {
        (m["metadata"]["namespace"], m["metadata"]["name"]): m["metadata"]["labels"]
        for m in observed.plane.items("servicemonitors.monitoring.coreos.com")
    }
    assert {ns for ns, _ in service_monitors} == {"cert-manager", "klutch-monitoring"}  # cert-manager's, ours
    assert all(LABELS.items() <= labels.items() for labels in service_monitors.values())
    assert observed.pulumi.outputs()["monitoringAlerts"] == list(ALERTS)
    assert not observed.plane.exists("namespace", "monitoring")  # existing: no kube-prometheus-stack
    observed.pulumi.preview("--expect-no-changes")


def test_install_mode_installs_kube_prometheus_stack_from_the_local_repository(observed: Observed):
    block = {"mode": "install", "retention": "7d", "storageSize": "20Gi"}
    configure(observed.pulumi, observed.plane, observability_config(observed.plane, observed.repo, block))
    succeeded(observed.pulumi.up(check=False))
    [prometheus] = observed.plane.items("prometheuses.monitoring.coreos.com", "monitoring")
    assert prometheus["spec"]["retention"] == "7d"
    assert prometheus["spec"]["storage"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    deployments = {d["metadata"]["name"] for d in observed.plane.items("deployments", "monitoring")}
    assert {"kube-prometheus-stack-operator", "kube-prometheus-stack-grafana"} <= deployments
    assert observed.plane.exists("secret", observability.GRAFANA_ADMIN_SECRET, "monitoring")
    observed.pulumi.preview("--expect-no-changes")
