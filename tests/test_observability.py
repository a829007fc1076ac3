"""The observability layer: config, monitors, rules, the dashboard, and the charts' own monitors."""

from __future__ import annotations

import json
from functools import cache

import promql_parser
import pytest
import yaml

from klutch import catalog
from klutch.central import observability, signals
from klutch.config.central import ConfigError
from klutch.offline.mockengine import Evaluation
from tests import harness

MONITORING = f"kubernetes:{catalog.MONITORING_API}"
RELEASE = catalog.RELEASES["v1.0.0"]
LABELS = {"prometheus": "platform"}

SCENARIOS = {
    "off": {},
    "install": {"observability": {"enabled": True}},
    "existing": {"observability": {"enabled": True, "mode": "existing", "selectorLabels": LABELS}},
    "nginx": {"observability": {"enabled": True}, "exposure": {"controller": "ingress-nginx"}},
}


@cache
def scenario(key: str) -> Evaluation:
    return harness.run(json.loads(json.dumps(SCENARIOS[key])))


def release(ev: Evaluation, name: str):
    return ev.one("kubernetes:helm.sh/v3:Release", name)


# ----------------------------------------------------------------------------------------- config
def test_off_by_default_in_dev_and_on_in_prod():
    assert not harness.parse().observability.enabled
    prod = harness.parse({"environment": "prod"}).observability
    assert (prod.enabled, prod.mode, dict(prod.labels)) == (True, "install", {"release": "kube-prometheus-stack"})
    assert (prod.retention, prod.storage_size, prod.grafana) == ("15d", "50Gi", True)


def test_bad_values_are_reported_together_with_key_value_and_what_is_allowed():
    bad = {
        "enabled": "yes",
        "mode": "sidecar",
        "selectorLabels": {"release": "not a label value!"},
        "retention": "15 days",
        "storageSize": "50GB",
        "runbookBaseUrl": "http://docs.example.com",
        "grafanna": False,
    }
    with pytest.raises(ConfigError) as err:
        harness.parse({"observability": bad})
    text = str(err.value)
    for expected in (
        "klutch-central:observability.enabled",
        "must be one of 'install', 'existing'",
        "observability.selectorLabels.release",
        "must be a Prometheus duration such as '15d'",
        "'50GB'",
        "must be a size such as '50Gi'",
        "observability.runbookBaseUrl",
        "did you mean 'grafana'?",
    ):
        assert expected in text, expected


def test_install_only_settings_are_refused_in_existing_mode():
    with pytest.raises(ConfigError) as err:
        harness.parse({"observability": {"enabled": True, "mode": "existing", "retention": "30d", "grafana": False}})
    text = str(err.value)
    assert "observability.retention" in text and "observability.grafana" in text
    assert "applies to mode 'install' only" in text


def test_empty_selector_labels_are_refused():
    with pytest.raises(ConfigError, match="must name at least one label"):
        harness.parse({"observability": {"enabled": True, "selectorLabels": {}}})


# ----------------------------------------------------------------------------------------- layer
def test_off_declares_nothing_and_leaves_the_other_charts_alone():
    ev = scenario("off")
    assert not ev.by_prefix("klutch:observability")
    assert not ev.by_type(f"{MONITORING}:PodMonitor")
    assert "metrics" not in release(ev, "crossplane").inputs["values"]
    assert "prometheus" not in release(ev, "edge-cert-manager").inputs["values"]
    assert "monitoringAlerts" not in ev.outputs and "monitoringDashboard" not in ev.outputs


