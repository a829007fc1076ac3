"""Kubernetes naming: the one spelling of API groups, group/versions, `<resource>.<group>` names and
cluster-role references that the central and tenant layers share. Pure functions, no Pulumi."""

from __future__ import annotations

from typing import Any

RBAC_GROUP = "rbac.authorization.k8s.io"


def api_group(api_version: str) -> str:
    """The group of `<group>/<version>`."""
    return api_version.rsplit("/", 1)[0]


def api_version(group: str, version: str) -> str:
    """`<group>/<version>`."""
    return f"{group}/{version}"


def qualified_resource(resource: str, group: str) -> str:
    """`<resource>.<group>`, or the bare resource of the core group (the name kube-bind gives an API)."""
    return f"{resource}.{group}" if group else resource


def cluster_role_ref(name: Any) -> dict[str, Any]:
    """The roleRef of a ClusterRoleBinding to ClusterRole `name` (a string or an Output)."""
    return {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name}
