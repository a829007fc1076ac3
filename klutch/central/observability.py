"""Layer 6 (optional, `observability`): metrics, alerts and a dashboard for the central cluster.

    [install: Namespace monitoring ─► kube-prometheus-stack (Prometheus Operator and its CRDs, Prometheus,
              Alertmanager, Grafana; Grafana's admin password generated)]
    Namespace klutch-monitoring ─► kube-state-metrics (Klutch's objects as metrics, its own ServiceMonitor)
                                ─► PodMonitors: Crossplane core and RBAC manager, provider-anynines,
                                   [the Envoy Gateway controller]
                                ─► PrometheusRule klutch (alerts with runbook links)
                                ─► ConfigMap klutch-central-dashboard (Grafana sidecar)

cert-manager and ingress-nginx bring their own ServiceMonitors through their charts' monitor options:
`chart_monitoring` is what those charts need (the selector labels, and what brings the monitor CRDs).
Every object carries the stack's selector labels. Nothing here is protected: it holds no tenant data,
and removing the layer deletes only monitoring objects (the Prometheus Operator CRDs stay: Helm keeps them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from klutch import catalog
from klutch.central import helm, signals
from klutch.config.central import ObservabilityConfig

RULE_NAME = "klutch"
DASHBOARD_CONFIGMAP = "klutch-central-dashboard"
GRAFANA_ADMIN_SECRET = "klutch-grafana-admin"
GRAFANA_PASSWORD_BYTES = 24
METRICS_PORT = "metrics"  # the container port name of Crossplane, its providers and Envoy Gateway


@dataclass(frozen=True)
class ChartMonitoring:
    """What another layer's chart needs to create its own monitor."""

    labels: Mapping[str, str]
    after: Sequence[pulumi.Resource] = ()  # the release that brings the monitor CRDs (install mode)


@dataclass(frozen=True)
class ObservabilityArgs:
    provider: k8s.Provider
    config: ObservabilityConfig
    charts: Mapping[str, catalog.Chart]  # kube-prometheus-stack's and kube-state-metrics' sources (catalog or mirror)
    release: catalog.KlutchRelease
    data_services: Sequence[catalog.DataService] = field(default_factory=tuple)  # the enabled ones
    controller: str = "envoy-gateway"  # exposure.controller


