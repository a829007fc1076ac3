"""The Pulumi projects of this repository and their shipped stacks (the stack files git tracks;
without git, each project's declared list)."""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from klutch.config.reader import show

ROOT = Path(__file__).resolve().parents[2]  # the repository of an editable install (see find_root)


class RenderError(Exception):
    """A problem with the render's inputs (printed as `error: ...`, like a ConfigError)."""


@dataclass(frozen=True)
class Project:
    """A Pulumi project of this repository: where it lives and which modules make it."""

    name: str  # Pulumi.yaml `name`
    directory: str  # relative to the repository root
    config_module: str  # NAMESPACE and secret_paths(raw)
    program_module: str  # main()
    shipped: tuple[str, ...] = ()  # its stacks when git cannot say which stack files are tracked

    def config(self) -> Any:
        return importlib.import_module(self.config_module)

    def program(self) -> Callable[[], None]:
        return importlib.import_module(self.program_module).main


PROJECTS: tuple[Project, ...] = (
    Project("klutch-central", ".", "klutch.config.central", "klutch.central.program", ("dev", "kind", "prod")),
    Project("klutch-tenant", "tenant", "klutch.config.tenant", "klutch.tenant.program", ("example",)),
)
CENTRAL = PROJECTS[0]


def _project_name(directory: Path) -> Any:
    try:
        return (yaml.safe_load((directory / "Pulumi.yaml").read_text()) or {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def find_root(start: Path | None = None) -> Path:
    """The repository: the nearest directory at or above `start` (default: the working directory)
    holding the central project; else the one this module was installed from."""
    start = Path.cwd() if start is None else Path(start)
    for directory in (start.resolve(), *start.resolve().parents):
        if _project_name(directory / CENTRAL.directory) == CENTRAL.name:
            return directory
    return ROOT


def project_at(directory: Path) -> Project:
    file = directory / "Pulumi.yaml"
    if not file.exists():
        raise RenderError(f"{file} does not exist: --project-dir must name a Pulumi project directory")
    name = (yaml.safe_load(file.read_text()) or {}).get("name")
    for project in PROJECTS:
        if project.name == name:
            return project
    raise RenderError(f"{file}: unknown project {show(name)}; known: {', '.join(p.name for p in PROJECTS)}")


def _stack_name(file: str) -> str:
    return file[len("Pulumi.") : -len(".yaml")]


def stack_files(directory: Path) -> list[str]:
    """Every stack file in `directory`, shipped or a user's own: what --stack can render."""
    return sorted(_stack_name(p.name) for p in directory.glob("Pulumi.*.yaml"))


def tracked_stack_files(directory: Path) -> list[str] | None:
    """The stack files git tracks in `directory`; None when git cannot say (no git, not a checkout)."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "-z", "--", "Pulumi.*.yaml"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return sorted(_stack_name(f) for f in done.stdout.split("\0") if f and "/" not in f)


def shipped_stack_files(project: Project, directory: Path) -> list[str]:
    """The project's shipped stacks: the tracked stack files, or (without git) its declared list."""
    tracked = tracked_stack_files(directory)
    if tracked is not None:
        return tracked
    return [s for s in project.shipped if (directory / f"Pulumi.{s}.yaml").exists()]


def committed_stacks(root: Path | None = None) -> list[tuple[Project, Path, str]]:
    """(project, directory, stack) of every shipped stack of every project present (--all, --list)."""
    root = find_root() if root is None else root
    found = []
    for project in PROJECTS:
        directory = root / project.directory
        if (directory / "Pulumi.yaml").exists() and project_at(directory) == project:
            found += [(project, directory, stack) for stack in shipped_stack_files(project, directory)]
    return found