def test_install_mode_installs_kube_prometheus_stack_first():
    ev = scenario("install")
    stack = release(ev, "observability-kube-prometheus-stack")
    assert stack.inputs["version"] == catalog.CHARTS["kube-prometheus-stack"].version
    assert stack.inputs["namespace"] == "monitoring"
    spec = stack.inputs["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    assert stack.inputs["values"]["nodeExporter"] == {"enabled": False}  # it needs a privileged namespace
    labels = ev.k8s("Namespace", "monitoring").inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    grafana = stack.inputs["values"]["grafana"]
    assert grafana["admin"]["existingSecret"] == observability.GRAFANA_ADMIN_SECRET
    admin = ev.k8s("Secret", observability.GRAFANA_ADMIN_SECRET, "monitoring")
    assert admin.is_secret("stringData.admin-password")
    # every monitor, the rule, kube-state-metrics and the charts' own monitors wait for the CRDs it brings
    for other in (
        ev.one(f"{MONITORING}:PrometheusRule"),
        *ev.by_type(f"{MONITORING}:PodMonitor"),
        release(ev, "observability-kube-state-metrics"),
        release(ev, "edge-cert-manager"),
    ):
        assert ev.depends_on(other, stack), other.name
    # a chart without a monitor option does not wait for it
    assert not ev.depends_on(release(ev, "edge-envoy-gateway"), stack)
    assert ev.depends_on(
        release(scenario("nginx"), "edge-ingress-nginx"),
        release(scenario("nginx"), "observability-kube-prometheus-stack"),
    )


def test_install_mode_without_grafana():
    ev = harness.run({"observability": {"enabled": True, "grafana": False, "retention": "30d", "storageSize": "200Gi"}})
    values = release(ev, "observability-kube-prometheus-stack").inputs["values"]
    assert values["grafana"] == {"enabled": False}
    assert values["prometheus"]["prometheusSpec"]["retention"] == "30d"
    assert not [r for r in ev.kinds("Secret") if r.k8s_name == observability.GRAFANA_ADMIN_SECRET]


def test_existing_mode_creates_only_monitors_rules_and_dashboard_with_the_selector_labels():
    ev = scenario("existing")
    names = [r.inputs["chart"] for r in ev.by_type("kubernetes:helm.sh/v3:Release")]
    assert "kube-prometheus-stack" not in names
    monitors = ev.by_type(f"{MONITORING}:PodMonitor")
    assert sorted(m.k8s_name for m in monitors) == [
        "klutch-crossplane",
        "klutch-envoy-gateway",
        "klutch-provider-anynines",
    ]
    for obj in (*monitors, ev.one(f"{MONITORING}:PrometheusRule")):
        assert obj.inputs["metadata"]["labels"] == LABELS
    board = ev.k8s("ConfigMap", observability.DASHBOARD_CONFIGMAP, "klutch-monitoring")
    assert board.inputs["metadata"]["labels"] == {**LABELS, "grafana_dashboard": "1"}
    state = release(ev, "observability-kube-state-metrics").inputs["values"]
    assert state["prometheus"]["monitor"]["additionalLabels"] == LABELS
    cert_manager = release(ev, "edge-cert-manager").inputs["values"]["prometheus"]["servicemonitor"]
    assert cert_manager == {"enabled": True, "labels": LABELS}


def test_crossplane_and_provider_are_scraped_on_their_metrics_port():
    ev = scenario("install")
    assert release(ev, "crossplane").inputs["values"]["metrics"] == {"enabled": True}
    assert release(ev, "crossplane").inputs["values"]["args"] == list(catalog.CROSSPLANE_ARGS)
    provider = ev.k8s("PodMonitor", "klutch-provider-anynines", "klutch-monitoring").inputs["spec"]
    assert provider["namespaceSelector"] == {"matchNames": ["crossplane-system"]}
    assert provider["selector"] == {"matchLabels": {"pkg.crossplane.io/provider": "provider-anynines"}}
    assert provider["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics"}]


def test_ingress_nginx_gets_its_chart_monitor_and_no_envoy_pod_monitor():
    ev = scenario("nginx")
    controller = release(ev, "edge-ingress-nginx").inputs["values"]["controller"]
    assert controller["metrics"]["serviceMonitor"] == {
        "enabled": True,
        "additionalLabels": dict(catalog.DEFAULT_MONITOR_LABELS),
    }
    assert controller["config"] == {"proxy-buffer-size": "16k"}  # the controller's own values are kept
    assert "klutch-envoy-gateway" not in [m.k8s_name for m in ev.by_type(f"{MONITORING}:PodMonitor")]


