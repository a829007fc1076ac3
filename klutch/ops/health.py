"""The health of a live central cluster, decided from its objects: what `klutch-status` prints.

Pure functions over the objects as the Kubernetes API returns them (plain dicts, as `kubectl get -o
json` shows them): `Snapshot` holds what was read, `Expected` what the stack declares, and
`assess()` turns both into one `Row` per component. Nothing here talks to a cluster.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography import x509

from klutch.central.edge import EnvoyGateway, IngressNginx

# cert-manager renews 30 days before expiry: a certificate this close to it has failed to renew.
RENEWAL_MARGIN = timedelta(days=14)
PACKAGE_KINDS = ("Provider", "Function", "Configuration")
FRONT_KINDS = {EnvoyGateway.key: "Gateway", IngressNginx.key: "Ingress"}  # by exposure.controller


@dataclass(frozen=True)
class Row:
    """One line of the status table."""

    component: str
    name: str
    healthy: bool
    state: str
    detail: str = ""


@dataclass(frozen=True)
class Package:
    """A Crossplane package object the stack declares."""

    kind: str  # Provider | Function | Configuration
    name: str
    package: str


@dataclass(frozen=True)
class Expected:
    """What the stack declares; names the live objects are looked up by."""

    crossplane_namespace: str
    crossplane_deployment: str
    packages: tuple[Package, ...]  # empty: only what the cluster has
    provider_configs: tuple[str, ...]  # names; empty: only what the cluster has
    kube_bind_groups: tuple[str, ...]  # the API groups of the kube-bind CRDs
    backend_namespace: str
    backend_name: str
    backend_image: str | None  # None: not known (no stack)
    controller: str | None  # envoy-gateway | ingress-nginx; None: whichever front exists
    gateway: str  # the Gateway's name (envoy-gateway), in the backend namespace
    certificate: str  # the Certificate and its TLS Secret, in the backend namespace
    ca_secret: str | None  # the stack's own CA (no backend.host); None: a public CA
    export_api: str  # group/version of APIServiceExport


@dataclass
class Snapshot:
    """The live objects `assess` reads; None or empty: not found."""

    crossplane: dict[str, Any] | None = None
    packages: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # by kind
    provider_configs: list[dict[str, Any]] = field(default_factory=list)
    crds: list[dict[str, Any]] = field(default_factory=list)  # the kube-bind groups' CRDs
    backend: dict[str, Any] | None = None
    certificate: dict[str, Any] | None = None
    tls_secret: dict[str, Any] | None = None
    ca_secret: dict[str, Any] | None = None
    fronts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (kind, Gateway or Ingress)
    exports: list[dict[str, Any]] = field(default_factory=list)  # APIServiceExports, every namespace


def conditions(obj: Mapping[str, Any]) -> dict[str, str]:
    """`type` → `status` of an object's status conditions."""
    return {c.get("type", ""): c.get("status", "") for c in (obj.get("status") or {}).get("conditions") or []}


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")


def _missing(component: str, name: str) -> Row:
    return Row(component, name, False, "missing", "not found on the cluster")


def _condition_state(obj: Mapping[str, Any], wanted: Sequence[str]) -> tuple[bool, str]:
    found = conditions(obj)
    state = " ".join(f"{t}={found.get(t, 'Unknown')}" for t in wanted)
    return all(found.get(t) == "True" for t in wanted), state


def _image(deployment: Mapping[str, Any]) -> str:
    containers = deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    return containers[0].get("image", "")


def deployment_row(component: str, name: str, deployment: Mapping[str, Any] | None, image: str | None = None) -> Row:
    """Available with at least one ready replica (a Deployment scaled to 0 reports Available too)."""
    if deployment is None:
        return _missing(component, name)
    available, _ = _condition_state(deployment, ["Available"])
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    ready = (deployment.get("status") or {}).get("availableReplicas") or 0
    healthy = available and wanted > 0 and ready > 0
    detail = _image(deployment)
    if image and detail != image:
        detail += f" (the stack sets {image})"
    return Row(component, name, healthy, f"Available={available} replicas {ready}/{wanted}", detail)


def package_rows(expected: Sequence[Package], live: Mapping[str, list[dict[str, Any]]]) -> list[Row]:
    """Every package object on the cluster (Installed and Healthy), and the declared ones missing."""
    rows = []
    for kind in PACKAGE_KINDS:
        found = {_name(obj): obj for obj in live.get(kind, [])}
        for name, obj in sorted(found.items()):
            healthy, state = _condition_state(obj, ["Installed", "Healthy"])
            rows.append(Row(kind, name, healthy, state, (obj.get("spec") or {}).get("package", "")))
        rows += [_missing(kind, p.name) for p in expected if p.kind == kind and p.name not in found]
    return rows


def endpoint_without_credentials(url: str) -> str:
    """`url` without user information, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def provider_config_rows(expected: Iterable[str], live: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Healthy when provider-anynines' last check reached the endpoint (`status.health.lastStatus`)."""
    rows = []
    for obj in sorted(live, key=_name):
        last = ((obj.get("status") or {}).get("health") or {}).get("lastStatus")
        healthy = str(last).lower() == "true"
        state = f"HEALTHY={str(last).lower()}" if last is not None else "HEALTHY=unknown (not checked yet)"
        url = endpoint_without_credentials((obj.get("spec") or {}).get("url", ""))
        rows.append(Row("ProviderConfig", _name(obj), healthy, state, url))
    names = {_name(obj) for obj in live}
    return rows + [_missing("ProviderConfig", name) for name in expected if name not in names]


