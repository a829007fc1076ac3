"""Destroy safety under the real engine: a protected stack refuses to destroy and deletes nothing; an
unprotected one deletes what it owns and keeps the kube-bind CRDs and tenants' objects of their kinds."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from klutch import catalog
from klutch.sandbox.cli import Pulumi
from klutch.sandbox.controlplane import ControlPlane
from tests.e2e.helpers import Lab, succeeded
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


KUBE_BIND_KINDS = (
    "apiservicebindings",
    "apiserviceexportrequests",
    "apiserviceexports",
    "apiservicenamespaces",
    "clusterbindings",
)


def uids(plane: ControlPlane, resource: str) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in plane.items(resource)}


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


@pytest.fixture(scope="module")
def deployed(lab: Lab) -> Iterator[tuple[Pulumi, ControlPlane]]:
    """A protected central stack, plus one tenant object of a kube-bind kind. The tests run in the
    teardown order of docs/operations.md: a destroy refused, the lock lifted by an `up`, the destroy."""
    with lab.cluster("teardown") as plane:
        pulumi = lab.central_project("teardown")
        configure(
            pulumi, plane, existing_cluster_config(plane, lab.chart_repo, RELEASE.name, "envoy-gateway", protect=True)
        )
        pulumi.up()
        tenant_object(plane)
        yield pulumi, plane


def test_destroy_of_a_protected_stack_is_refused_and_deletes_nothing(deployed):
    pulumi, plane = deployed
    before = inventory(plane)
    done = pulumi.run("destroy", "--yes", check=False)
    assert done.returncode != 0
    assert "protected" in (done.stdout + done.stderr).lower()
    assert inventory(plane) == before
    assert plane.exists("apiserviceexports", "postgresqlinstances.anynines.com", "cluster-tenant-a")


@contextlib.contextmanager
def recreated_roles_removed(plane: ControlPlane) -> Iterator[list[str]]:
    """The remedy docs/operations.md gives for Kubernetes re-creating one of Crossplane's aggregated
    ClusterRoles while Helm uninstalls it: delete a `crossplane…` ClusterRole without labels. Yields
    the names it deleted."""
    removed: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(2):
            for role in plane.items("clusterroles"):
                name = role["metadata"]["name"]
                if name.startswith("crossplane") and not role["metadata"].get("labels"):
                    plane.kubectl("delete", "clusterrole", name, "--ignore-not-found", check=False)
                    removed.append(name)

    thread = threading.Thread(target=watch, name="recreated-roles", daemon=True)
    thread.start()
    try:
        yield removed
    finally:
        stop.set()
        thread.join(timeout=30)


def test_with_the_lock_lifted_destroy_keeps_the_kube_bind_crds_and_tenant_objects(deployed):
    pulumi, plane = deployed
    pulumi.config("klutch-central:protect", "false")
    pulumi.up()  # teardown step 2: the update removes the protection from the state, nothing else
    assert not any(r.get("protect") for r in pulumi.resources())
    crds = uids(plane, "customresourcedefinitions")
    kube_bind = {name: uid for name, uid in crds.items() if name.endswith(f".{RELEASE.kube_bind_group}")}
    assert {f"{k}.{RELEASE.kube_bind_group}" for k in KUBE_BIND_KINDS} <= kube_bind.keys()
    with recreated_roles_removed(plane) as removed:
        done = pulumi.run("destroy", "--yes", "--skip-preview", check=False, timeout=600)
    print(f"ClusterRoles re-created by Kubernetes during the uninstall and removed: {removed or 'none'}")
    succeeded(done)
    assert pulumi.resources() == []
    assert kube_bind.items() <= uids(plane, "customresourcedefinitions").items()  # retained, same uids
    assert plane.exists("apiserviceexports", "postgresqlinstances.anynines.com", "cluster-tenant-a")
    assert not plane.exists("namespace", "crossplane-system")  # what the stack owns is gone
    assert not plane.exists("deployment", RELEASE.backend_name, RELEASE.backend_namespace)
    assert not any(r["metadata"]["name"].startswith("crossplane") for r in plane.items("clusterroles"))
