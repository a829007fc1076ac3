"""What the real-engine tests and the benchmark set up locally: the toolchain's location, the chart
repository with the kube-bind CRD files, and a central cluster with its doubles (no pytest here)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from klutch import catalog
from klutch.central import edge
from klutch.sandbox.controlplane import ControlPlane, running
from klutch.sandbox.doubles import Doubles, kube_bind_crds
from klutch.sandbox.servers import ChartRepository

TOOLCHAIN = Path(os.environ.get("KLUTCH_TOOLCHAIN_DIR", Path.home() / ".cache/klutch-central/toolchain"))
NEEDED = (
    "pulumi",
    "pulumi-language-python",
    "pulumi-resource-kubernetes",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "actionlint",
)


def missing_binaries() -> list[str]:
    return [b for b in NEEDED if not (TOOLCHAIN / "bin" / b).exists()]


def chart_sources() -> dict[Path, str]:
    """Chart source directory -> the version the catalog pins. Where the Go module proxy does not serve the
    pinned version, the toolchain copied the nearest served one; it is published under the pinned version
    so the program's release finds it (docs/e2e.md lists them)."""
    sources = {}
    for key, chart in catalog.CHARTS.items():
        name = chart.chart.rsplit("/", 1)[-1]
        found = sorted((TOOLCHAIN / "charts").glob(f"{name}-*"))
        if not found:
            raise FileNotFoundError(f"no chart source for {key} in {TOOLCHAIN / 'charts'}: run e2e/toolchain/build")
        sources[found[-1]] = chart.version
    return sources


def chart_repository(root: Path) -> ChartRepository:
    """The charts, plus one kube-bind CRD file per release (`kube-bind-<release>.yaml`)."""
    repo = ChartRepository(root, chart_sources())
    for name, release in catalog.RELEASES.items():
        templates = [b.export_template_api_version for b in release.backends.values()]
        crds = kube_bind_crds(release.kube_bind_group, release.kube_bind_version, templates)
        (repo.root / f"kube-bind-{name}.yaml").write_text(yaml.safe_dump_all(crds))
    return repo


@contextlib.contextmanager
def central_cluster(
    name: str, workdir: Path, lb_hostname: str | None = None, cert_manager: bool = False
) -> Iterator[ControlPlane]:
    """A local cluster with the doubles a central stack needs (Crossplane packages, load balancers;
    with `cert_manager`, certificates issued)."""
    plane = ControlPlane(name=name, bin_dir=TOOLCHAIN / "bin", stages_dir=TOOLCHAIN / "kwok-stages", workdir=workdir)
    envoy = (catalog.CHARTS["envoy-gateway"].namespace, edge.ENVOY_PROXY)
    crossplane_crds = sorted((TOOLCHAIN / "crds").glob("crossplane-*"))[-1]  # Crossplane's own CRDs
    with running(plane), Doubles(plane, crossplane_crds, envoy, lb_hostname, cert_manager) as doubles:
        plane.doubles = doubles
        yield plane
