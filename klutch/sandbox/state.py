"""Where a sandbox keeps its state, and the record of the processes its service started.

The directory is `$KLUTCH_SANDBOX_DIR`, else `$XDG_STATE_HOME/klutch-central/sandbox`, else
`~/.local/state/klutch-central/sandbox`. It holds the control planes' data and logs, the Pulumi
file backend, the generated passphrase and the projects with their stack files.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ENV_DIR = "KLUTCH_SANDBOX_DIR"


def state_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get(ENV_DIR):
        return Path(env[ENV_DIR]).expanduser()
    base = Path(env["XDG_STATE_HOME"]).expanduser() if env.get("XDG_STATE_HOME") else Path.home() / ".local/state"
    return base / "klutch-central" / "sandbox"


@dataclass(frozen=True)
class Layout:
    """The files of one sandbox under `root`."""

    root: Path

    @property
    def service_file(self) -> Path:
        return self.root / "service.json"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def clusters(self) -> Path:
        return self.root / "clusters"

    def kubeconfig(self, cluster: str) -> Path:
        return self.clusters / cluster / "kubeconfig"

    @property
    def projects(self) -> Path:
        return self.root / "projects"

    @property
    def pulumi_home(self) -> Path:
        return self.root / "pulumi-home"

    @property
    def pulumi_state(self) -> Path:
        return self.root / "pulumi-state"

    @property
    def plugins(self) -> Path:
        return self.root / "plugins"

    def passphrase(self) -> str:
        """The passphrase of the sandbox's stacks: generated once, kept in the state (mode 0600)."""
        path = self.root / "passphrase"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text().strip()


@dataclass
class Service:
    """What the background service records once its control planes and doubles run."""

    pid: int
    pids: dict[str, int] = field(default_factory=dict)  # every process it started, by name
    servers: dict[str, str] = field(default_factory=dict)  # chart repository, backend double, API servers
    client: dict[str, str] = field(default_factory=dict)  # the backend double's OAuth2 client
    started: dict[str, int] = field(default_factory=dict)  # pid -> its start time (no signal to a reused pid)

    def all_pids(self) -> list[int]:
        return [self.pid, *self.pids.values()]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.touch(mode=0o600)  # it holds the backend double's client secret
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Service | None:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return cls(**data)
