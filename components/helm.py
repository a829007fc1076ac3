"""The one way this project installs a Helm chart: a `helm.v3.Release` of a catalog chart.

`helm.v3.Release` (not v4 Chart) so chart hooks run (cert-manager's startupapicheck, the
ingress-nginx admission job); version pinned by the catalog; bounded timeout; atomic, so a failed
install or upgrade is rolled back instead of leaving a half-applied release.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from . import catalog


def release(
    resource_name: str,
    key: str,
    values: dict[str, Any],
    opts: pulumi.ResourceOptions,
    *,
    version: str | None = None,
    namespace: pulumi.Input[str] | None = None,
) -> k8s.helm.v3.Release:
    """Install chart `catalog.CHARTS[key]` as release `key`.

    `namespace`: an existing Namespace's name (an explicit object the caller owns); without it,
    Helm creates the chart's conventional namespace.
    """
    chart = catalog.CHARTS[key]
    return k8s.helm.v3.Release(
        resource_name,
        name=key,
        chart=chart.chart,
        version=version or chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
        namespace=namespace or chart.namespace,
        create_namespace=namespace is None,
        values=values,
        timeout=chart.timeout_seconds,
        atomic=True,
        cleanup_on_fail=True,
        opts=opts,
    )