def crd_rows(groups: Sequence[str], live: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Each kube-bind CRD Established; none at all is a failure."""
    if not live:
        return [Row("kube-bind CRDs", ", ".join(groups), False, "missing", "no CRD of these groups")]
    rows = []
    for crd in sorted(live, key=_name):
        healthy, state = _condition_state(crd, ["Established"])
        rows.append(Row("kube-bind CRD", _name(crd), healthy, state))
    return rows


def certificate_expiry(secret: Mapping[str, Any] | None) -> datetime | None:
    """The expiry of the certificate in a TLS Secret (`tls.crt`, the first of the chain)."""
    data = (secret or {}).get("data") or {}
    if "tls.crt" not in data:
        return None
    try:
        return x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"])).not_valid_after_utc
    except ValueError:
        return None


def _expiry(expiry: datetime | None, now: datetime) -> tuple[bool, str]:
    """Whether a certificate expiring at `expiry` is fine at `now`, and what to say about it."""
    if expiry is None:
        return False, "no certificate in its Secret"
    if expiry <= now:
        return False, f"expired {expiry:%Y-%m-%d %H:%M} UTC"
    if expiry - now < RENEWAL_MARGIN:
        return False, f"expires {expiry:%Y-%m-%d %H:%M} UTC, in under {RENEWAL_MARGIN.days} days: renewal is failing"
    return True, f"expires {expiry:%Y-%m-%d} ({(expiry - now).days} days)"


def certificate_rows(expected: Expected, snapshot: Snapshot, now: datetime) -> list[Row]:
    """The backend's certificate (Ready, and not about to expire) and the stack's own CA, if it has one."""
    name = f"{expected.backend_namespace}/{expected.certificate}"
    if snapshot.certificate is None:
        rows = [_missing("Certificate", name)]
    else:
        ready, state = _condition_state(snapshot.certificate, ["Ready"])
        fine, detail = _expiry(certificate_expiry(snapshot.tls_secret), now)
        rows = [Row("Certificate", name, ready and fine, state, detail)]
    if expected.ca_secret:
        ca_name = f"{expected.backend_namespace}/{expected.ca_secret}"
        if snapshot.ca_secret is None:
            rows.append(_missing("CA", ca_name))
        else:
            fine, detail = _expiry(certificate_expiry(snapshot.ca_secret), now)
            rows.append(Row("CA", ca_name, fine, "present", detail))
    return rows


def front_address(kind: str, obj: Mapping[str, Any]) -> str:
    """The load balancer address a Gateway (`status.addresses`) or Ingress (`status.loadBalancer`) has."""
    status = obj.get("status") or {}
    if kind == "Gateway":
        return ", ".join(a.get("value", "") for a in status.get("addresses") or [])
    entries = (status.get("loadBalancer") or {}).get("ingress") or []
    return ", ".join(e.get("hostname") or e.get("ip") or "" for e in entries)


def front_rows(expected: Expected, fronts: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Row]:
    """The gateway or ingress in front of the backend: healthy once it has an address."""
    if not fronts:
        return [_missing(FRONT_KINDS.get(expected.controller or "", "Gateway/Ingress"), expected.backend_namespace)]
    rows = []
    for kind, obj in fronts:
        address = front_address(kind, obj)
        rows.append(Row(kind, _name(obj), bool(address), "address" if address else "no address", address))
    return rows


def tenant_rows(exports: Sequence[Mapping[str, Any]]) -> list[Row]:
    """One row per tenant namespace with the APIs exported to it; an export reporting Ready False fails it."""
    by_namespace: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for export in exports:
        by_namespace[(export.get("metadata") or {}).get("namespace", "")].append(export)
    if not by_namespace:
        return [Row("Tenants", "-", True, "none bound")]
    rows = []
    for namespace, items in sorted(by_namespace.items()):
        failing = sorted(_name(e) for e in items if conditions(e).get("Ready") == "False")
        apis = ", ".join(sorted((e.get("metadata") or {}).get("name", "") for e in items))
        detail = f"not ready: {', '.join(failing)}" if failing else apis
        rows.append(Row("Tenant", namespace, not failing, f"{len(items)} API{'s' if len(items) > 1 else ''}", detail))
    return rows


def assess(expected: Expected, snapshot: Snapshot, now: datetime | None = None) -> list[Row]:
    """Every row, failing ones first (each group keeps its order)."""
    rows = [
        deployment_row(
            "Crossplane",
            f"{expected.crossplane_namespace}/{expected.crossplane_deployment}",
            snapshot.crossplane,
        ),
        *package_rows(expected.packages, snapshot.packages),
        *provider_config_rows(expected.provider_configs, snapshot.provider_configs),
        *crd_rows(expected.kube_bind_groups, snapshot.crds),
        deployment_row(
            "Backend", f"{expected.backend_namespace}/{expected.backend_name}", snapshot.backend, expected.backend_image
        ),
        *certificate_rows(expected, snapshot, now or datetime.now(UTC)),
        *front_rows(expected, snapshot.fronts),
        *tenant_rows(snapshot.exports),
    ]
    return sorted(rows, key=lambda row: row.healthy)
