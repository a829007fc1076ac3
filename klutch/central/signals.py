"""Klutch's health as metrics, the alerts over them and the Grafana dashboard: plain data, no resources.

- `state_metrics_config()`: kube-state-metrics' custom-resource-state configuration. It exports the
  conditions of Crossplane's packages (Providers, Configurations, Functions), the ProviderConfigs'
  health (`kubectl get providerconfigs` column HEALTHY), the APIServiceExports (one per bound tenant
  API) and one info series per data-service claim.
- `alerts()`: the alerting rules, each with a runbook link into the operations guide.
- `dashboard()`: the Grafana dashboard over the same expressions.

The kube-bind backend serves no metrics endpoint (kube-bind's example backend, which Klutch's derives
from, registers no `/metrics` handler; its Deployment exposes only the listen port), so its
availability comes from kube-state-metrics' Deployment conditions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from klutch import catalog
from klutch.kube.names import api_group

PREFIX = "klutch"
CROSSPLANE_NAMESPACE = catalog.CHARTS["crossplane"].namespace
PACKAGE_KINDS = ("Provider", "Configuration", "Function")
EXPORT_KIND = "APIServiceExport"
PROVIDER_CONFIG_HEALTHY = f"{PREFIX}_providerconfig_healthy"


def _metric(kind: str, name: str) -> str:
    return f"{PREFIX}_{kind.lower()}_{name}"


def claim_metric(service: catalog.DataService) -> str:
    """The info series of one data service's claims (one per claim)."""
    return f"{PREFIX}_claim_{service.key}_info"


def _conditions(api_version: str, kind: str, namespaced: bool) -> dict[str, Any]:
    """One resource of the configuration: a gauge per status condition, 1 when its status is True."""
    group, version = api_version.rsplit("/", 1)
    labels = {"name": ["metadata", "name"], **({"namespace": ["metadata", "namespace"]} if namespaced else {})}
    return {
        "groupVersionKind": {"group": group, "version": version, "kind": kind},
        "metricNamePrefix": f"{PREFIX}_{kind.lower()}",
        "labelsFromPath": labels,
        "metrics": [
            {
                "name": "condition",
                "help": f"{kind} status conditions (1: True, 0: False)",
                "each": {
                    "type": "Gauge",
                    "gauge": {
                        "path": ["status", "conditions"],
                        "labelsFromPath": {"type": ["type"]},
                        "valueFrom": ["status"],
                    },
                },
            }
        ],
    }


def state_metrics_config(release: catalog.KlutchRelease, services: Iterable[catalog.DataService]) -> dict[str, Any]:
    """kube-state-metrics' custom-resource-state configuration for the release's objects."""
    group, version = catalog.PROVIDER_CONFIG_API_VERSION.rsplit("/", 1)
    provider_configs = {
        "groupVersionKind": {"group": group, "version": version, "kind": "ProviderConfig"},
        "metricNamePrefix": f"{PREFIX}_providerconfig",
        "labelsFromPath": {"name": ["metadata", "name"]},
        "metrics": [
            {
                "name": "healthy",
                "help": "The ProviderConfig's last health check (1: healthy)",
                "each": {"type": "Gauge", "gauge": {"path": ["status", "health", "lastStatus"]}},
            }
        ],
    }
    claim_group, claim_version = catalog.CLAIM_API_VERSION.rsplit("/", 1)
    claims = [
        {
            "groupVersionKind": {"group": claim_group, "version": claim_version, "kind": s.claim_kind},
            "metricNamePrefix": f"{PREFIX}_claim_{s.key}",
            "labelsFromPath": {"name": ["metadata", "name"], "namespace": ["metadata", "namespace"]},
            "metrics": [
                {"name": "info", "help": f"One series per {s.title} claim", "each": {"type": "Info", "info": {}}}
            ],
        }
        for s in services
    ]
    export_api = f"{release.kube_bind_group}/{release.kube_bind_version}"
    return {
        "kind": "CustomResourceStateMetrics",
        "spec": {
            "resources": [
                *(_conditions(catalog.CROSSPLANE_PKG_API_VERSION, kind, False) for kind in PACKAGE_KINDS),
                provider_configs,
                _conditions(export_api, EXPORT_KIND, True),
                *claims,
            ]
        },
    }


def state_metrics_rules(release: catalog.KlutchRelease, services: Iterable[catalog.DataService]) -> list[dict]:
    """The read access kube-state-metrics needs for `state_metrics_config`."""
    resources = {
        api_group(catalog.CROSSPLANE_PKG_API_VERSION): ["providers", "configurations", "functions"],
        api_group(catalog.PROVIDER_CONFIG_API_VERSION): [catalog.PROVIDER_CONFIG_PLURAL],
        release.kube_bind_group: ["apiserviceexports"],
    }
    plurals = [s.plural for s in services]
    if plurals:
        resources[api_group(catalog.CLAIM_API_VERSION)] = plurals
    return [{"apiGroups": [g], "resources": r, "verbs": ["list", "watch"]} for g, r in resources.items()]


