"""Helpers of the real-engine tests: checking a finished command, a central cluster in a pytest temporary
directory, a central project copy, and `Lab`, the fixtures most scenarios start from. Fixtures themselves
live in conftest.py."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from klutch.sandbox import local
from klutch.sandbox.cli import ROOT, Pulumi, offline_env, project_copy
from klutch.sandbox.controlplane import ControlPlane
from klutch.sandbox.servers import ChartRepository

STDOUT_TAIL, STDERR_TAIL = 5000, 3000


class CommandFailed(AssertionError):
    """A command a scenario needs to succeed exited non-zero; the message holds its output's tail."""


def succeeded(done: subprocess.CompletedProcess, *context: object) -> subprocess.CompletedProcess:
    """`done` itself when its command exited 0; otherwise `CommandFailed` naming the command and its exit
    code, with the tails of its stdout and stderr and each `context` item (e.g. a double's last errors)."""
    if done.returncode == 0:
        return done
    command = done.args if isinstance(done.args, str) else " ".join(map(str, done.args))
    parts = [
        f"{command} failed ({done.returncode})",
        (done.stdout or "")[-STDOUT_TAIL:],
        (done.stderr or "")[-STDERR_TAIL:],
        *(str(item) for item in context),
    ]
    raise CommandFailed("\n".join(parts))


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


def central_project(workspace: dict[str, Path], plugin_dirs: list[Path], stack: str) -> Pulumi:
    """A copy of the central project with a new stack `stack` in the workspace's file backend."""
    cwd = project_copy(ROOT, workspace["base"] / f"central-{stack}")
    pulumi = Pulumi(cwd=cwd, env=offline_env(plugin_dirs, workspace["home"], workspace["state"]), stack=stack)
    pulumi.init()
    return pulumi


@dataclass(frozen=True)
class Lab:
    """The built toolchain, the local chart repository, the module's file backend and plugins: what a
    scenario's setup needs to start a central cluster and create stacks."""

    chart_repo: ChartRepository
    workspace: dict[str, Path]
    bin_dir: Path
    plugin_dirs: list[Path]
    tmp: pytest.TempPathFactory

    def cluster(self, name: str, lb_hostname: str | None = None, cert_manager: bool = False):
        """A central cluster with its doubles (a context manager)."""
        return central_cluster(name, self.tmp, self.bin_dir, lb_hostname, cert_manager)

    def central_project(self, stack: str, plugin_dirs: list[Path] | None = None) -> Pulumi:
        return central_project(self.workspace, self.plugin_dirs if plugin_dirs is None else plugin_dirs, stack)
