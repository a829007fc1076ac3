"""Real-engine benchmark: the central stack against the engine's floor, under the real Pulumi CLI.

Run from the repository root after `e2e/toolchain/build`:

    .venv/bin/python -m benchmarks.real_engine

One local control plane (with the e2e doubles), the local chart repository and the stand-in
random/tls plugins are started once. Two stacks are timed on it, each through `pulumi preview`,
`pulumi up` from empty and a no-change `pulumi up`:

- central: the klutch-central project (stack "bench", existing cluster, envoy-gateway);
- floor: a tiny Python program with one resource per provider the central program uses (a
  Kubernetes ConfigMap through an explicit provider, a RandomBytes, an ECDSA P256 PrivateKey).

The absolute times depend on the machine; the ratios central/floor are what to compare.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from klutch import catalog
from klutch.sandbox.cli import Pulumi, offline_env, project_copy
from klutch.sandbox.controlplane import ControlPlane
from klutch.sandbox.local import TOOLCHAIN, central_cluster, chart_repository, missing_binaries
from klutch.sandbox.standins.provider import write_plugins
from tests.e2e.stacks import configure, existing_cluster_config

ROOT = Path(__file__).resolve().parents[1]

CONTROLLER = "envoy-gateway"
OPERATIONS = ("preview", "up (from empty)", "up (no change)")

FLOOR_PROGRAM = '''"""The engine's floor: one resource per provider the central program uses."""

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls

config = pulumi.Config()
provider = k8s.Provider("cluster", kubeconfig=config.require_secret("kubeconfig"))
k8s.core.v1.ConfigMap(
    "floor",
    metadata={"name": "floor", "namespace": "default"},
    data={"key": "value"},
    opts=pulumi.ResourceOptions(provider=provider),
)
random.RandomBytes("floor", length=32)
tls.PrivateKey("floor", algorithm="ECDSA", ecdsa_curve="P256")
'''


def floor_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    (dest / "Pulumi.yaml").write_text(
        yaml.safe_dump(
            {
                "name": "klutch-floor",
                "runtime": {"name": "python", "options": {"toolchain": "pip", "virtualenv": str(ROOT / ".venv")}},
            },
            sort_keys=False,
        )
    )
    (dest / "__main__.py").write_text(FLOOR_PROGRAM)
    return dest


def timed(pulumi: Pulumi, plane: ControlPlane) -> tuple[dict[str, float], int]:
    """Seconds of preview, up from empty and a no-change up; then the number of resources in the state."""
    seconds: dict[str, float] = {}
    for operation, args in zip(
        OPERATIONS,
        (("preview",), ("up", "--yes", "--skip-preview"), ("up", "--yes", "--skip-preview")),
        strict=True,
    ):
        start = time.monotonic()
        done = pulumi.run(*args, check=False)
        seconds[operation] = time.monotonic() - start
        if done.returncode != 0:
            errors = getattr(plane, "doubles", None)
            raise RuntimeError(
                f"{pulumi.cwd.name}: pulumi {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout[-5000:]}\n{done.stderr[-2000:]}\n"
                f"doubles: {errors.errors[-5:] if errors else []}"
            )
        print(f"  {pulumi.cwd.name}: {operation}: {seconds[operation]:.1f} s", flush=True)
    return seconds, len(pulumi.resources())


def main() -> int:
    bin_dir = TOOLCHAIN / "bin"
    missing = missing_binaries()
    if missing:
        print(f"the e2e toolchain lacks {', '.join(missing)} in {bin_dir}: run e2e/toolchain/build", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="klutch-bench-"))
    try:
        standins = tmp / "standins"
        write_plugins(standins)
        plugin_dirs = [standins, bin_dir]
        (tmp / "state").mkdir()
        (tmp / "home").mkdir()
        env = offline_env(plugin_dirs, tmp / "home", tmp / "state")

        with chart_repository(tmp / "chart-repo") as repo, central_cluster("bench", tmp / "cluster") as plane:
            print(f"control plane at {plane.server}, charts at {repo.url}", flush=True)

            central = Pulumi(cwd=project_copy(ROOT, tmp / "central"), env=env, stack="bench")
            central.init()
            configure(central, plane, existing_cluster_config(plane, repo, catalog.DEFAULT_RELEASE, CONTROLLER))
            central_seconds, central_count = timed(central, plane)

            floor = Pulumi(cwd=floor_project(tmp / "floor"), env=env, stack="floor")
            floor.init()
            floor.run("config", "set", "--secret", "kubeconfig", input=plane.kubeconfig_path.read_text())
            floor_seconds, floor_count = timed(floor, plane)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print()
    print("Real-engine benchmark: ratios from one run; the absolute times depend on the machine.")
    print()
    print("| operation | central | floor | ratio (central/floor) |")
    print("|---|---|---|---|")
    for operation in OPERATIONS:
        c, f = central_seconds[operation], floor_seconds[operation]
        print(f"| `{operation}` | {c:.1f} s | {f:.1f} s | {c / f:.1f}× |")
    print(f"| resources in state | {central_count} | {floor_count} | {central_count / floor_count:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
