"""`klutch-sandbox up | status | down`: a local Klutch central cluster and a tenant bound to it, offline.

`up` starts the background service (control planes and doubles) unless it runs, then runs the real
`pulumi up` of the central stack `sandbox` and of the tenant bound to it, and prints what to do next;
on a running sandbox it applies the edited stack file. `status` exits 0 when the service runs and every
health row is ok. `down` stops every process the sandbox started and removes its state; without a
sandbox it does nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from klutch.sandbox import deploy, processes
from klutch.sandbox.cli import ROOT, Pulumi
from klutch.sandbox.local import TOOLCHAIN, missing_binaries
from klutch.sandbox.state import Layout, Service, state_dir

SERVICE_START_TIMEOUT = 420.0
NOT_RUNNING, UNHEALTHY, NO_SANDBOX = 1, 1, 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="klutch-sandbox",
        description="A local Klutch central cluster and a bound tenant: real Pulumi CLI, local control planes.",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help=f"default: {state_dir()} ($KLUTCH_SANDBOX_DIR, $XDG_STATE_HOME)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the sandbox, or apply the edited sandbox stack file")
    sub.add_parser("status", help="exit 0 when the sandbox runs and is healthy")
    sub.add_parser("down", help="stop every process of the sandbox and remove its state")
    return parser.parse_args(argv)


class Progress:
    """One line per step: its number, what it does, the time it usually takes, then how long it took."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def step(self, what: str, estimate: str) -> Progress:
        self.done += 1
        self.what, self.start, self.note = what, time.monotonic(), ""
        print(f"[{self.done}/{self.total}] {what} ({estimate}) ...", flush=True)
        return self

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        outcome = "failed" if exc_type else "done"
        note = f": {self.note}" if self.note and not exc_type else ""
        print(f"      {outcome} in {time.monotonic() - self.start:.0f}s{note}", flush=True)


