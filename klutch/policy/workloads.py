"""Workload security rules: the central stack's own workloads run restricted, their namespaces enforce
Pod Security and have a default-deny NetworkPolicy."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from klutch import catalog
from klutch.policy.model import UNKNOWN, Resource, Violation, known
from klutch.sdk.tree import walk

# ------------------------------------------------------------------------------- workload security
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
PSA = "pod-security.kubernetes.io/"
# Pod Security "restricted": the one capability a container may add, the seccomp profiles it may run under.
ALLOWED_CAPABILITY = "NET_BIND_SERVICE"
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")


def in_central_project(res: Resource) -> bool:
    """The central stack's own objects (the tenant project writes others' manifests: the konnector's)."""
    parts = res.urn.split("::")
    return len(parts) > 2 and parts[1] == catalog.CENTRAL_PROJECT


def pod_spec(res: Resource) -> Mapping[str, Any] | None:
    """The pod spec of a workload object (Pod, CronJob or one with a pod template)."""
    if res.api_group not in ("", "apps", "batch") or not res.kind:
        return None
    path = {"Pod": "spec", "CronJob": "spec.jobTemplate.spec.template.spec"}.get(res.kind)
    if path is None and res.kind in WORKLOAD_KINDS:
        path = "spec.template.spec"
    spec = res.get(path) if path else None
    return spec if isinstance(spec, Mapping) else None


def _container_problems(c: Mapping[str, Any], pod: Mapping[str, Any]) -> Iterator[str]:
    if any(not known(v) for _, v in walk([c.get("securityContext"), pod])):
        return  # a preview that cannot know the settings yet
    sc = c.get("securityContext") if isinstance(c.get("securityContext"), Mapping) else {}
    if sc.get("allowPrivilegeEscalation") is not False:
        yield "allowPrivilegeEscalation is not false"
    if sc.get("privileged") is True:
        yield "is privileged"
    caps = sc.get("capabilities") if isinstance(sc.get("capabilities"), Mapping) else {}
    if "ALL" not in (caps.get("drop") or []):
        yield "capabilities.drop does not list ALL"
    if set(caps.get("add") or []) - {ALLOWED_CAPABILITY}:
        yield f"capabilities.add {caps.get('add')} (only {ALLOWED_CAPABILITY} is allowed)"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield "readOnlyRootFilesystem is not true (mount an emptyDir where it writes)"
    if (sc.get("runAsNonRoot") if "runAsNonRoot" in sc else pod.get("runAsNonRoot")) is not True:
        yield "runAsNonRoot is not true"
    if sc.get("runAsUser", pod.get("runAsUser")) == 0:
        yield "runs as user 0"
    seccomp = sc.get("seccompProfile") or pod.get("seccompProfile") or {}
    if not isinstance(seccomp, Mapping) or seccomp.get("type") not in SECCOMP_TYPES:
        yield f"no seccompProfile of type {' or '.join(SECCOMP_TYPES)}"


def workload_security_context(res: Resource) -> Iterator[str]:
    """Every container of the central stack's own workloads meets Pod Security "restricted" and more:
    non-root, no privilege escalation, no capability, seccomp, a read-only root filesystem."""
    spec = pod_spec(res) if in_central_project(res) else None
    if spec is None:
        return
    pod = spec.get("securityContext") if isinstance(spec.get("securityContext"), Mapping) else {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host) is True:
            yield f"{host} is true"
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            if isinstance(c, Mapping):
                for why in _container_problems(c, pod):
                    yield f"{key}.{i} ({c.get('name', '?')}): {why}"


def _workload_namespaces(resources: Sequence[Resource]) -> dict[str, Resource]:
    """The namespaces holding the central stack's own workloads (known ones), each with one workload."""
    found: dict[str, Resource] = {}
    for res in resources:
        if in_central_project(res) and pod_spec(res) is not None and isinstance(res.namespace, str):
            found.setdefault(res.namespace, res)
    return found


def _labels(res: Resource) -> Any:
    """An object's labels: a mapping, or UNKNOWN during a preview that cannot know them yet."""
    labels = res.get("metadata.labels")
    return labels if isinstance(labels, Mapping) or not known(labels) else {}


def pod_security_labels(resources: Sequence[Resource]) -> Iterator[Violation]:
    """Every namespace the central stack creates enforces a Pod Security level (restricted where its own
    workloads run) and warns and audits at restricted."""
    namespaces = {r.k8s_name: r for r in resources if r.kind == "Namespace" and in_central_project(r)}
    for ns in namespaces.values():
        labels = _labels(ns)
        if not known(labels):
            continue
        if labels.get(f"{PSA}enforce") not in ("baseline", "restricted"):
            yield (
                ns.urn,
                f"{ns.where()}: label {PSA}enforce is {labels.get(f'{PSA}enforce')!r}; set baseline or restricted",
            )
        for mode in ("warn", "audit"):
            if labels.get(f"{PSA}{mode}") != "restricted":
                yield ns.urn, f"{ns.where()}: label {PSA}{mode} is {labels.get(f'{PSA}{mode}')!r}; set restricted"
    for name, workload in _workload_namespaces(resources).items():
        ns = namespaces.get(name)
        labels = _labels(ns) if ns is not None else UNKNOWN
        if known(labels) and labels.get(f"{PSA}enforce") != "restricted":
            yield ns.urn, f"{ns.where()}: holds {workload.where()}, so it must enforce restricted"


def network_policy_present(resources: Sequence[Resource]) -> Iterator[Violation]:
    """Every namespace with the central stack's own workloads has a default-deny NetworkPolicy (all pods,
    ingress and egress) from the stack."""
    denied = set()
    for r in resources:
        if r.kind == "NetworkPolicy" and r.api_group == "networking.k8s.io" and in_central_project(r):
            types = r.get("spec.policyTypes") or []
            if r.get("spec.podSelector") in ({}, {"matchLabels": {}}) and {"Ingress", "Egress"} <= set(types):
                denied.add(r.namespace)
    if any(not isinstance(ns, str) for ns in denied):
        return  # a namespace known only after `up`: cannot tell which one it is
    for name, workload in _workload_namespaces(resources).items():
        if name not in denied:
            yield workload.urn, f"{workload.where()}: namespace {name} has no default-deny NetworkPolicy"
