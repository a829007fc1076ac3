"""Destroy safety under the real engine: a protected stack refuses to destroy and deletes nothing.

(An unprotected destroy keeping the kube-bind CRDs passed twice here but once hung in the Crossplane
Helm release's uninstall; it stays out of the suite until that is understood: docs/e2e.md.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from klutch import catalog
from tests.e2e.cli import Pulumi
from tests.e2e.conftest import central_cluster, central_project
from tests.e2e.controlplane import ControlPlane
from tests.e2e.servers import ChartRepository
from tests.e2e.stacks import configure, existing_cluster_config

pytestmark = pytest.mark.e2e
RELEASE = catalog.RELEASES[catalog.DEFAULT_RELEASE]
WATCHED = (
    "namespaces",
    "customresourcedefinitions",
    "providers.pkg.crossplane.io",
    "providerconfigs.dataservices.anynines.com",
    "deployments",
    "secrets",
    "clusterroles",
)


def inventory(plane: ControlPlane) -> set[tuple[str, str, str]]:
    return {
        (kind, item["metadata"].get("namespace", ""), item["metadata"]["name"])
        for kind in WATCHED
        for item in plane.items(kind)
        if not item["metadata"]["name"].startswith(("system:", "kubeadm:", "default-token"))
    }


def tenant_object(plane: ControlPlane) -> dict:
    """An object a tenant's bind would have made, of a kube-bind kind (what a CRD delete would delete)."""
    plane.kubectl("create", "namespace", "cluster-tenant-a")
    export = {
        "apiVersion": f"{RELEASE.kube_bind_group}/{RELEASE.kube_bind_version}",
        "kind": "APIServiceExport",
        "metadata": {"name": "postgresqlinstances.anynines.com", "namespace": "cluster-tenant-a"},
        "spec": {"resources": [{"group": "anynines.com", "resource": "postgresqlinstances"}]},
    }
    plane.apply(export)
    return export


@contextlib.contextmanager
def deployed(
    protect: bool,
    repo: ChartRepository,
    workspace: dict[str, Path],
    bin_dir: Path,
    plugin_dirs: list[Path],
    tmp: pytest.TempPathFactory,
) -> Iterator[tuple[Pulumi, ControlPlane]]:
    """A central stack deployed with `protect`, plus one tenant object of a kube-bind kind."""
    name = "protected" if protect else "unprotected"
    with central_cluster(name, tmp, bin_dir) as plane:
        pulumi = central_project(workspace, plugin_dirs, name)
        configure(pulumi, plane, existing_cluster_config(plane, repo, RELEASE.name, "envoy-gateway", protect=protect))
        pulumi.up()
        tenant_object(plane)
        yield pulumi, plane


def test_destroy_of_a_protected_stack_is_refused_and_deletes_nothing(
    chart_repo, workspace, bin_dir, plugin_dirs, tmp_path_factory
):
    with deployed(True, chart_repo, workspace, bin_dir, plugin_dirs, tmp_path_factory) as (pulumi, plane):
        before = inventory(plane)
        done = pulumi.run("destroy", "--yes", check=False)
        assert done.returncode != 0
        assert "protected" in (done.stdout + done.stderr).lower()
        assert inventory(plane) == before
        assert plane.exists("apiserviceexports", "postgresqlinstances.anynines.com", "cluster-tenant-a")
