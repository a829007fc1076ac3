"""Test doubles for what cannot run offline: each stands in for a controller that a real cluster runs.

- Crossplane's package manager: installs Crossplane's own CRDs when the Crossplane Deployment
  appears (Crossplane core does that at start-up), and makes every Provider, Function and
  Configuration `Installed` and `Healthy` after `HEALTHY_AFTER` seconds, installing first the CRDs
  the package would bring: the provider-anynines ProviderConfig CRD and the claim CRDs of the
  dataservices Configuration (written here from the published schemas, reduced to what the
  API server needs to validate the program's objects).
- A cloud load balancer: every LoadBalancer Service gets a hostname under `.lb.klutch-e2e.test`, and
  every Ingress that address in its status (what ingress-nginx's controller publishes).
- Envoy Gateway's controller, for what the program reads from it: the data-plane LoadBalancer
  Service named in the EnvoyProxy, and each Gateway's `status.addresses` (the load balancer's name).

Nothing here is product code; the doubles run in a thread of the test process, poll the API
server every `PERIOD` seconds and stop with the fixture that started them.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.controlplane import ControlPlane

PERIOD = 0.5
HEALTHY_AFTER = 3.0
LB_SUFFIX = "lb.klutch-e2e.test"
PACKAGES = ("providers", "functions", "configurations")
CLAIM_GROUP = "anynines.com"
CLAIM_KINDS = ("Keyvalue", "Redis", "Messaging", "Logme2", "Prometheus", "Search", "Mongodb", "Mariadb", "Postgresql")


def _secret_ref() -> dict[str, Any]:
    ref = {
        "type": "object",
        "required": ["namespace", "name", "key"],
        "properties": {k: {"type": "string"} for k in ("namespace", "name", "key")},
    }
    return {"type": "object", "required": ["secretRef"], "properties": {"secretRef": ref}}


def crd(group: str, kind: str, plural: str, scope: str, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def provider_config_crd() -> dict[str, Any]:
    """provider-anynines' ProviderConfig (dataservices.anynines.com/v1, cluster-scoped)."""
    credentials = {
        "type": "object",
        "required": ["source"],
        "properties": {
            "source": {"type": "string", "enum": ["None", "Secret", "InjectedIdentity", "Environment", "Filesystem"]},
            "username": _secret_ref(),
            "password": _secret_ref(),
        },
    }
    spec = {
        "type": "object",
        "required": ["url", "providerCredentials"],
        "properties": {
            "url": {"type": "string"},
            "healthCheckEndpoint": {"type": "string"},
            "serviceType": {"type": "string", "enum": ["servicebroker", "backupmanager"]},
            "providerCredentials": credentials,
            "tls": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    return crd("dataservices.anynines.com", "ProviderConfig", "providerconfigs", "Cluster", "v1", spec)


def claim_crds() -> list[dict[str, Any]]:
    """The dataservices Configuration's claim kinds (anynines.com/v1), spec left open."""
    spec = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    kinds = [(f"{k}Instance", f"{k.lower()}instances") for k in CLAIM_KINDS]
    kinds += [("ServiceBinding", "servicebindings"), ("Backup", "backups"), ("Restore", "restores")]
    return [crd(CLAIM_GROUP, kind, plural, "Namespaced", "v1", spec) for kind, plural in kinds]


KUBE_BIND_KINDS = (
    ("APIServiceBinding", "apiservicebindings", "Cluster"),
    ("APIServiceExportRequest", "apiserviceexportrequests", "Namespaced"),
    ("APIServiceExport", "apiserviceexports", "Namespaced"),
    ("APIServiceNamespace", "apiservicenamespaces", "Namespaced"),
    ("ClusterBinding", "clusterbindings", "Namespaced"),
)


def kube_bind_crds(group: str, version: str, template_api_versions: Iterable[str]) -> list[dict[str, Any]]:
    """The release's kube-bind CRDs (and its backends' APIServiceExportTemplate CRDs), spec left open.

    The published files are not served by any registry this machine reaches; these stand in for them
    with the same groups, kinds, scopes and versions, which is what the program and the API server use."""
    spec = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    crds = [crd(group, kind, plural, scope, version, spec) for kind, plural, scope in KUBE_BIND_KINDS]
    for template_api_version in sorted(set(template_api_versions)):
        template_group, template_version = template_api_version.split("/")
        plural = "apiserviceexporttemplates"
        crds.append(crd(template_group, "APIServiceExportTemplate", plural, "Namespaced", template_version, spec))
    return crds


class Doubles:
    """The doubles of one control plane; `crossplane_crds` is Crossplane's own CRD directory."""

    def __init__(
        self,
        plane: ControlPlane,
        crossplane_crds: Path,
        envoy_service: tuple[str, str] | None,
        lb_hostname: str | None = None,
    ) -> None:
        self.plane = plane
        self.lb_hostname = lb_hostname  # every load balancer's name; None: <service>.<namespace>.<LB_SUFFIX>
        self.crossplane_crds = crossplane_crds
        self.envoy_service = envoy_service  # (namespace, name) of the EnvoyProxy's Service
        self.healthy_at: dict[str, str] = {}  # "<plural>/<name>" -> RFC 3339 time the double made it Healthy
        self.errors: list[str] = []
        self._seen: dict[str, float] = {}
        self._crossplane_installed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"doubles-{plane.name}", daemon=True)

    def __enter__(self) -> Doubles:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(PERIOD):
            steps = (
                self._crossplane_core,
                self._packages,
                self._envoy,
                self._load_balancers,
                self._gateways,
                self._ingresses,
            )
            for step in steps:
                try:
                    step()
                except (OSError, urllib.error.HTTPError, KeyError, ValueError) as e:
                    self.errors.append(f"{step.__name__}: {e}")  # the API server may be down on purpose

    # ------------------------------------------------------------------ Crossplane
    def _crossplane_core(self) -> None:
        if self._crossplane_installed:
            return
        deployments = self.plane.api("GET", "/apis/apps/v1/namespaces/crossplane-system/deployments")["items"]
        if any(d["metadata"]["name"] == "crossplane" for d in deployments):
            self._apply_all(yaml.safe_load(p.read_text()) for p in sorted(self.crossplane_crds.glob("*.yaml")))
            self._crossplane_installed = True

    def _packages(self) -> None:
        for plural in PACKAGES:
            try:
                items = self.plane.api("GET", f"/apis/pkg.crossplane.io/v1/{plural}")["items"]
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    continue  # Crossplane's CRDs are not there yet
                raise
            for item in items:
                self._package(plural, item)

    def _package(self, plural: str, item: dict[str, Any]) -> None:
        key = f"{plural}/{item['metadata']['name']}"
        if key in self.healthy_at:
            return
        first = self._seen.setdefault(key, time.monotonic())
        if time.monotonic() - first < HEALTHY_AFTER:
            return
        package = item["spec"]["package"]
        if plural == "providers" and "provider-anynines" in package:
            self._apply_all([provider_config_crd()])
        if plural == "configurations" and "dataservices" in package:
            self._apply_all(claim_crds())
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [
            {"type": t, "status": "True", "reason": r, "lastTransitionTime": now}
            for t, r in (("Installed", "ActivePackageRevision"), ("Healthy", "HealthyPackageRevision"))
        ]
        status = {"conditions": conditions, "currentIdentifier": package}
        self.plane.api(
            "PATCH",
            f"/apis/pkg.crossplane.io/v1/{key}/status",
            {"status": status},
            content_type="application/merge-patch+json",
        )
        self.healthy_at[key] = now

    def _apply_all(self, objects: Iterable[dict[str, Any]]) -> None:
        for obj in objects:
            if obj and obj.get("kind") == "CustomResourceDefinition":
                self._apply(obj, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")

    def _apply(self, obj: dict[str, Any], collection: str) -> None:
        path = f"{collection}/{obj['metadata']['name']}?fieldManager=klutch-e2e-doubles&force=true"
        self.plane.api("PATCH", path, obj, content_type="application/apply-patch+yaml")

    # ------------------------------------------------------------------ load balancers
    def _envoy(self) -> None:
        if not self.envoy_service:
            return
        namespace, name = self.envoy_service
        if not self._missing(f"/api/v1/namespaces/{namespace}/services/{name}") or self._missing(
            f"/api/v1/namespaces/{namespace}"
        ):
            return  # created once, like the controller: touching it again would change what the program reads
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app.kubernetes.io/name": "envoy"},
                "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
            },
        }
        self._apply(service, f"/api/v1/namespaces/{namespace}/services")

    def _missing(self, path: str) -> bool:
        try:
            self.plane.api("GET", path)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return True
            raise
        return False

    def _gateways(self) -> None:
        if not self.envoy_service:
            return
        try:
            gateways = self.plane.api("GET", "/apis/gateway.networking.k8s.io/v1/gateways")["items"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return  # the Gateway API CRDs are not there yet
            raise
        namespace, name = self.envoy_service
        hostname = self.lb_hostname or f"{name}.{namespace}.{LB_SUFFIX}"
        for gateway in gateways:
            if gateway.get("status", {}).get("addresses"):
                continue
            meta = gateway["metadata"]
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            status = {
                "addresses": [{"type": "Hostname", "value": hostname}],
                "conditions": [
                    {
                        "type": t,
                        "status": "True",
                        "reason": t,
                        "message": "e2e double",
                        "lastTransitionTime": now,
                        "observedGeneration": meta.get("generation", 1),
                    }
                    for t in ("Accepted", "Programmed")
                ],
            }
            path = f"/apis/gateway.networking.k8s.io/v1/namespaces/{meta['namespace']}/gateways/{meta['name']}/status"
            self.plane.api("PATCH", path, {"status": status}, content_type="application/merge-patch+json")

    def _ingresses(self) -> None:
        for ingress in self.plane.api("GET", "/apis/networking.k8s.io/v1/ingresses")["items"]:
            if ingress.get("status", {}).get("loadBalancer", {}).get("ingress"):
                continue
            meta = ingress["metadata"]
            hostname = self.lb_hostname or f"ingress-nginx-controller.ingress-nginx.{LB_SUFFIX}"
            path = f"/apis/networking.k8s.io/v1/namespaces/{meta['namespace']}/ingresses/{meta['name']}/status"
            self.plane.api(
                "PATCH",
                path,
                {"status": {"loadBalancer": {"ingress": [{"hostname": hostname}]}}},
                content_type="application/merge-patch+json",
            )

    def _load_balancers(self) -> None:
        for svc in self.plane.api("GET", "/api/v1/services")["items"]:
            meta = svc["metadata"]
            if svc["spec"].get("type") != "LoadBalancer" or svc.get("status", {}).get("loadBalancer", {}).get(
                "ingress"
            ):
                continue
            hostname = self.lb_hostname or f"{meta['name']}.{meta['namespace']}.{LB_SUFFIX}"
            self.plane.api(
                "PATCH",
                f"/api/v1/namespaces/{meta['namespace']}/services/{meta['name']}/status",
                {"status": {"loadBalancer": {"ingress": [{"hostname": hostname}]}}},
                content_type="application/merge-patch+json",
            )