class Observability(pulumi.ComponentResource):
    """The monitors, rules and dashboard of the central cluster; kube-prometheus-stack in `install` mode."""

    chart_monitoring: ChartMonitoring
    stack: k8s.helm.v3.Release | None
    state_metrics: k8s.helm.v3.Release
    monitors: dict[str, k8s.apiextensions.CustomResource]
    rule: k8s.apiextensions.CustomResource
    dashboard: k8s.core.v1.ConfigMap
    alert_names: list[str]
    dashboard_location: str

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:observability:Observability", name, None, opts)
        self._name, self._args, self._labels = name, args, dict(args.config.labels)
        self._opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.stack = self._kube_prometheus_stack() if args.config.install else None
        self.chart_monitoring = ChartMonitoring(self._labels, (self.stack,) if self.stack else ())
        after = self._after()
        namespace = helm.namespace(f"{name}-namespace", "kube-state-metrics", self._opts)
        self._namespace = catalog.CHARTS["kube-state-metrics"].namespace
        self.state_metrics = helm.release(
            f"{name}-kube-state-metrics",
            "kube-state-metrics",
            args.charts["kube-state-metrics"],
            state_metrics_values(args.release, args.data_services, self._labels),
            after,
            namespace=namespace,
        )
        self.monitors = {key: self._pod_monitor(key, ns, selector, after) for key, (ns, selector) in self._targets()}
        sig = signals.Signals(args.release.backend_namespace, args.release.backend_name)
        alerts, board = signals.alerts(sig), signals.dashboard(sig)
        self.rule = self._custom(
            "rule", "PrometheusRule", RULE_NAME, signals.rule_spec(alerts, args.config.runbook_base_url), after
        )
        self.dashboard = k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata={
                "name": DASHBOARD_CONFIGMAP,
                "namespace": self._namespace,
                "labels": signals.dashboard_labels(self._labels),
            },
            data={f"{signals.DASHBOARD_UID}.json": json.dumps(board, indent=1, sort_keys=True)},
            opts=after,
        )
        self.alert_names = [a.name for a in alerts]
        self.dashboard_location = (
            f"Grafana dashboard '{board['title']}' (uid {board['uid']}), "
            f"ConfigMap {self._namespace}/{DASHBOARD_CONFIGMAP}"
        )
        self.register_outputs({"alerts": self.alert_names, "dashboard": self.dashboard_location})

    def _after(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(
            self._opts, pulumi.ResourceOptions(depends_on=list(self.chart_monitoring.after))
        )

    def _kube_prometheus_stack(self) -> k8s.helm.v3.Release:
        config = self._args.config
        namespace = helm.namespace(f"{self._name}-stack-namespace", "kube-prometheus-stack", self._opts)
        depends: list[pulumi.Resource] = [namespace]
        if config.grafana:
            depends.append(self._grafana_admin(namespace))
        return helm.release(
            f"{self._name}-kube-prometheus-stack",
            "kube-prometheus-stack",
            self._args.charts["kube-prometheus-stack"],
            stack_values(config),
            pulumi.ResourceOptions.merge(self._opts, pulumi.ResourceOptions(depends_on=depends)),
            namespace=namespace,
        )

    def _grafana_admin(self, namespace: k8s.core.v1.Namespace) -> k8s.core.v1.Secret:
        """Grafana's admin login, generated (never the chart's default password)."""
        password = random.RandomBytes(
            f"{self._name}-grafana-password", length=GRAFANA_PASSWORD_BYTES, opts=pulumi.ResourceOptions(parent=self)
        )
        return k8s.core.v1.Secret(
            f"{self._name}-grafana-admin",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": namespace.metadata.name},
            string_data={"admin-user": "admin", "admin-password": pulumi.Output.secret(password.base64)},
            opts=self._opts,
        )

    def _targets(self) -> list[tuple[str, tuple[str, dict[str, Any]]]]:
        """PodMonitor key → (namespace, pod selector) of every scraped component without a chart monitor option."""
        crossplane = catalog.CHARTS["crossplane"].namespace
        targets = [
            ("crossplane", (crossplane, {"matchExpressions": [_in("app", "crossplane", "crossplane-rbac-manager")]})),
            (
                catalog.PROVIDER_NAME,
                (crossplane, {"matchLabels": {"pkg.crossplane.io/provider": catalog.PROVIDER_NAME}}),
            ),
        ]
        if self._args.controller == "envoy-gateway":
            gateway = catalog.CHARTS["envoy-gateway"].namespace
            targets.append(("envoy-gateway", (gateway, {"matchLabels": dict(catalog.ENVOY_GATEWAY_POD_LABELS)})))
        return targets

    def _pod_monitor(
        self, key: str, namespace: str, selector: dict[str, Any], opts: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        spec = {
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": selector,
            "podMetricsEndpoints": [{"port": METRICS_PORT, "path": "/metrics"}],
        }
        return self._custom(f"pod-monitor-{key}", "PodMonitor", f"klutch-{key}", spec, opts)

    def _custom(
        self, suffix: str, kind: str, name: str, spec: dict[str, Any], opts: pulumi.ResourceOptions
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{self._name}-{suffix}",
            api_version=catalog.MONITORING_API,
            kind=kind,
            metadata={"name": name, "namespace": self._namespace, "labels": self._labels},
            spec=spec,
            opts=opts,
        )


def _in(key: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": list(values)}


def stack_values(config: ObservabilityConfig) -> dict[str, Any]:
    """kube-prometheus-stack: Prometheus selects every monitor and rule; retention, storage and Grafana from
    config; no node-exporter."""
    volume = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": config.storage_size}}}
    grafana: dict[str, Any] = {"enabled": config.grafana}
    if config.grafana:
        sidecar_label, sidecar_value = next(iter(catalog.GRAFANA_DASHBOARD_LABELS.items()))
        grafana["admin"] = {
            "existingSecret": GRAFANA_ADMIN_SECRET,
            "userKey": "admin-user",
            "passwordKey": "admin-password",
        }
        grafana["sidecar"] = {
            "dashboards": {
                "enabled": True,
                "label": sidecar_label,
                "labelValue": sidecar_value,
                "searchNamespace": "ALL",
            }
        }
    return {
        "prometheus": {
            "prometheusSpec": {
                "retention": config.retention,
                "storageSpec": {"volumeClaimTemplate": {"spec": volume}},
                **{f"{kind}SelectorNilUsesHelmValues": False for kind in ("serviceMonitor", "podMonitor", "rule")},
            }
        },
        "grafana": grafana,
        # host metrics need a privileged namespace; the namespace enforces the catalog's Pod Security level
        "nodeExporter": {"enabled": False},
    }


def state_metrics_values(
    release: catalog.KlutchRelease, services: Sequence[catalog.DataService], labels: Mapping[str, str]
) -> dict[str, Any]:
    """kube-state-metrics for Klutch: Deployments (the backend's availability) and Klutch's custom resources."""
    return {
        "collectors": ["deployments"],
        "rbac": {"extraRules": signals.state_metrics_rules(release, services)},
        "customResourceState": {"enabled": True, "config": signals.state_metrics_config(release, services)},
        "prometheus": {"monitor": {"enabled": True, "additionalLabels": dict(labels)}},
    }


def chart_monitor_values(key: str, monitoring: ChartMonitoring | None) -> dict[str, Any]:
    """The monitor options of chart `key` (cert-manager, ingress-nginx), when observability is on."""
    if monitoring is None:
        return {}
    labels = dict(monitoring.labels)
    if key == "cert-manager":
        return {"prometheus": {"enabled": True, "servicemonitor": {"enabled": True, "labels": labels}}}
    if key == "ingress-nginx":
        monitor = {"enabled": True, "additionalLabels": labels}
        return {"controller": {"metrics": {"enabled": True, "serviceMonitor": monitor}}}
    return {}
