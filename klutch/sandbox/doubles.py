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
- cert-manager, where a scenario asks for it (`cert_manager`): its gateway- and ingress-shim (a
  Certificate for each TLS Secret of a Gateway or Ingress annotated with an issuer) and its issuing
  (every Certificate gets a TLS Secret with a 90-day certificate for its names, then `Ready`).
- For a scenario to change on purpose: a package's `Healthy` condition, and the result of
  provider-anynines' check of each ProviderConfig (`status.health`).

Nothing here is product code; the doubles run in a thread of the test process, poll the API
server every `PERIOD` seconds (backing off while it is unreachable, e.g. restarted by a scenario) and stop
with the fixture that started them.
"""

from __future__ import annotations

import base64
import http.client
import threading
import time
import urllib.error
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from klutch import catalog
from klutch.central import edge
from klutch.kube.names import api_group
from klutch.sandbox.controlplane import ControlPlane

PERIOD = 0.5
MAX_BACKOFF = 4.0  # the longest wait between rounds while the API server is unreachable
HEALTHY_AFTER = 3.0
LB_SUFFIX = "lb.klutch-e2e.test"
PACKAGES = ("providers", "functions", "configurations")
CLAIM_GROUP = "anynines.com"
CERTIFICATE_DAYS = 90  # what Let's Encrypt and cert-manager's default duration give
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
        cert_manager: bool = False,
    ) -> None:
        self.plane = plane
        self.cert_manager = cert_manager
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
        """A round of the steps every PERIOD seconds. While the API server cannot be reached (a scenario may
        restart it), the wait doubles up to MAX_BACKOFF; the first round that reaches it again resets it."""
        delay = PERIOD
        while not self._stop.wait(delay):
            delay = min(delay * 2, MAX_BACKOFF) if self._round() else PERIOD

    def _round(self) -> bool:
        """Each step once; whether one of them could not reach the API server (refused, reset, cut short)."""
        steps = (
            self._crossplane_core,
            self._packages,
            self._envoy,
            self._load_balancers,
            self._gateways,
            self._ingresses,
            *((self._certificate_shim, self._issue_certificates) if self.cert_manager else ()),
        )
        unreachable = False
        for step in steps:
            try:
                step()
            except (urllib.error.HTTPError, KeyError, ValueError) as e:
                self.errors.append(f"{step.__name__}: {e}")
            except (OSError, http.client.HTTPException) as e:
                self.errors.append(f"{step.__name__}: {type(e).__name__}: {e}")  # the API server may be down
                unreachable = True
        return unreachable

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

    # ------------------------------------------------------------------ cert-manager
    def _certificates_path(self, namespace: str | None = None) -> str:
        where = f"/namespaces/{namespace}" if namespace else ""
        return f"/apis/{catalog.CERT_MANAGER_API}{where}/certificates"

    def _list(self, path: str) -> list[dict[str, Any]]:
        try:
            return self.plane.api("GET", path)["items"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []  # the kind's CRD is not there yet
            raise

    def _tls_requests(self) -> Iterable[tuple[dict[str, Any], str, list[str]]]:
        """(object, TLS Secret, DNS names) of every Gateway listener and Ingress that names an issuer."""
        for gateway in self._list(f"/apis/{catalog.GATEWAY_API}/gateways"):
            if edge.ISSUER_ANNOTATION in (gateway["metadata"].get("annotations") or {}):
                for listener in gateway["spec"].get("listeners", []):
                    for ref in (listener.get("tls") or {}).get("certificateRefs", []):
                        yield gateway, ref["name"], [listener["hostname"]] if listener.get("hostname") else []
        for ingress in self._list("/apis/networking.k8s.io/v1/ingresses"):
            if edge.ISSUER_ANNOTATION in (ingress["metadata"].get("annotations") or {}):
                for tls in ingress["spec"].get("tls", []):
                    yield ingress, tls["secretName"], tls.get("hosts", [])

    def _certificate_shim(self) -> None:
        for owner, secret, names in self._tls_requests():
            meta = owner["metadata"]
            issuer = {
                "name": meta["annotations"][edge.ISSUER_ANNOTATION],
                "kind": "Issuer",
                "group": api_group(catalog.CERT_MANAGER_API),
            }
            certificate = {
                "apiVersion": catalog.CERT_MANAGER_API,
                "kind": "Certificate",
                "metadata": {"name": secret, "namespace": meta["namespace"]},
                "spec": {"secretName": secret, "dnsNames": names, "issuerRef": issuer},
            }
            if self._missing(f"{self._certificates_path(meta['namespace'])}/{secret}"):
                self._apply(certificate, self._certificates_path(meta["namespace"]))

    def _issue_certificates(self) -> None:
        for certificate in self._list(self._certificates_path()):
            if {c["type"]: c["status"] for c in certificate.get("status", {}).get("conditions", [])}.get("Ready"):
                continue
            meta, spec = certificate["metadata"], certificate["spec"]
            not_after = datetime.now(UTC).replace(microsecond=0) + timedelta(days=CERTIFICATE_DAYS)
            cert, key = certificate_pem(spec.get("dnsNames") or [meta["name"]], not_after)
            secret = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": spec["secretName"], "namespace": meta["namespace"]},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
            }
            self._apply(secret, f"/api/v1/namespaces/{meta['namespace']}/secrets")
            ready = {"type": "Ready", "status": "True", "reason": "Ready", "message": "e2e double"}
            status = {
                "conditions": [{**ready, "lastTransitionTime": _rfc3339(datetime.now(UTC))}],
                "notAfter": _rfc3339(not_after),
            }
            path = f"{self._certificates_path(meta['namespace'])}/{meta['name']}/status"
            self.plane.api("PATCH", path, {"status": status}, content_type="application/merge-patch+json")

    # ------------------------------------------------------------------ changed by a scenario
    def set_package_healthy(self, plural: str, name: str, healthy: bool) -> None:
        """The package's `Healthy` condition, as Crossplane reports a package whose runtime fails or recovers."""
        conditions = [
            {"type": t, "status": s, "reason": t, "lastTransitionTime": _rfc3339(datetime.now(UTC))}
            for t, s in (("Installed", "True"), ("Healthy", str(healthy)))
        ]
        path = f"/apis/{catalog.CROSSPLANE_PKG_API_VERSION}/{plural}/{name}/status"
        self.plane.api(
            "PATCH", path, {"status": {"conditions": conditions}}, content_type="application/merge-patch+json"
        )

    def check_provider_configs(self, healthy: bool) -> None:
        """provider-anynines' periodic check of every ProviderConfig: its endpoint answered (or not)."""
        collection = f"/apis/{catalog.PROVIDER_CONFIG_API_VERSION}/{catalog.PROVIDER_CONFIG_PLURAL}"
        health = {"lastStatus": healthy, "lastCheckTime": _rfc3339(datetime.now(UTC))}
        for config in self._list(collection):
            path = f"{collection}/{config['metadata']['name']}/status"
            self.plane.api("PATCH", path, {"status": {"health": health}}, content_type="application/merge-patch+json")


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_pem(dns_names: list[str], not_after: datetime) -> tuple[bytes, bytes]:
    """A self-signed certificate for `dns_names` valid until `not_after`, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0][:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=CERTIFICATE_DAYS))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key
