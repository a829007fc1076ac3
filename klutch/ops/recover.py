"""`klutch-recover --stack S`: bring a stack whose `pulumi up` was interrupted hard (a killed CI runner,
`kill -9`, a lost VM) back to where the next `pulumi up` converges, then say to run it.

It runs the `pulumi` CLI on the PATH in the project directory, with the environment `pulumi up` has
(the backend login, `PULUMI_CONFIG_PASSPHRASE`), and reads the cluster with the kubeconfig of the stack's
Kubernetes provider (or `--kubeconfig`). In order:

1. The lock. On a file backend (`file://`) the lock files are read: a lock is lifted (`pulumi cancel`) only
   when its holder is gone (on this host, no `pulumi` process has its pid and no provider plugin runs
   without its `pulumi`; on another host, it is older than `--stale-after` minutes); otherwise nothing
   is changed. Other backends' locks cannot be read
   here: after confirming no update runs, `--unlock` lifts them.
2. The checkpoint. On a file backend, a metadata file of the checkpoint that the kill cut off is removed
   (`cut_off_sidecars`): the CLI cannot read the stack while it is there.
3. The plan (`klutch.ops.recovery`): every pending operation, looked up on the cluster, printed.
4. The Helm records the plan drops, then one `pulumi refresh` that imports the existing objects, clears the
   other pending creates and settles pending updates and deletes.

`--dry-run` prints the lock verdict, the cut-off files and the plan, and changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml
from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError
from urllib3.exceptions import HTTPError

from klutch import catalog
from klutch.ops.recovery import (
    Action,
    Decision,
    HelmRecord,
    Lock,
    Process,
    import_args,
    live_holder,
    orphaned_plugins,
    plan,
)

HELM_OWNER = "owner=helm"
PROGRAM_RELEASES = tuple(
    (chart.namespace, key) for key, chart in catalog.CHARTS.items()
)  # as central/helm.py names them
SHOW_SECRET_SIG = "4dabf18193072939515e22adb298388d"  # an exported secret: {sig: ..., "plaintext": json}


class RecoverError(Exception):
    """A reason to stop, said to the operator without a traceback."""


@dataclass(frozen=True)
class Cli:
    """The Pulumi CLI in one project directory, for one stack."""

    cwd: Path
    stack: str

    def run(self, *args: str, stack: bool = True, stream: bool = False) -> str:
        command = ["pulumi", *args, *(["--stack", self.stack] if stack else []), "--non-interactive"]
        sys.stdout.flush()  # what this command printed comes before the CLI's output
        done = subprocess.run(command, cwd=self.cwd, text=True, stdout=None if stream else subprocess.PIPE)
        if done.returncode != 0:
            raise RecoverError(f"`pulumi {' '.join(args)}` failed (exit {done.returncode}); see its message above")
        return done.stdout or ""

    def state(self) -> dict[str, Any]:
        return json.loads(self.run("stack", "export", "--show-secrets"))

    def backend_url(self) -> str:
        return json.loads(self.run("whoami", "--json", stack=False))["url"]

    def project(self) -> str:
        return yaml.safe_load((self.cwd / "Pulumi.yaml").read_text())["name"]


class LiveCluster:
    """The cluster as the official Kubernetes client sees it."""

    def __init__(self, kubeconfig: str) -> None:
        api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig))
        self._dynamic = dynamic.DynamicClient(api)
        self._core = client.CoreV1Api(api)

    def namespaced(self, api_version: str, kind: str) -> bool | None:
        try:
            return bool(self._dynamic.resources.get(api_version=api_version, kind=kind).namespaced)
        except ResourceNotFoundError:
            return None

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        resource = self._dynamic.resources.get(api_version=api_version, kind=kind)
        try:
            resource.get(name=name, namespace=namespace)
        except NotFoundError:
            return False
        return True

    def helm_records(self, namespace: str, release: str) -> list[HelmRecord]:
        found = self._core.list_namespaced_secret(namespace, label_selector=f"{HELM_OWNER},name={release}")
        return [
            HelmRecord(s.metadata.name, int(s.metadata.labels.get("version", 0)), s.metadata.labels.get("status", ""))
            for s in found.items
        ]

    def drop_helm_record(self, namespace: str, record: HelmRecord) -> None:
        self._core.delete_namespaced_secret(record.secret, namespace)


# ------------------------------------------------------------------------------- the file backend
def backend_root(backend_url: str) -> Path | None:
    """The folder of a file backend (`file://`); None for other backends."""
    url = urlparse(backend_url)
    if url.scheme != "file":
        return None
    return Path(os.path.expanduser("~" if url.netloc == "~" else unquote(url.netloc + url.path)))


def project_and_name(project: str, stack: str) -> tuple[str, str]:
    """The project and the stack's own name, from `<stack>` or `organization/<project>/<stack>`."""
    parts = stack.split("/")
    return (parts[1], parts[2]) if len(parts) == 3 else (project, stack)