def test_state_metrics_export_package_provider_config_export_and_claim_health():
    state = release(scenario("install"), "observability-kube-state-metrics").inputs["values"]
    resources = state["customResourceState"]["config"]["spec"]["resources"]
    kinds = [r["groupVersionKind"]["kind"] for r in resources]
    assert kinds == [
        "Provider",
        "Configuration",
        "Function",
        "ProviderConfig",
        "APIServiceExport",
        "PostgresqlInstance",
    ]
    provider_config = resources[3]["metrics"][0]
    assert provider_config["each"]["gauge"]["path"] == ["status", "health", "lastStatus"]  # the HEALTHY column
    rules = {g: r for rule in state["rbac"]["extraRules"] for g, r in [(rule["apiGroups"][0], rule["resources"])]}
    assert rules["klutch.anynines.com"] == ["apiserviceexports"]
    assert rules["anynines.com"] == ["postgresqlinstances"]
    assert state["collectors"] == ["deployments"]


def test_rules_have_runbook_links_into_the_monitoring_section():
    ev = harness.run(
        {"observability": {"enabled": True, "runbookBaseUrl": "https://git.example.com/klutch/blob/main/"}}
    )
    rules = ev.one(f"{MONITORING}:PrometheusRule").inputs["spec"]["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == ev.output("monitoringAlerts")
    assert rules[0]["annotations"]["runbook_url"] == (
        "https://git.example.com/klutch/blob/main/docs/operations.md#klutchpackageunhealthy"
    )
    operations = (harness.ROOT / "docs/operations.md").read_text()
    for rule in rules:
        assert f"### {rule['alert']}" in operations, rule["alert"]
    assert ev.output("monitoringDashboard").endswith("ConfigMap klutch-monitoring/klutch-central-dashboard")


def test_dashboard_panels_use_the_alerts_expressions():
    sig = signals.Signals(RELEASE.backend_namespace, RELEASE.backend_name)
    board = signals.dashboard(sig)
    exprs = [p["targets"][0]["expr"] for p in board["panels"]]
    assert sig.packages_healthy in exprs and sig.tenants_bound in exprs and sig.claims_per_service in exprs
    alert_exprs = " ".join(a.expr for a in signals.alerts(sig))
    assert sig.packages_healthy in alert_exprs and sig.backend_available in alert_exprs
    data = scenario("install").k8s("ConfigMap", observability.DASHBOARD_CONFIGMAP, "klutch-monitoring").inputs["data"]
    assert json.loads(data["klutch-central.json"]) == board


def test_rule_file_round_trips_as_a_prometheus_rule_file():
    sig = signals.Signals(RELEASE.backend_namespace, RELEASE.backend_name)
    text = yaml.safe_dump(signals.rule_spec(signals.alerts(sig), ""))
    rules = yaml.safe_load(text)["groups"][0]["rules"]
    assert {r["alert"]: r["for"] for r in rules} == {
        "KlutchPackageUnhealthy": "5m",
        "KlutchProviderConfigUnhealthy": "10m",
        "KlutchBackendUnavailable": "5m",
        "KlutchCertificateExpiringSoon": "1h",
        "KlutchCrossplaneReconcileErrors": "15m",
    }
    assert 'namespace="bind", deployment="anynines-backend"' in rules[2]["expr"]


def test_every_alert_and_dashboard_expression_parses_as_promql():
    sig = signals.Signals(RELEASE.backend_namespace, RELEASE.backend_name)
    exprs = [a.expr for a in signals.alerts(sig)] + [p["targets"][0]["expr"] for p in signals.dashboard(sig)["panels"]]
    for expr in exprs:
        promql_parser.parse(expr)  # raises ValueError naming the problem
    with pytest.raises(ValueError, match="unclosed left parenthesis"):
        promql_parser.parse(sig.reconcile_errors[:-1])  # the check is real
    for alert in signals.alerts(sig):
        assert isinstance(promql_parser.parse(alert.expr), promql_parser.BinaryExpr), alert.name  # a comparison
