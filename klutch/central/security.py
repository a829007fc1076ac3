"""Workload security of the objects the program writes itself: pure functions, no Pulumi resources.

- Pod Security Admission labels for every namespace the program creates: `enforce` at the strictest level
  its pods meet, `warn` and `audit` at `restricted` everywhere (what a stricter namespace would refuse
  shows in `kubectl` warnings and the audit log).
- The restricted security contexts of the kube-bind backend's pod.
- NetworkPolicies: the backend's namespace denies everything by default; the backend is reached only from
  the ingress/gateway controller's namespace on its port and reaches only DNS, the API server and the OIDC
  issuer. The Crossplane provider reaches only DNS, the API server and the configured brokers and backup
  managers. A CNI without NetworkPolicy support stores these objects and enforces none of them.
- The scanner's (checkov's) in-manifest skips: each names the check and why the object cannot pass it.

NetworkPolicies match addresses, never DNS names: an endpoint configured by name is allowed on its port to
the configured CIDRs (`networkPolicy.*Cidrs`, default: anywhere).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PSA_LABEL = "pod-security.kubernetes.io/"
RESTRICTED = "restricted"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
# The backend's user and group: distroless `nonroot`, the user ko-built images run as.
BACKEND_UID = 65532
BACKEND_TMP = "/tmp"  # the only writable path of the backend's read-only root filesystem
DNS_PORT = 53
API_SERVER_PORTS = (443, 6443)  # the API server's secure port: 443 (EKS, managed clusters) or 6443 (kubeadm, kind, k3s)
ACME_SOLVER_LABEL = "acme.cert-manager.io/http01-solver"  # cert-manager's HTTP-01 solver pods
ACME_SOLVER_PORT = 8089
CROSSPLANE_PROVIDER_LABEL = "pkg.crossplane.io/provider"  # a provider's pods: the package's name
SCANNER_SKIP = "checkov.io/skip"  # + index: `CKV_K8S_<n>=<reason>`


def pod_security_labels(enforce: str) -> dict[str, str]:
    """The namespace labels: `enforce` at `enforce`, `warn` and `audit` at restricted."""
    return {f"{PSA_LABEL}enforce": enforce, f"{PSA_LABEL}warn": RESTRICTED, f"{PSA_LABEL}audit": RESTRICTED}


def pod_security_context(uid: int) -> dict[str, Any]:
    """A restricted pod: a non-root user and group, its volumes owned by that group, the runtime's seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """A restricted container: no privilege escalation, no capability, a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def scanner_skips(reasons: Mapping[str, str]) -> dict[str, str]:
    """The annotations that skip scanner checks, `{check id: reason}`, one `checkov.io/skipN` each."""
    return {f"{SCANNER_SKIP}{i}": f"{check}={reason}" for i, (check, reason) in enumerate(reasons.items(), 1)}


# ------------------------------------------------------------------------------- NetworkPolicies
@dataclass(frozen=True)
class Peer:
    """Where traffic may go: CIDR blocks, or the pods of a namespace, on TCP ports."""

    ports: tuple[int, ...]
    cidrs: tuple[str, ...] = ()
    namespace: str | None = None
    pod_labels: Mapping[str, str] | None = None

    def rule(self) -> dict[str, Any]:
        peers: list[dict[str, Any]] = [{"ipBlock": {"cidr": cidr}} for cidr in self.cidrs]
        if self.namespace:
            peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: self.namespace}}}
            if self.pod_labels:
                peer["podSelector"] = {"matchLabels": dict(self.pod_labels)}
            peers.append(peer)
        return {"to": peers, "ports": [{"protocol": "TCP", "port": port} for port in self.ports]}


def dns_rule() -> dict[str, Any]:
    """DNS on any address: cluster DNS Services, node-local caches and their pods' labels differ by cluster."""
    return {"ports": [{"protocol": protocol, "port": DNS_PORT} for protocol in ("UDP", "TCP")]}


def url_peer(url: str, cidrs_by_name: Sequence[str]) -> Peer:
    """The peer of an endpoint URL: its address as a single-host block when the URL names an IP, else
    `cidrs_by_name`; its port, or the scheme's."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return Peer((port,), tuple(cidrs_by_name))
    return Peer((port,), (str(ipaddress.ip_network(address)),))


def merge_peers(peers: Iterable[Peer]) -> list[Peer]:
    """One peer per destination, with every port it is reached on (sorted), in first-seen order."""
    merged: dict[tuple[Any, ...], set[int]] = {}
    for p in peers:
        key = (p.cidrs, p.namespace, tuple(sorted((p.pod_labels or {}).items())))
        merged.setdefault(key, set()).update(p.ports)
    return [
        Peer(tuple(sorted(ports)), cidrs, namespace, dict(labels) or None)
        for (cidrs, namespace, labels), ports in merged.items()
    ]


def default_deny_spec() -> dict[str, Any]:
    """Every pod of the namespace: no traffic in or out unless another policy allows it."""
    return {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def ingress_from_namespace(namespace: str, port: int) -> dict[str, Any]:
    return {
        "from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}],
        "ports": [{"protocol": "TCP", "port": port}],
    }


def policy_spec(
    pod_labels: Mapping[str, str], ingress: Sequence[dict[str, Any]] | None, egress: Sequence[Peer] | None
) -> dict[str, Any]:
    """A NetworkPolicy for the pods with `pod_labels`: the ingress rules, and DNS plus `egress` out
    (None: that direction is not restricted by this policy)."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(pod_labels)}, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = list(ingress)
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = [dns_rule(), *(p.rule() for p in merge_peers(egress))]
    return spec
