"""Offline render: what a stack would deploy, as files, without a cloud, a cluster or the Pulumi CLI.

    klutch-render --stack dev --out render/dev [--check]       # or: python -m klutch.offline.render ...
    cd tenant && klutch-render --stack example --out render/tenant [--check]
    klutch-render --project-dir tenant --stack example --out render/tenant [--check]
    klutch-render --all --out render [--check]      # every shipped stack
    klutch-render --list                              # the shipped stacks, as JSON (the CI matrix)

The shipped stacks are the stack files git tracks (`git ls-files`; without git, each project's
declared list): a user's own stack files (`Pulumi.staging.yaml`) render with --stack, but never
enter --all or --list. The stack file is read with `stackfile.read`, as strictly as `pulumi up`
reads it (secrets are never read: placeholders stand in for them), and the program is evaluated
with the project's one mock engine (`mockengine.evaluate`). A tenant stack's StackReference
outputs come from rendering the central stack its `centralStack` names. Written under `--out`:

    summary.yaml                 project, stack, environment (a tenant stack: its central stack's),
                                 Kubernetes version (central stacks), counts per layer (categories
                                 with no resource left out), the program's warnings and (with
                                 --check) every finding
    outputs.yaml                 the stack outputs (secrets redacted); a value the offline engine made
                                 up (cluster endpoint, load-balancer hostname, VPC and subnet ids...)
                                 follows a `# placeholder ...` comment line
    aws.yaml                     every AWS resource (aws:*, eks:*) per layer with its inputs (no tags);
                                 only when the stack has one
    resources.yaml               an index of every resource: layer, type, name, file
    <layer>/kubernetes/<namespace|_cluster>/<kind>-<name>.yaml      one file per Kubernetes object
    <layer>/helm/<name>.yaml     each Helm release: chart, repository, version, values, other inputs
    <layer>/components/<name>.yaml  remote components (yaml/v2 ConfigFile, ...) with their inputs

Each object file starts with a comment header: type, name, layer, provider, options, and
`# waits for: <type>/<name>, ...` (the resources it depends on). Provider-internal inputs
(the Helm Release's `compat`) are left out.

A layer is the top-level ComponentResource a resource descends from. Secret values are redacted
everywhere (and Secret data/stringData always); a secret value found in a plain input is reported
and masked. `--check` runs `manifests.check` on every Kubernetes object for the stack's Kubernetes
version and the policy pack's rules (`klutch/policy/rules.py`) for the stack's environment, and fails on
any schema problem or mandatory violation; advisory violations are listed as warnings.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi

from klutch.offline import stackfile
from klutch.offline.layout import CATEGORIES, Written, dump, leaks, render_files
from klutch.offline.projects import CENTRAL, Project, RenderError, committed_stacks, project_at
from klutch.offline.stacks import Stack, load


# ------------------------------------------------------------------------------- checks
@dataclass
class Report:
    errors: list[str]
    advisories: list[str]


def run_checks(stack: Stack) -> Report:
    from klutch.policy import model, rules

    from .manifests import check as check_manifest
    from .manifests import manifests

    errors = [f"schema: {p}" for _, obj in manifests(stack.ev) for p in check_manifest(obj, stack.kubernetes_version)]
    findings = rules.check([model.from_registration(r) for r in stack.ev.resources], stack.environment)
    errors += [str(f) for f in findings if f.level == "mandatory"]
    return Report(errors, [str(f) for f in findings if f.level != "mandatory"])


# ------------------------------------------------------------------------------- one stack
def render(
    project: Project, directory: Path, stack_name: str, out: Path, *, check: bool, cache: dict[str, Stack] | None = None
) -> int:
    """Render one stack into `out`; 0 when it evaluated (and, with check, passed)."""
    return render_stack(project, directory, stack_name, out, check=check, cache=cache)[0]


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def render_stack(
    project: Project, directory: Path, stack_name: str, out: Path, *, check: bool, cache: dict[str, Stack] | None = None
) -> tuple[int, int]:
    """Render one stack into `out`: (exit code, number of advisories)."""
    _check_out(out)
    try:
        stack = load(project, directory, stack_name, cache)
    except (RenderError, stackfile.StackFileError, pulumi.RunError) as e:
        print(f"error: {e}", file=sys.stderr)  # what `pulumi up` prints for a ConfigError
        return 1, 0
    written = render_files(stack)
    errors = leaks(stack, written)
    report = run_checks(stack) if check else Report([], [])
    errors += report.errors
    summary = {
        "project": project.name,
        "stack": stack_name,
        "environment": stack.environment,
        # the Kubernetes version the central stack's cluster runs (a tenant stack does not configure one)
        **({"kubernetesVersion": stack.kubernetes_version} if project == CENTRAL else {}),
        "layers": written.counts,
        "totals": {c: sum(n.get(c, 0) for n in written.counts.values()) for c in _categories(written)},
        "warnings": stack.ev.warnings(),
        **(
            {"check": {"errors": errors, "advisories": report.advisories}}
            if check
            else {"errors": errors}
            if errors
            else {}
        ),
    }
    written.add("summary.yaml", dump(summary))
    _write(out, written)

    totals = ", ".join(f"{n} {c}" for c, n in summary["totals"].items() if n)
    print(f"{project.name}/{stack_name}: rendered {totals or 'nothing'} into {out}")
    for note in stack.ev.notes():
        print(f"note: {note}", file=sys.stderr)
    for w in stack.ev.warnings():
        print(f"warning: {w}", file=sys.stderr)
    for a in report.advisories:
        print(f"warning: {a}", file=sys.stderr)
    if errors:
        print(
            f"error: {project.name}/{stack_name}: {len(errors)} finding{'s' if len(errors) != 1 else ''}:",
            file=sys.stderr,
        )
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1, len(report.advisories)
    if check:
        print(
            f"{project.name}/{stack_name}: check passed ({_plural(len(report.advisories), 'advisory', 'advisories')})"
        )
    return 0, len(report.advisories)


def _categories(written: Written) -> list[str]:
    return [c for c in CATEGORIES if any(c in n for n in written.counts.values())]


def _check_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / "summary.yaml").exists():
        raise RenderError(f"{out} is not empty and holds no earlier render; choose an empty --out directory")


def _write(out: Path, written: Written) -> None:
    _check_out(out)
    if out.exists():
        shutil.rmtree(out)  # an earlier render: no stale files survive
    for rel, text in written.files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ------------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="klutch-render",
        usage=(
            "klutch-render (--stack STACK | --all) --out OUT [--project-dir DIR] [--check]\n       klutch-render --list"
        ),
        description=__doc__.split("\n\n")[0] + " Also: python -m klutch.offline.render.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--stack", help="the stack to render (Pulumi.<stack>.yaml in the project directory)")
    what.add_argument(
        "--all", action="store_true", help="render every shipped stack of every project into OUT/<project>/<stack>"
    )
    what.add_argument(
        "--list", action="store_true", help="print the shipped (git-tracked) stacks as JSON (for CI matrices)"
    )
    required = parser.add_argument_group("required")
    required.add_argument("--out", type=Path, metavar="OUT", help="output directory (required, except with --list)")
    parser.add_argument(
        "--project-dir",
        default=".",
        metavar="DIR",
        help="the Pulumi project directory (default: the working directory; the tenant project: tenant)",
    )
    parser.add_argument(
        "--check", action="store_true", help="validate manifests and run the policy rules; non-zero exit on findings"
    )
    args = parser.parse_args(argv)

    if args.list:
        print(json.dumps([{"project": p.name, "dir": p.directory, "stack": s} for p, _, s in committed_stacks()]))
        return 0
    if args.out is None:
        parser.error("--out is required")
    try:
        if args.all:
            cache: dict[str, Stack] = {}
            stacks = committed_stacks()
            results = [
                render_stack(p, d, s, args.out / p.name / s, check=args.check, cache=cache) for p, d, s in stacks
            ]
            failed = sum(1 for code, _ in results if code)
            done = f"{len(stacks) - failed}/{len(stacks)} stacks {'checked' if args.check else 'rendered'}"
            advisories = f" ({_plural(sum(n for _, n in results), 'advisory', 'advisories')})" if args.check else ""
            print(f"{done} without findings{advisories}")
            return 1 if failed or not stacks else 0
        directory = Path(args.project_dir)
        return render(project_at(directory), directory, args.stack, args.out, check=args.check)
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