def start_service(layout: Layout) -> Service:
    """The detached service (its own session; output in logs/service.log) once it has recorded itself."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    log = (layout.logs / "service.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "klutch.sandbox.service", str(layout.root)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + SERVICE_START_TIMEOUT
    while time.monotonic() < deadline:
        service = Service.load(layout.service_file)
        if service is not None and service.pid == proc.pid:
            return service
        if proc.poll() is not None:
            tail = (layout.logs / "service.log").read_text(errors="replace").splitlines()[-25:]
            raise SystemExit("the sandbox service stopped while starting:\n" + "\n".join(tail))
        time.sleep(0.5)
    raise SystemExit(f"the sandbox service did not start within {SERVICE_START_TIMEOUT:.0f}s: see {log.name}")


def ensure_service(layout: Layout, progress: Progress) -> Service:
    """The recorded service when every process of it runs, else a new one; one that stopped is an error."""
    service = Service.load(layout.service_file)
    if service is None:
        with progress.step("control planes (central, tenant), Keycloak and doubles: starting", "about 1 minute"):
            return start_service(layout)
    if processes.stopped(service):
        raise SystemExit(
            f"the sandbox in {layout.root} is not running any more (see {layout.logs / 'service.log'}): "
            "run `./klutch-sandbox down`, then `up`"
        )
    with progress.step("control planes, Keycloak and doubles: running", "reused"):
        return service


def deploy_all(layout: Layout, service: Service, progress: Progress) -> tuple[Pulumi, Pulumi]:
    env = deploy.environment(layout, service)
    with progress.step("central stack `sandbox`: pulumi up", "about 1 minute the first time, 20 seconds after"):
        central = deploy.central(layout, service, env)
        progress.note = changes(central.up().stdout)
        real = central.outputs()
    with progress.step("tenant stack `sandbox`: pulumi up, bound through the backend double", "about 30 seconds"):
        bind = deploy.bind_stack(layout, deploy.bind_outputs(real, service), env)
        tenant = deploy.tenant(layout, service, bind, deploy.tenant_apis(real), env)
        progress.note = changes(tenant.up().stdout)
    return central, tenant


def changes(output: str) -> str:
    """The `Resources:` summary of `pulumi up`, on one line ("+ 2 created, 61 unchanged")."""
    lines = output.split("Resources:", 1)[-1].strip().splitlines() if "Resources:" in output else []
    taken = []
    for line in lines:
        if not line.strip():
            break
        taken.append(line.strip())
    return ", ".join(taken)


def health(layout: Layout, env: dict[str, str]) -> int:
    """`klutch-status` of the central stack (its table on stdout); its exit code."""
    command = [str(ROOT / ".venv" / "bin" / "klutch-status"), "--stack", deploy.STACK]
    return subprocess.run(command, cwd=layout.projects / "central", env=env, timeout=300).returncode


def shown(path: Path) -> str:
    """`path` with the home directory as `~`."""
    home = str(Path.home())
    return "~" + str(path)[len(home) :] if str(path).startswith(home + os.sep) else str(path)


SIMULATED = """\
Real: the Pulumi CLI and engine, the Kubernetes provider with its Helm, both programs, etcd,
  kube-apiserver, kube-controller-manager, kube-scheduler (on 127.0.0.1), Keycloak (the issuer
  check, the tenant's client-credentials token), the tenant's bind client.
Simulated: pods (kwok marks them Ready; no image runs), Crossplane's package manager, the load
  balancer, Envoy Gateway's addresses, provider-anynines' broker check (reported reachable), the
  kube-bind backend (a double on 127.0.0.1 that verifies Keycloak's tokens), the random and tls providers."""


def summary(layout: Layout, central: Pulumi, tenant: Pulumi) -> int:
    print("\nKubeconfigs:")
    for name in ("central", "tenant"):
        print(f"  export KUBECONFIG={shown(layout.kubeconfig(name))}   # {name} cluster")
    print(f"\nCentral stack outputs (pulumi stack output, in {shown(central.cwd)}):")
    print(central.run("stack", "output").stdout.rstrip())
    print("\nTenant stack outputs:")
    print(tenant.run("stack", "output").stdout.rstrip())
    print()
    code = health(layout, central.env)
    print(f"\n{SIMULATED}\n")
    print(f"Edit {shown(central.cwd / 'Pulumi.sandbox.yaml')} and run `./klutch-sandbox up` again to apply it.")
    print(f"Logs: {shown(layout.logs)}. Tear down: ./klutch-sandbox down")
    return code


def up(layout: Layout) -> int:
    if missing := missing_binaries():
        hint = f"in {TOOLCHAIN / 'bin'}: run e2e/toolchain/build (./klutch-sandbox does)"
        print(f"the toolchain lacks {', '.join(missing)} {hint}", file=sys.stderr)
        return 2
    started = time.monotonic()
    progress = Progress(3)
    service = ensure_service(layout, progress)
    try:
        central, tenant = deploy_all(layout, service, progress)
    except AssertionError as e:  # the CLI's failure, with its output
        print(str(e), file=sys.stderr)
        return 1
    print(f"\nThe sandbox is up ({time.monotonic() - started:.0f}s), state in {shown(layout.root)}.")
    return summary(layout, central, tenant)


def status(layout: Layout) -> int:
    service = Service.load(layout.service_file)
    if service is None:
        print(f"no sandbox in {shown(layout.root)}")
        return NO_SANDBOX
    stopped = processes.stopped(service)
    if stopped:
        print(f"the sandbox is not running: stopped {', '.join(stopped)} (logs in {shown(layout.logs)})")
        return NOT_RUNNING
    print(f"the sandbox runs (service pid {service.pid}); health of the central stack:")
    return UNHEALTHY if health(layout, deploy.environment(layout, service)) else 0


def down(layout: Layout) -> int:
    service = Service.load(layout.service_file)
    if service is not None:
        left = processes.stop(service)
        if left:
            print(f"could not stop pids {left}; the state stays in {layout.root}", file=sys.stderr)
            return 1
        print(f"stopped {len(service.all_pids())} processes")
    if layout.root.exists():
        shutil.rmtree(layout.root)
        print(f"removed {shown(layout.root)}")
    else:
        print(f"no sandbox in {shown(layout.root)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    layout = Layout(args.state_dir or state_dir())
    return {"up": up, "status": status, "down": down}[args.command](layout)


if __name__ == "__main__":
    sys.exit(main())
