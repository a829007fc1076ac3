"""The policy rules as one table (name, description, check, enforcement), and `check`, which runs
them over neutral `Resource`s: plain functions, importable anywhere.

Two callers share them, so there is one implementation of each rule:

- the real policy pack (`policy/__main__.py`, run by `pulumi preview/up --policy-pack policy`), through
  `klutch.policy.pack`, which wraps every rule in a pulumi_policy policy;
- the offline renderer (`klutch-render --check`): `check(resources, environment)` over
  `model.from_registration(...)` of the mock engine's records.

Importing this module starts nothing and does not need `pulumi_policy`: the only `PolicyPack(...)`
call lives in `policy/__main__.py`.

Enforcement: every rule is mandatory, except the ones marked `advisory_outside_prod`, which are
mandatory only when the stack's `environment` is `prod` (advisory in dev and staging).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from klutch import catalog
from klutch.policy.model import Resource
from klutch.policy.resource_checks import (
    eks_managed_nodes_only,
    eks_public_endpoint,
    eks_secrets_encryption,
    explicit_provider,
    no_load_balancers,
    pinned_versions,
)
from klutch.policy.stack_checks import cluster_admin_only_backend, node_group_imdsv2, node_group_private, tls_everywhere
from klutch.policy.workloads import network_policy_present, pod_security_labels, workload_security_context


# ------------------------------------------------------------------------------- the rule table
@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[..., Iterable[Any]]
    stack: bool = False  # a whole-stack rule: check(resources) -> (urn, message)
    advisory_outside_prod: bool = False
    remediation: str = ""

    def level(self, environment: str) -> str:
        return "advisory" if self.advisory_outside_prod and environment != "prod" else "mandatory"


RULES: tuple[Rule, ...] = (
    Rule(
        "eks-public-endpoint-restricted",
        "The EKS public API endpoint is not open to the whole internet.",
        eks_public_endpoint,
        advisory_outside_prod=True,
        remediation=(
            "Set cluster.publicAccessCidrs to the operators' networks or cluster.endpointPublicAccess to false."
        ),
    ),
    Rule("eks-secrets-encryption", "Kubernetes Secrets are envelope-encrypted with a KMS key.", eks_secrets_encryption),
    Rule(
        "eks-managed-nodes-only",
        "The EKS component's self-managed default node group is off; nodes get no public IPs.",
        eks_managed_nodes_only,
    ),
    Rule(
        "eks-nodes-imdsv2",
        "Node groups require IMDSv2 (launch template metadataOptions.httpTokens: required).",
        node_group_imdsv2,
        stack=True,
    ),
    Rule("eks-nodes-private", "Nodes get no public IP addresses.", node_group_private, stack=True),
    Rule(
        "pinned-versions",
        "Every container image, Helm chart, Crossplane package and remote manifest is pinned.",
        pinned_versions,
        remediation="Pin the version in klutch/catalog.py.",
    ),
    Rule("tls-on-exposed-routes", "Every Ingress and Gateway route is served over TLS.", tls_everywhere, stack=True),
    Rule(
        "no-loadbalancer-services", "Only the ingress/gateway controller has a LoadBalancer Service.", no_load_balancers
    ),
    Rule(
        "cluster-admin-only-backend",
        "The only cluster-admin binding is the kube-bind backend's.",
        cluster_admin_only_backend,
        stack=True,
    ),
    Rule(
        "workload-security-context",
        "The central stack's workloads run non-root, without privilege escalation or capabilities, with "
        "seccomp and a read-only root filesystem.",
        workload_security_context,
        remediation="Set the pod's and every container's securityContext (klutch/central/security.py).",
    ),
    Rule(
        "pod-security-labels",
        "Every namespace the central stack creates enforces Pod Security (restricted where its workloads run) "
        "and warns and audits at restricted.",
        pod_security_labels,
        stack=True,
    ),
    Rule(
        "network-policy-present",
        "Every namespace with the central stack's workloads has a default-deny NetworkPolicy.",
        network_policy_present,
        stack=True,
    ),
    Rule(
        "explicit-kubernetes-provider",
        "Every Kubernetes resource uses the program's explicit provider.",
        explicit_provider,
    ),
)


# ------------------------------------------------------------------------------- callers


def environment(value: Any) -> str:
    """A stack's `environment` config value as the rules read it: unset is the program's default
    (dev); anything unknown is treated as prod (strict)."""
    if value is None:
        return "dev"
    return value if value in catalog.ENVIRONMENTS else "prod"


def environment_in(config: Mapping[str, Any], project: str) -> str:
    """The `environment` of project `project` in a stack config keyed `<project>:<key>`."""
    return environment(config.get(f"{project}:environment"))


def environment_from_process() -> str:
    """The environment of the stack as older Pulumi CLIs (v3.79, for one) pass it to a pack: the stack's
    config in PULUMI_CONFIG and the project in PULUMI_PROJECT (current CLIs: `follow_stack_config`)."""
    try:
        config = json.loads(os.environ.get("PULUMI_CONFIG") or "{}")
    except ValueError:
        config = {}
    return environment_in(config, os.environ.get("PULUMI_PROJECT", ""))


@dataclass(frozen=True)
class Finding:
    policy: str
    level: str  # mandatory | advisory
    urn: str
    message: str

    def __str__(self) -> str:
        return f"[{self.level}] {self.policy}: {self.message}"


def check(resources: Sequence[Resource], environment: str) -> list[Finding]:
    """Every rule over every resource (the offline renderer's entry point)."""
    found = []
    for rule in RULES:
        level = rule.level(environment)
        if rule.stack:
            found += [Finding(rule.name, level, urn, msg) for urn, msg in rule.check(resources)]
        else:
            for res in resources:
                found += [Finding(rule.name, level, res.urn, f"{res.where()}: {msg}") for msg in rule.check(res)]
    return found