def lock_files(backend_url: str, project: str, stack: str) -> list[Path] | None:
    """The lock files of the stack on a file backend; None for other backends."""
    root = backend_root(backend_url)
    if root is None:
        return None
    project, name = project_and_name(project, stack)
    return sorted((root / ".pulumi" / "locks" / "organization" / project / name).glob("*.json"))


def cut_off_sidecars(backend_url: str, project: str, stack: str) -> list[Path]:
    """The metadata files (`<file>.attrs`) of the stack's checkpoint and locks on a file backend that a kill
    cut off. The backend writes a checkpoint whole and renames it into place, but it rewrites the
    checkpoint's metadata file in place just before: a kill in between leaves that file empty or partial,
    and every command on the stack then fails with "failed to load checkpoint: EOF". The file holds the
    content type and an MD5 that nothing checks, and the backend takes the defaults when it is missing."""
    root = backend_root(backend_url)
    if root is None:
        return []
    project, name = project_and_name(project, stack)
    dot = root / ".pulumi"
    found = [
        *(dot / "stacks" / project).glob(f"{name}.json*.attrs"),
        *(dot / "stacks").glob(f"{name}.json*.attrs"),  # a backend of the layout before projects
        *(dot / "locks" / "organization" / project / name).glob("*.attrs"),
    ]
    return sorted(path for path in found if not holds_json_object(path))


def holds_json_object(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text()), dict)
    except (OSError, ValueError):
        return False


def repair_sidecars(cut_off: Sequence[Path], dry_run: bool) -> None:
    """Remove the cut-off metadata files (nothing else is touched); with `dry_run`, name them and stop."""
    for path in cut_off:
        print(f"checkpoint: {path} was cut off by the kill" + ("" if dry_run else ": removed"))
        if not dry_run:
            path.unlink()
    if cut_off and dry_run:
        raise RecoverError("the CLI cannot read the stack until the files above are removed: run without --dry-run")


# ------------------------------------------------------------------------------- the lock
def processes() -> list[Process]:
    """The processes of this host: pid, parent and executable name (from /proc)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or a kernel thread
        found.append(Process(int(proc.name), parent, Path(argv0).name))
    return found


def stale_lock(files: list[Path] | None, stale_after: timedelta, unlock: bool) -> bool:
    """Whether the stack's lock (its `lock_files`) is to be lifted (nothing is changed here); stops when an
    update may still run."""
    if files is None:
        print("lock: this backend's lock cannot be read here" + ("; --unlock: it is lifted" if unlock else ""))
        return unlock
    if not files:
        print("lock: none")
        return False
    now, host, procs = datetime.now(UTC), socket.gethostname(), processes()
    running = [p.pid for p in procs if p.name == "pulumi"]
    locks = [Lock.from_json(str(f), json.loads(f.read_text())) for f in files]
    busy = [f"{lock}: {why}" for lock in locks if (why := live_holder(lock, host, now, stale_after, running))]
    if any(lock.host == host for lock in locks):
        busy += [f"{p.name} (pid {p.pid}) runs without its pulumi" for p in orphaned_plugins(procs)]
    if busy:
        raise RecoverError("an update may still be running; nothing was changed:\n  " + "\n  ".join(busy))
    for lock in locks:
        print(f"lock: stale, its holder is gone: {lock}")
    return True


# ------------------------------------------------------------------------------- the pending operations
def reveal(value: Any) -> Any:
    """A value of `pulumi stack export --show-secrets` with its secret wrapper removed."""
    if isinstance(value, dict) and SHOW_SECRET_SIG in value:
        return json.loads(value["plaintext"]) if "plaintext" in value else value.get("value")
    return value


def stack_kubeconfig(state: dict[str, Any]) -> str:
    """The kubeconfig of the Kubernetes provider the pending operations use."""
    deployment = state.get("deployment", {})
    resources = {r.get("urn"): r for r in deployment.get("resources") or []}
    for op in deployment.get("pending_operations") or []:
        provider_urn = op.get("resource", {}).get("provider", "").rsplit("::", 1)[0]
        provider = resources.get(provider_urn, {})
        if provider.get("type") == "pulumi:providers:kubernetes" and provider.get("inputs", {}).get("kubeconfig"):
            return str(reveal(provider["inputs"]["kubeconfig"]))
    raise RecoverError("no Kubernetes provider with a kubeconfig in the state: pass --kubeconfig PATH")


def show(decisions: Sequence[Decision]) -> None:
    width = max(len(d.action.value) for d in decisions)
    for d in decisions:
        print(f"  {d.action.value:<{width}}  {d.op.type} {d.op.name}: {d.why}")


def apply(cli: Cli, cluster: LiveCluster, decisions: Sequence[Decision]) -> None:
    """Drop the Helm records the plan names, then one refresh that imports, clears and settles."""
    for d in decisions:
        if d.action in (Action.REINSTALL, Action.DROP_PENDING_RECORDS):
            namespace = str(d.op.inputs.get("namespace") or "default")
            for record in d.records:
                cluster.drop_helm_record(namespace, record)
                print(f"dropped Helm record {namespace}/{record.secret} ({record.status})")
    cli.run("refresh", "--yes", "--skip-preview", *import_args(decisions), stream=True)


def recover(args: argparse.Namespace) -> int:
    cli = Cli(Path(args.cwd).resolve(), args.stack)
    where = (cli.backend_url(), cli.project(), cli.stack)
    lift = stale_lock(lock_files(*where), timedelta(minutes=args.stale_after), args.unlock)
    repair_sidecars(cut_off_sidecars(*where), args.dry_run)
    state = cli.state()
    decisions: list[Decision] = []
    cluster: LiveCluster | None = None
    if state.get("deployment", {}).get("pending_operations"):
        kubeconfig = Path(args.kubeconfig).read_text() if args.kubeconfig else stack_kubeconfig(state)
        cluster = LiveCluster(kubeconfig)
        decisions = plan(state, cluster, PROGRAM_RELEASES)
        print("pending operations:")
        show(decisions)
    else:
        print("pending operations: none")
    if manual := [d for d in decisions if d.action is Action.MANUAL]:
        raise RecoverError(f"{len(manual)} pending operation(s) to decide by hand (above); nothing was changed")
    if args.dry_run:
        return 0
    if lift:
        cli.run("cancel", "--yes")
    if cluster is not None:
        apply(cli, cluster, decisions)
    if left := cli.state().get("deployment", {}).get("pending_operations"):
        raise RecoverError(f"{len(left)} pending operation(s) remain after the refresh")
    print(f"recovered: run `pulumi up --stack {args.stack}`")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="klutch-recover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the stack whose update was interrupted")
    parser.add_argument("--cwd", default=".", help="the Pulumi project directory (default: .)")
    parser.add_argument("--kubeconfig", help="the cluster's kubeconfig (default: the stack's provider's)")
    parser.add_argument(
        "--stale-after",
        type=int,
        default=120,
        metavar="MINUTES",
        help="a lock taken on another host is stale after this many minutes (default: 120)",
    )
    parser.add_argument("--unlock", action="store_true", help="lift the lock of a non-file backend")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return recover(args)
    except RecoverError as e:
        print(f"klutch-recover: {e}", file=sys.stderr)
        return 1
    except (ApiException, HTTPError, OSError, json.JSONDecodeError) as e:  # the cluster, a file, the CLI's output
        print(f"klutch-recover: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
