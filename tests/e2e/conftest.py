"""Fixtures of the real-engine tests: the built toolchain, local clusters with their doubles, the
local chart repository, one Keycloak, and Pulumi projects copied to temporary directories.

Run with `python -m pytest -m e2e tests/e2e` after `e2e/toolchain/build` (`bash e2e/run` does both).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from klutch.sandbox import local
from klutch.sandbox.cli import ROOT, Pulumi, offline_env, project_copy
from klutch.sandbox.controlplane import ControlPlane
from klutch.sandbox.keycloak import Keycloak
from klutch.sandbox.local import TOOLCHAIN, chart_repository, missing_binaries
from klutch.sandbox.servers import ChartRepository
from klutch.sandbox.standins.provider import write_plugins


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    if missing := missing_binaries():
        pytest.fail(f"the e2e toolchain lacks {', '.join(missing)} in {TOOLCHAIN / 'bin'}: run e2e/toolchain/build")
    return TOOLCHAIN / "bin"


@pytest.fixture(scope="session")
def plugin_dirs(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The toolchain's binaries and the stand-in random/tls providers (tests/e2e/standins)."""
    standins = tmp_path_factory.mktemp("standins")
    write_plugins(standins)
    return [standins, bin_dir]


@pytest.fixture(scope="session")
def chart_repo(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[ChartRepository]:
    with chart_repository(tmp_path_factory.mktemp("chart-repo")) as repo:
        yield repo


@contextlib.contextmanager
def central_cluster(
    name: str,
    tmp_path_factory: pytest.TempPathFactory,
    bin_dir: Path,
    lb_hostname: str | None = None,
    cert_manager: bool = False,
) -> Iterator[ControlPlane]:
    """`local.central_cluster` in a pytest temporary directory (`bin_dir`: the toolchain is built)."""
    workdir = tmp_path_factory.mktemp(f"cluster-{name}")
    with local.central_cluster(name, workdir, lb_hostname, cert_manager) as plane:
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


@pytest.fixture(scope="session")
def keycloak(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[Keycloak]:
    """One real Keycloak for the session (tests/e2e/keycloak.py); its start time and memory are printed."""
    with Keycloak(tmp_path_factory.mktemp("keycloak")) as kc:
        yield kc
        current, peak = kc.rss_mib()
        print(f"\nkeycloak: started in {kc.start_seconds:.0f}s; memory {current:.0f} MiB, peak {peak:.0f} MiB")
