"""The real Pulumi CLI, run offline: plugins from the toolchain's bin directory, a file backend, no downloads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "klutch-e2e-passphrase"
COMMAND_TIMEOUT = 1500


def offline_env(bin_dirs: list[Path], home: Path, backend: Path) -> dict[str, str]:
    """The environment every CLI call gets: what an air-gapped operator sets, plus a private PULUMI_HOME.

    The project's virtualenv is on PATH: the Python language host runs `python3` from there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "KUBECONFIG", "AWS_"))}
    path = [*map(str, bin_dirs), str(ROOT / ".venv" / "bin"), env.get("PATH", "")]
    env.update(
        {
            "PATH": os.pathsep.join(path),
            "PULUMI_HOME": str(home),
            "PULUMI_BACKEND_URL": backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_DISABLE_REGISTRY_RESOLVE": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "KUBECONFIG": str(home / "no-ambient-kubeconfig"),  # nothing may fall back to an ambient cluster
        }
    )
    return env


def project_copy(source: Path, dest: Path) -> Path:
    """A throw-away copy of a Pulumi project (its stack files are written there, never in the checkout).

    The shared virtualenv is linked in, so the copy runs the checkout's `klutch` package."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("Pulumi.yaml", "__main__.py", "requirements.txt"):
        shutil.copy(source / name, dest / name)
    venv = yaml_virtualenv(source / "Pulumi.yaml")
    link = dest / venv
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to((source / venv).resolve())
    return dest


def yaml_virtualenv(project_file: Path) -> str:
    import yaml

    return yaml.safe_load(project_file.read_text())["runtime"]["options"]["virtualenv"]


@dataclass
class Pulumi:
    """`pulumi` in one project directory against one stack of a file backend."""

    cwd: Path
    env: dict[str, str]
    stack: str

    def run(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess:
        cut = args.index("--") if "--" in args else len(args)  # flags go before a `--` value separator
        done = subprocess.run(
            ["pulumi", *args[:cut], "--stack", self.stack, "--non-interactive", *args[cut:]],
            cwd=self.cwd,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"pulumi {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def init(self) -> None:
        subprocess.run(
            ["pulumi", "stack", "init", self.stack, "--non-interactive"],
            cwd=self.cwd,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def config(self, key: str, value: str, *, secret: bool = False, path: bool = False) -> None:
        flags = [*(["--secret"] if secret else []), *(["--path"] if path else [])]
        self.run("config", "set", *flags, key, "--", value)

    def up(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("up", "--yes", "--skip-preview", *extra, check=check)

    def preview(self, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("preview", *extra, check=check)

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout)

    def state(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "export").stdout)

    def resources(self) -> list[dict[str, Any]]:
        return self.state()["deployment"].get("resources", [])
