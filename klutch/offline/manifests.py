"""Kubernetes manifests as the program emits them, and their offline validation.

`manifest()` rebuilds the object a `kubernetes:` resource registration will apply. `check()`
validates it: built-in kinds against the real schemas of the cluster's Kubernetes version with
`kubernetes-validate` (strict: unknown fields fail; a built-in group with no schema for the kind is
an error, not a warning); custom kinds structurally (apiVersion, kind, metadata, spec, DNS-1123 names).
Used by the tests and by `python -m klutch.offline.render --check`.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
from kubernetes_validate import utils as kv

from klutch.offline.mockengine import Evaluation, Registration

# Registrations of the kubernetes provider that are not single manifests.
_NOT_MANIFESTS = ("kubernetes:helm.sh/", "kubernetes:yaml", "pulumi:providers:kubernetes")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Kinds whose names must be DNS-1123 labels (most others accept subdomains).
_LABEL_KINDS = {"Namespace", "Service"}


def is_manifest(reg: Registration) -> bool:
    return (
        reg.type.startswith("kubernetes:") and not reg.type.startswith(_NOT_MANIFESTS) and reg.custom and not reg.read
    )


def manifest(reg: Registration) -> dict[str, Any]:
    """The object as applied (secrets unwrapped; Pulumi's internal keys dropped)."""
    return {k: v for k, v in reg.inputs.items() if not k.startswith("__")}


def manifests(ev: Evaluation) -> list[tuple[Registration, dict[str, Any]]]:
    return [(r, manifest(r)) for r in ev.resources if is_manifest(r)]


# API groups served by the Kubernetes API server itself (Gateway API, cert-manager, Crossplane … are CRDs).
BUILTIN_GROUPS = frozenset(
    {
        "",
        "apps",
        "batch",
        "autoscaling",
        "policy",
        "rbac.authorization.k8s.io",
        "networking.k8s.io",
        "storage.k8s.io",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "scheduling.k8s.io",
        "node.k8s.io",
        "certificates.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "resource.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "apiregistration.k8s.io",
        "storagemigration.k8s.io",
        "internal.apiserver.k8s.io",
    }
)


def is_builtin_group(api_version: str) -> bool:
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group in BUILTIN_GROUPS


def check(obj: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Every problem of one object (empty when it is valid)."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    meta = obj.get("metadata") or {}
    where = f"{kind or '?'} {meta.get('namespace', '') + '/' if meta.get('namespace') else ''}{meta.get('name', '?')}"
    problems = []
    if not api_version or not kind:
        return [f"{where}: apiVersion and kind are required"]
    name = meta.get("name")
    if not name:
        problems.append(f"{where}: metadata.name is required")
    elif not (_DNS1123_LABEL if kind in _LABEL_KINDS else _DNS1123_SUBDOMAIN).match(name) or len(name) > 253:
        problems.append(f"{where}: metadata.name {name!r} is not a valid DNS-1123 name")
    ns = meta.get("namespace")
    if ns is not None and not _DNS1123_LABEL.match(ns):
        problems.append(f"{where}: metadata.namespace {ns!r} is not a valid DNS-1123 label")
    if is_builtin_group(api_version):
        try:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{where}: {path}: {e.message}")
        except kv.SchemaNotFoundError:
            problems.append(
                f"{where}: no schema for built-in kind {kind} {api_version} in Kubernetes {kubernetes_version}"
            )
    else:
        if not isinstance(obj.get("spec"), dict) and kind not in ("CustomResourceDefinition",):
            problems.append(f"{where}: custom resource has no spec")
        unknown = set(obj) - {"apiVersion", "kind", "metadata", "spec"}
        if unknown:
            problems.append(f"{where}: unexpected top-level fields {sorted(unknown)}")
    return problems


def check_all(ev: Evaluation, kubernetes_version: str) -> list[str]:
    return [p for _, obj in manifests(ev) for p in check(obj, kubernetes_version)]
