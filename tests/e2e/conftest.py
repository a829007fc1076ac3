"""Fixtures of the real-engine tests: the built toolchain, local clusters with their doubles, the
local chart repository, and Pulumi projects copied to temporary directories.

Run with `python -m pytest -m e2e tests/e2e` after `e2e/toolchain/build` (`bash e2e/run` does both).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from klutch import catalog
from klutch.central import edge
from tests.e2e.cli import ROOT, Pulumi, offline_env, project_copy
from tests.e2e.controlplane import ControlPlane, running
from tests.e2e.doubles import Doubles, kube_bind_crds
from tests.e2e.servers import ChartRepository
from tests.e2e.standins.provider import write_plugins

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
)


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    bins = TOOLCHAIN / "bin"
    missing = [b for b in NEEDED if not (bins / b).exists()]
    if missing:
        pytest.fail(f"the e2e toolchain lacks {', '.join(missing)} in {bins}: run e2e/toolchain/build", False)
    return bins


def chart_sources() -> dict[Path, str]:
    """Chart source directory -> the version the catalog pins. Where the Go module proxy does not serve the
    pinned version, the toolchain copied the nearest served one (see SUBSTITUTED_CHARTS); it is published
    under the pinned version so the program's release finds it."""
    sources = {}
    for key, chart in catalog.CHARTS.items():
        name = chart.chart.rsplit("/", 1)[-1]
        found = sorted((TOOLCHAIN / "charts").glob(f"{name}-*"))
        if not found:
            pytest.fail(f"no chart source for {key} in {TOOLCHAIN / 'charts'}: run e2e/toolchain/build", False)
        sources[found[-1]] = chart.version
    return sources


@pytest.fixture(scope="session")
def plugin_dirs(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The toolchain's binaries and the stand-in random/tls providers (tests/e2e/standins)."""
    standins = tmp_path_factory.mktemp("standins")
    write_plugins(standins)
    return [standins, bin_dir]


@pytest.fixture(scope="session")
def chart_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepository]:
    with ChartRepository(tmp_path_factory.mktemp("chart-repo"), chart_sources()) as repo:
        for name, release in catalog.RELEASES.items():
            crds = kube_bind_crds(
                release.kube_bind_group,
                release.kube_bind_version,
                [b.export_template_api_version for b in release.backends.values()],
            )
            (repo.root / f"kube-bind-{name}.yaml").write_text(yaml.safe_dump_all(crds))
        yield repo


@contextlib.contextmanager
def central_cluster(
    name: str, tmp_path_factory: pytest.TempPathFactory, bin_dir: Path, lb_hostname: str | None = None
) -> Iterator[ControlPlane]:
    """A local cluster with the doubles a central stack needs (Crossplane packages, load balancers)."""
    plane = ControlPlane(
        name=name,
        bin_dir=bin_dir,
        stages_dir=TOOLCHAIN / "kwok-stages",
        workdir=tmp_path_factory.mktemp(f"cluster-{name}"),
    )
    envoy = (catalog.CHARTS["envoy-gateway"].namespace, edge.ENVOY_PROXY)
    crossplane_crds = sorted((TOOLCHAIN / "crds").glob("crossplane-*"))[-1]  # Crossplane's own CRDs
    with running(plane), Doubles(plane, crossplane_crds, envoy, lb_hostname) as doubles:
        plane.doubles = doubles
        yield plane


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pulumi")
    (base / "state").mkdir()
    (base / "home").mkdir()
    return {"base": base, "state": base / "state", "home": base / "home"}


def central_project(workspace: dict[str, Path], plugin_dirs: list[Path], stack: str) -> Pulumi:
    cwd = project_copy(ROOT, workspace["base"] / f"central-{stack}")
    pulumi = Pulumi(cwd=cwd, env=offline_env(plugin_dirs, workspace["home"], workspace["state"]), stack=stack)
    pulumi.init()
    return pulumi


def git_tracked(path: str) -> bool:
    return subprocess.run(["git", "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True).returncode == 0