# ------------------------------------------------------------------------------------------ expressions
@dataclass(frozen=True)
class Signals:
    """The PromQL expressions the alerts and the dashboard share, for one stack."""

    backend_namespace: str
    backend_name: str

    @property
    def packages_healthy(self) -> str:
        names = "|".join(_metric(k, "condition") for k in PACKAGE_KINDS)
        return f'max by (customresource_kind, name) ({{__name__=~"{names}", type="Healthy"}})'

    @property
    def provider_configs_healthy(self) -> str:
        return f"max by (name) ({PROVIDER_CONFIG_HEALTHY})"

    @property
    def _backend_available(self) -> str:
        return (
            f'kube_deployment_status_condition{{namespace="{self.backend_namespace}", '
            f'deployment="{self.backend_name}", condition="Available", status="true"}}'
        )

    @property
    def backend_available(self) -> str:
        return f"max by (namespace, deployment) ({self._backend_available})"

    @property
    def backend_down(self) -> str:
        return f"{self.backend_available} < 1 or absent({self._backend_available})"

    @property
    def certificate_seconds_left(self) -> str:
        return (
            "min by (namespace, name) (certmanager_certificate_expiration_timestamp_seconds"
            f'{{namespace="{self.backend_namespace}"}}) - time()'
        )

    @property
    def tenants_bound(self) -> str:
        return f'count(count by (namespace) ({_metric(EXPORT_KIND, "condition")}{{type="Established"}} == 1))'

    @property
    def claims_per_service(self) -> str:
        return f'count by (customresource_kind) ({{__name__=~"{PREFIX}_claim_.+_info"}})'

    @property
    def reconcile_errors(self) -> str:
        return (
            "sum by (controller) (increase(controller_runtime_reconcile_errors_total"
            f'{{namespace="{CROSSPLANE_NAMESPACE}"}}[10m]))'
        )


# ------------------------------------------------------------------------------------------ alerts
CERTIFICATE_DAYS = 14
RECONCILE_ERRORS_PER_10M = 10


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_: str
    severity: str
    summary: str  # may name the alert's labels as {{ $labels.<name> }}

    def anchor(self) -> str:
        """The runbook's heading anchor in the operations guide (a heading per alert name)."""
        return self.name.lower()


def alerts(signals: Signals) -> tuple[Alert, ...]:
    return (
        Alert(
            "KlutchPackageUnhealthy",
            f"{signals.packages_healthy} < 1",
            "5m",
            "critical",
            "Crossplane {{ $labels.customresource_kind }} {{ $labels.name }} is not Healthy",
        ),
        Alert(
            "KlutchProviderConfigUnhealthy",
            f"{signals.provider_configs_healthy} < 1",
            "10m",
            "warning",
            "ProviderConfig {{ $labels.name }} has failed its health check for 10 minutes",
        ),
        Alert(
            "KlutchBackendUnavailable",
            signals.backend_down,
            "5m",
            "critical",
            f"The kube-bind backend {signals.backend_namespace}/{signals.backend_name} is not available",
        ),
        Alert(
            "KlutchCertificateExpiringSoon",
            f"{signals.certificate_seconds_left} < {CERTIFICATE_DAYS} * 86400",
            "1h",
            "warning",
            f"Certificate {{{{ $labels.namespace }}}}/{{{{ $labels.name }}}} expires within {CERTIFICATE_DAYS} days",
        ),
        Alert(
            "KlutchCrossplaneReconcileErrors",
            f"{signals.reconcile_errors} > {RECONCILE_ERRORS_PER_10M}",
            "15m",
            "warning",
            "Crossplane controller {{ $labels.controller }} keeps failing to reconcile",
        ),
    )


def rule_spec(rules: Iterable[Alert], runbook_base_url: str) -> dict[str, Any]:
    """The PrometheusRule spec (also a Prometheus rule file) of the alerts."""
    base = f"{runbook_base_url}/" if runbook_base_url else ""
    return {
        "groups": [
            {
                "name": "klutch",
                "rules": [
                    {
                        "alert": a.name,
                        "expr": a.expr,
                        "for": a.for_,
                        "labels": {"severity": a.severity},
                        "annotations": {
                            "summary": a.summary,
                            "runbook_url": f"{base}{catalog.RUNBOOK_DOC}#{a.anchor()}",
                        },
                    }
                    for a in rules
                ],
            }
        ]
    }


# ------------------------------------------------------------------------------------------ dashboard
DASHBOARD_UID = "klutch-central"


def _panel(index: int, title: str, kind: str, expr: str, legend: str, unit: str = "none") -> dict[str, Any]:
    return {
        "id": index + 1,
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr, "legendFormat": legend}],
    }


def dashboard(signals: Signals) -> dict[str, Any]:
    """The Grafana dashboard: package and ProviderConfig health, the backend, its certificate, tenants, claims."""
    panels = [
        ("Crossplane packages Healthy (1: yes)", "stat", signals.packages_healthy, "{{customresource_kind}} {{name}}"),
        ("ProviderConfigs healthy (1: yes)", "stat", signals.provider_configs_healthy, "{{name}}"),
        ("kube-bind backend available (1: yes)", "stat", signals.backend_available, "{{deployment}}"),
        ("Backend certificate: days left", "stat", f"({signals.certificate_seconds_left}) / 86400", "{{name}}"),
        ("Tenants bound (namespaces with an export)", "stat", signals.tenants_bound, "tenants"),
        ("Claims per data service", "bargauge", signals.claims_per_service, "{{customresource_kind}}"),
        ("Crossplane reconcile errors (10m)", "timeseries", signals.reconcile_errors, "{{controller}}"),
    ]
    return {
        "uid": DASHBOARD_UID,
        "title": "Klutch central cluster",
        "tags": ["klutch"],
        "schemaVersion": 39,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"}]
        },
        "panels": [_panel(i, *p) for i, p in enumerate(panels)],
    }


def dashboard_labels(monitor_labels: Mapping[str, str]) -> dict[str, str]:
    """The dashboard ConfigMap's labels: the Grafana sidecar's, and the stack's selector labels."""
    return {**monitor_labels, **catalog.GRAFANA_DASHBOARD_LABELS}
