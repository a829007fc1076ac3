"""klutch-fleet: the tenant fleet from the command line and from the workflows (docs/tenant.md).

    klutch-fleet select --base SHA [--head SHA] [--github-output FILE]   # which stacks a merge deploys
    klutch-fleet up [--parallel N] [--policy-pack DIR] STACK...          # pulumi up, N at a time
    klutch-fleet retire [--parallel N] STACK...                          # pulumi destroy + stack rm
    klutch-fleet status [--check-drift] [--json]                         # the fleet view
    klutch-fleet secrets --project P (--stack S | --all)                 # secret config from $PULUMI_SECRET_CONFIG

The Pulumi commands run in the tenant project (`--project-dir`, default `tenant`) against the backend
and with the secrets the environment sets (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE or a KMS key).
Progress goes to stderr, results to stdout. Exit codes: 0 success; 1 a failed stack or an error;
`status`: 2 when a stack is unhealthy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pulumi import automation as auto

from klutch.fleet import runner, secrets, select, status


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klutch-fleet", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    chooser = commands.add_parser("select", help="the tenant stacks to update and to retire between two commits")
    chooser.add_argument("--base", required=True, help="the commit deployed last (empty or zeros: unknown)")
    chooser.add_argument("--head", default="HEAD", help="the commit to deploy (default HEAD)")
    chooser.add_argument("--repo", type=Path, default=Path("."), help="the repository (default: .)")
    chooser.add_argument("--github-output", type=Path, metavar="FILE", help="append up-<central>= and retire=")
    for name, text in (("up", "pulumi up of tenant stacks"), ("retire", "pulumi destroy, then stack rm")):
        command = commands.add_parser(name, help=text)
        command.add_argument("stacks", nargs="+", metavar="STACK")
        command.add_argument("--parallel", type=_positive, default=1, help="stacks at a time (default 1)")
        command.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    commands.choices["up"].add_argument("--policy-pack", action="append", default=[], metavar="DIR")
    view = commands.add_parser("status", help="every tenant stack of the backend")
    view.add_argument("--check-drift", action="store_true", help="also run pulumi preview --refresh per stack")
    view.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    view.add_argument("--parallel", type=_positive, default=4, help="stacks checked at a time (default 4)")
    setter = commands.add_parser("secrets", help="set a stack's secret config from a JSON document in the environment")
    setter.add_argument("--project", required=True, help="the Pulumi project: klutch-central or klutch-tenant")
    which = setter.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", help="the stack")
    which.add_argument(
        "--all", action="store_true", help="every stack of the project the backend and the document have"
    )
    setter.add_argument("--from-env", default="PULUMI_SECRET_CONFIG", metavar="NAME", help="the variable holding it")
    for command in commands.choices.values():
        if command.prog.split()[-1] != "select":
            command.add_argument("--project-dir", type=Path, default=Path(select.TENANT_DIR), metavar="DIR")
    return parser


def _select(args: argparse.Namespace) -> int:
    found = select.select(args.repo, args.base, args.head)
    if args.github_output:
        with args.github_output.open("a") as out:
            out.write(found.github_outputs())
    print(found.as_json())
    return 0


def _operate(args: argparse.Namespace) -> int:
    echo = runner.locked(partial(print, file=sys.stderr, flush=True))
    if args.command == "up":
        packs = [str(Path(p).resolve()) for p in args.policy_pack]  # the stacks run in the project directory
        operation = partial(runner.up, args.project_dir, policy_packs=packs, echo=echo)
    else:
        operation = partial(runner.retire, args.project_dir, echo=echo)
    outcomes = runner.run_all(operation, list(dict.fromkeys(args.stacks)), args.parallel)  # each stack once
    if args.json:
        print(json.dumps([o.as_dict() for o in outcomes], indent=2))
    else:
        for o in outcomes:
            verdict = "succeeded" if o.ok else "FAILED"
            print(f"{o.stack}: {args.command} {verdict} in {o.ended - o.started:.1f} s: {o.detail}")
    return 0 if all(o.ok for o in outcomes) else 1


def _status(args: argparse.Namespace) -> int:
    found = status.rows(args.project_dir, check_drift=args.check_drift, parallel=args.parallel)
    if args.json:
        print(status.as_json(found))
    else:
        status.print_table(found, args.check_drift)
    return 0 if all(r.healthy for r in found) else 2


def _secrets(args: argparse.Namespace) -> int:
    entries = secrets.parse(os.environ.get(args.from_env, ""))
    if args.all:
        backend = {s.name for s in auto.LocalWorkspace(work_dir=str(args.project_dir)).list_stacks()}
        stacks = [s for s in secrets.stacks_of(entries, args.project) if s in backend]
    else:
        stacks = [args.stack]
    mask = os.environ.get("GITHUB_ACTIONS") == "true"
    for stack in stacks:
        secrets.apply(args.project_dir, stack, entries.get(f"{args.project}/{stack}", {}), mask)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"select": _select, "up": _operate, "retire": _operate, "status": _status, "secrets": _secrets}
    handler = handlers[args.command]
    try:
        return handler(args)
    except (select.SelectError, secrets.SecretConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except auto.CommandError as e:
        print(f"error: {runner.failure(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
