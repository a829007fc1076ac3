"""The one way this project installs a Helm chart: a `helm.v3.Release` of a catalog chart.

`helm.v3.Release` (not v4 Chart) so chart hooks run (cert-manager's startupapicheck, the
ingress-nginx admission job); version pinned by the catalog; bounded timeout; atomic, so a failed
install or upgrade is rolled back instead of leaving a half-applied release.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from klutch import catalog
from klutch.central.security import pod_security_labels


def release(
    resource_name: str,
    key: str,
    chart: catalog.Chart,
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
    *,
    namespace: k8s.core.v1.Namespace,
    version: str | None = None,
) -> k8s.helm.v3.Release:
    """Install `chart` (the catalog's chart `key`, or its mirror) as release `key` into `namespace`: an
    explicit Namespace object the caller owns (see `namespace()`), so `pulumi destroy` removes it and
    nothing is created behind Pulumi's back."""
    return k8s.helm.v3.Release(
        resource_name,
        name=key,
        chart=chart.chart,
        version=version or chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=namespace.metadata.name,
        values=values,
        timeout=chart.timeout_seconds,
        atomic=True,
        cleanup_on_fail=True,
        opts=opts,
    )


def namespace(resource_name: str, key: str, opts: pulumi.ResourceOptions) -> k8s.core.v1.Namespace:
    """The conventional namespace of chart `key` (catalog) as an explicit object, enforcing the strictest
    Pod Security level the chart's pods meet."""
    chart = catalog.CHARTS[key]
    return k8s.core.v1.Namespace(
        resource_name,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=chart.namespace, labels=pod_security_labels(chart.pod_security)),
        opts=opts,
    )


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Chart values `base` with `extra` merged in, nested objects key by key (as Helm merges values files)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged
