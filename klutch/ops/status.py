"""`klutch-status`: one table that says whether a live central cluster is healthy.

    klutch-status [--stack NAME] [--cwd DIR] [--kubeconfig PATH] [--json]

The cluster comes from the stack's `kubeconfig` output (the Pulumi Automation API, like
`pulumi stack output --show-secrets`), or from `--kubeconfig`. What it should hold comes from the
stack's configuration (release, data services, controller, backend host, mirrors); with
`--kubeconfig` and no `--stack`, from what the cluster has. Exit codes: 0 every row is healthy,
1 some row is not (those rows come first), 2 the stack or the cluster cannot be read (one line on
stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from klutch import catalog
from klutch.central import edge
from klutch.config import central as central_config
from klutch.config.reader import ConfigError
from klutch.kube.names import api_group, api_version
from klutch.ops.health import Expected, Package, Row, assess
from klutch.ops.live import Cluster, Unreachable, read_snapshot
from klutch.outputs import CentralOutputs

HEALTHY, UNHEALTHY, UNREADABLE = 0, 1, 2
KUBECONFIG_OUTPUT = CentralOutputs.output_name("kubeconfig")


class StackError(Exception):
    """The stack cannot be read: the message is one line for the operator."""


def _common(release: catalog.KlutchRelease, groups: Sequence[str]) -> dict:
    """The Expected fields every stack shares: names from the catalog and the edge."""
    return {
        "crossplane_namespace": catalog.CHARTS["crossplane"].namespace,
        "crossplane_deployment": catalog.CROSSPLANE_DEPLOYMENT,
        "kube_bind_groups": tuple(sorted(set(groups))),
        "backend_namespace": release.backend_namespace,
        "backend_name": release.backend_name,
        "gateway": edge.GATEWAY,
        "certificate": edge.TLS_SECRET,
        "export_api": api_version(release.kube_bind_group, release.kube_bind_version),
    }


def expected_from_config(cfg: central_config.CentralConfig) -> Expected:
    """What a stack with configuration `cfg` puts on its cluster."""
    release, server = cfg.release, cfg.server
    packages = (
        Package("Provider", catalog.PROVIDER_NAME, release.provider_package),
        *(Package("Function", catalog.function_name(p), p) for p in release.functions),
        Package("Configuration", catalog.CONFIGURATION_NAME, release.configuration_package),
    )
    return Expected(
        **_common(release, [release.kube_bind_group, api_group(server.export_template_api_version)]),
        packages=packages,
        provider_configs=tuple(
            e.provider_config_name(s.key) for s in cfg.data_services for e in catalog.PROVIDER_ENDPOINTS
        ),
        backend_image=server.image,
        controller=cfg.exposure.controller,
        ca_secret=edge.CA_SECRET if cfg.backend.host is None else None,
    )


def expected_from_catalog() -> Expected:
    """Without a stack: the catalog's names for every release; only what the cluster has is listed."""
    releases = catalog.RELEASES.values()
    groups = [r.kube_bind_group for r in releases]
    groups += [api_group(b.export_template_api_version) for r in releases for b in r.backends.values()]
    release = catalog.RELEASES[catalog.DEFAULT_RELEASE]
    return Expected(
        **_common(release, groups),
        packages=(),
        provider_configs=(),
        backend_image=None,
        controller=None,
        ca_secret=None,
    )


def _command_error(error: Exception) -> str:
    """The CLI's own `error:` line of a failed Automation API command, else the error's first line."""
    if isinstance(error, FileNotFoundError):
        return f"the Pulumi CLI is not installed ({error.filename} is not on PATH)"
    text = [line.strip() for line in str(error).splitlines() if line.strip()]
    errors = [line[line.index("error:") :] for line in text if "error:" in line]
    return (errors or text or [type(error).__name__])[0]


def read_stack(cwd: Path, stack: str | None) -> tuple[str, str, Expected]:
    """The stack's name, its `kubeconfig` output and what its configuration declares."""
    from pulumi import automation as auto  # only a stack needs it (and the Pulumi CLI)

    try:
        workspace = auto.LocalWorkspace(work_dir=str(cwd))
        name = stack or getattr(workspace.stack(), "name", None)
        if not name:
            raise StackError(f"no stack is selected in {cwd}: pass --stack NAME (or --kubeconfig PATH)")
        outputs = workspace.stack_outputs(name)
        values = workspace.get_all_config(name)
    except StackError:
        raise
    except Exception as e:  # the CLI's failures (missing stack, passphrase, backend) arrive as many types
        raise StackError(f"cannot read the stack in {cwd}: {_command_error(e)}") from None
    prefix = f"{central_config.NAMESPACE}:"
    raw = {k[len(prefix) :]: v.value for k, v in values.items() if k.startswith(prefix)}
    secret_keys = {k[len(prefix) :] for k, v in values.items() if k.startswith(prefix) and v.secret}
    try:
        with contextlib.chdir(cwd):  # mirrors name local files relative to the project
            cfg = central_config.parse(raw, secret_keys, stack=name)
    except ConfigError as e:
        raise StackError(str(e)) from None  # every problem, each naming its key
    kubeconfig = outputs.get(KUBECONFIG_OUTPUT)
    if kubeconfig is None or not kubeconfig.value:
        raise StackError(f"stack {name} has no `{KUBECONFIG_OUTPUT}` output: run `pulumi up`, or pass --kubeconfig")
    return name, kubeconfig.value, expected_from_config(cfg)


def render_table(rows: Sequence[Row], title: str, console: Console) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("", "COMPONENT", "NAME", "STATE", "DETAIL"):
        table.add_column(column, overflow="fold")
    for row in rows:
        mark = "[green]ok[/green]" if row.healthy else "[bold red]FAIL[/bold red]"
        table.add_row(mark, row.component, row.name, row.state, row.detail)
    console.print(table)
    failing = [f"{r.component} {r.name}" for r in rows if not r.healthy]
    if failing:
        console.print(f"unhealthy: {len(failing)} of {len(rows)} checks fail: {'; '.join(failing)}", markup=False)
    else:
        console.print(f"healthy: all {len(rows)} checks pass", markup=False)


def render_json(rows: Sequence[Row], stack: str | None, server: str) -> str:
    return json.dumps(
        {
            "stack": stack,
            "cluster": server,
            "healthy": all(r.healthy for r in rows),
            "rows": [dataclasses.asdict(r) for r in rows],
        },
        indent=2,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="klutch-status", description="Whether a live central cluster is healthy, as one table."
    )
    parser.add_argument("--stack", help="the central stack (default: the selected one)")
    parser.add_argument("--cwd", type=Path, default=Path("."), help="the central project directory (default: .)")
    parser.add_argument("--kubeconfig", type=Path, help="read this cluster instead of the stack's kubeconfig output")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return parser.parse_args(argv)


def collect(args: argparse.Namespace) -> tuple[str | None, str, list[Row]]:
    """The stack's name (None without one), the API server and the rows."""
    stack, expected = None, expected_from_catalog()
    if args.kubeconfig is None or args.stack:
        stack, kubeconfig, expected = read_stack(args.cwd.resolve(), args.stack)
    if args.kubeconfig is not None:
        try:
            kubeconfig = args.kubeconfig.read_text()
        except OSError as e:
            raise StackError(f"cannot read --kubeconfig {args.kubeconfig}: {e.strerror}") from None
    cluster = Cluster(kubeconfig)
    return stack, cluster.server, assess(expected, read_snapshot(cluster, expected))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        stack, server, rows = collect(args)
    except (StackError, Unreachable) as e:
        print(f"klutch-status: {e}", file=sys.stderr)
        return UNREADABLE
    if args.json:
        print(render_json(rows, stack, server))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        render_table(rows, " ".join(filter(None, ("klutch-central", stack, "at", server))), console)
    return HEALTHY if all(r.healthy for r in rows) else UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
