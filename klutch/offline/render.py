"""Offline render: what a stack would deploy, as files, without a cloud, a cluster or the Pulumi CLI.

    python -m klutch.offline.render --stack dev --out render/dev [--check]
    python -m klutch.offline.render --project-dir tenant --stack example --out render/tenant [--check]
    python -m klutch.offline.render --all --out render [--check]      # every committed stack
    python -m klutch.offline.render --list                              # the committed stacks, as JSON

The stack's committed config is read with `stackfile.read` (secrets are never read: placeholders
stand in for them) and the program is evaluated with the project's one mock engine
(`mockengine.evaluate`). A tenant stack's StackReference outputs come from rendering the central
stack its `centralStack` names. Written under `--out`:

    summary.yaml                 project, stack, environment, Kubernetes version, counts per layer,
                                 the program's warnings and (with --check) every finding
    outputs.yaml                 the stack outputs (secrets redacted)
    aws.yaml                     every AWS resource (aws:*, eks:*) per layer with its inputs (no tags)
    resources.yaml               an index of every resource: layer, type, name, file
    <layer>/kubernetes/<namespace|_cluster>/<kind>-<name>.yaml      one file per Kubernetes object
    <layer>/helm/<name>.yaml     each Helm release: chart, repository, version, values, other inputs
    <layer>/components/<name>.yaml  remote components (yaml/v2 ConfigFile, ...) with their inputs

A layer is the top-level ComponentResource a resource descends from. Secret values are redacted
everywhere (and Secret data/stringData always); a secret value found in a plain input is reported
and masked. `--check` runs `manifests.check` on every Kubernetes object for the stack's Kubernetes
version and the policy pack's rules (`policy/rules.py`) for the stack's environment, and fails on
any schema problem or mandatory violation; advisory violations are listed as warnings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import rpc

from klutch import catalog
from klutch.offline import stackfile
from klutch.offline.mockengine import Evaluation, Registration, evaluate

ROOT = Path(__file__).resolve().parents[2]  # the repository: both Pulumi projects and their stack files
REDACTED = "[secret]"
LEAK_MASK = "LEAKED-SECRET-MASKED"  # plain text, so the YAML around a masked leak stays valid
ROOT_LAYER = "stack"


class RenderError(Exception):
    """A problem with the render's inputs (printed as `error: ...`, like a ConfigError)."""


# ------------------------------------------------------------------------------- projects
@dataclass(frozen=True)
class Project:
    """A Pulumi project of this repository: where it lives and which modules make it."""

    name: str  # Pulumi.yaml `name`
    directory: str  # relative to the repository root
    config_module: str  # NAMESPACE and secret_paths(raw)
    program_module: str  # main()

    def config(self) -> Any:
        return importlib.import_module(self.config_module)

    def program(self) -> Callable[[], None]:
        return importlib.import_module(self.program_module).main


PROJECTS: tuple[Project, ...] = (
    Project("klutch-central", ".", "klutch.config.central", "klutch.central.program"),
    Project("klutch-tenant", "tenant", "klutch.config.tenant", "klutch.tenant.program"),
)
CENTRAL = PROJECTS[0]


def project_at(directory: Path) -> Project:
    file = directory / "Pulumi.yaml"
    if not file.exists():
        raise RenderError(f"{file} does not exist: --project-dir must name a Pulumi project directory")
    name = (yaml.safe_load(file.read_text()) or {}).get("name")
    for project in PROJECTS:
        if project.name == name:
            return project
    raise RenderError(f"{file}: unknown project {name!r}; known: {', '.join(p.name for p in PROJECTS)}")


def stack_files(directory: Path) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in directory.glob("Pulumi.*.yaml"))


def committed_stacks(root: Path = ROOT) -> list[tuple[Project, Path, str]]:
    """(project, directory, stack) of every committed stack file of every project present."""
    found = []
    for project in PROJECTS:
        directory = root / project.directory
        if (directory / "Pulumi.yaml").exists() and project_at(directory) == project:
            found += [(project, directory, stack) for stack in stack_files(directory)]
    return found


# ------------------------------------------------------------------------------- evaluation
@dataclass
class Stack:
    """One evaluated stack and the facts the render and the checks need."""

    project: Project
    name: str
    ev: Evaluation
    raw: dict[str, Any]  # the project's config, keys without namespace, structured values decoded
    secrets: dict[str, str] = field(default_factory=dict)  # secret path -> value that must never be written

    @property
    def environment(self) -> str:
        from klutch.policy import rules

        return rules.environment(self.raw.get("environment"))

    @property
    def kubernetes_version(self) -> str:
        cluster = self.raw.get("cluster")
        version = cluster.get("kubernetesVersion") if isinstance(cluster, dict) else None
        return str(version or catalog.DEFAULT_KUBERNETES_VERSION)


def _decode(value: str) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _at(raw: Mapping[str, Any], dotted: str) -> Any:
    value: Any = raw
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _needles(value: Any) -> list[str]:
    """The strings of a secret value that must never appear in the output (a kubeconfig: its credentials)."""
    if not isinstance(value, str) or len(value) < 6:
        return []
    doc = _decode(value.strip())
    if isinstance(doc, dict) and isinstance(doc.get("users"), list):
        creds = [
            u.get("user", {}).get(k)
            for u in doc["users"]
            if isinstance(u, dict)
            for k in ("token", "password", "client-key-data")
        ]
        return [c for c in creds if isinstance(c, str) and len(c) >= 6]
    return [value]


def load(project: Project, directory: Path, stack: str, cache: dict[str, Stack] | None = None) -> Stack:
    """Evaluate a committed stack file under the mock engine (raises RenderError or the program's RunError)."""
    cache = {} if cache is None else cache
    path = directory / f"Pulumi.{stack}.yaml"
    key = str(path.resolve())
    if key in cache:
        return cache[key]
    if not path.exists():
        have = ", ".join(stack_files(directory)) or "none"
        raise RenderError(f"no stack file {path} (committed stacks of {project.name}: {have})")
    cfg = project.config()
    config, secret_keys = stackfile.read(path, cfg.NAMESPACE, cfg.secret_paths)
    prefix = f"{cfg.NAMESPACE}:"
    raw = {k[len(prefix) :]: _decode(v) for k, v in config.items() if k.startswith(prefix)}
    stack_outputs = {}
    if isinstance(raw.get("centralStack"), str):
        central = _central(raw["centralStack"], cache)
        stack_outputs[raw["centralStack"]] = central.ev.outputs
    ev = evaluate(
        project.program(), config, secret_keys, project=project.name, stack=stack, stack_outputs=stack_outputs
    )
    secrets = {dotted: _at(raw, dotted) for _, dotted in cfg.secret_paths(raw)}
    result = Stack(project, stack, ev, raw, {k: v for k, v in secrets.items() if isinstance(v, str)})
    cache[key] = result
    return result


def _central(reference: str, cache: dict[str, Stack]) -> Stack:
    """The central stack a tenant's `centralStack` ('<org>/klutch-central/<stack>') names."""
    parts = reference.split("/")
    if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] != CENTRAL.name):
        raise RenderError(f"centralStack = {reference!r}: expected '<organization>/{CENTRAL.name}/<stack>'")
    directory = ROOT / CENTRAL.directory
    if not (directory / f"Pulumi.{parts[-1]}.yaml").exists():
        raise RenderError(
            f"centralStack = {reference!r}: no committed central stack file Pulumi.{parts[-1]}.yaml; "
            "the offline render takes the central stack's outputs from rendering it"
        )
    return load(CENTRAL, directory, parts[-1], cache)


# ------------------------------------------------------------------------------- redaction
_FIRST_KEYS = ("apiVersion", "kind", "metadata", "spec")


def _key_order(key: str) -> tuple[int, str]:
    """Kubernetes' conventional order first, then alphabetical: stable files, readable diffs."""
    return (_FIRST_KEYS.index(key) if key in _FIRST_KEYS else len(_FIRST_KEYS), key)


def redact(value: Any) -> Any:
    """Secrets replaced by REDACTED (structure kept), protobuf numbers that are whole made ints,
    keys in a stable order (the engine's maps arrive in no particular order)."""
    if rpc.is_rpc_secret(value):
        return _mask(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: redact(value[k]) for k in sorted(value, key=_key_order) if not k.startswith("__")}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _mask(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return _mask(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return REDACTED


def k8s_object(reg: Registration) -> dict[str, Any]:
    obj = redact(reg.raw_inputs)
    if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1":
        for key in ("data", "stringData"):
            if isinstance(obj.get(key), dict):
                obj[key] = _mask(obj[key])
    return obj


# ------------------------------------------------------------------------------- layout
def layer_of(reg: Registration, by_urn: Mapping[str, Registration]) -> str:
    top = reg
    while top.parent in by_urn:
        top = by_urn[top.parent]
    return ROOT_LAYER if top.custom else top.name


def category(reg: Registration) -> str | None:
    from .manifests import is_manifest  # kubernetes-validate loads only when something is rendered

    if reg.type.startswith("kubernetes:helm.sh/"):
        return "helm"
    if is_manifest(reg):
        return "kubernetes"
    if reg.type.startswith("kubernetes:") and not reg.custom:
        return "components"
    if reg.type.startswith(("aws:", "eks:")):
        return "aws"
    if not reg.custom and not reg.remote:
        return None  # a layer (ComponentResource)
    return "other"


CATEGORIES = ("kubernetes", "helm", "components", "aws", "other")


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)


def _safe(part: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part) or "_"


def _header(reg: Registration, layer: str) -> str:
    provider = reg.provider.split("::")[-2] if reg.provider else "(default)"
    lines = [f"# {reg.type} {reg.name!r} — layer {layer}, provider {provider}"]
    options = [
        o
        for o, on in (
            ("protect", reg.protect),
            ("retainOnDelete", reg.retain_on_delete),
            ("deleteBeforeReplace", reg.delete_before_replace),
        )
        if on
    ]
    if reg.ignore_changes:
        options.append(f"ignoreChanges {reg.ignore_changes}")
    if reg.custom_timeouts:
        options.append(f"customTimeouts {reg.custom_timeouts}")
    if options:
        lines.append(f"# options: {', '.join(options)}")
    return "\n".join(lines) + "\n"


@dataclass
class Written:
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    index: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, rel: str, text: str) -> str:
        base, n = rel, 2
        while rel in self.files:
            rel = base.replace(".yaml", f"-{n}.yaml")
            n += 1
        self.files[rel] = text
        return rel


def render_files(stack: Stack) -> Written:
    """Every file of the render (in memory), secrets redacted."""
    ev = stack.ev
    by_urn = {r.urn: r for r in ev.resources}
    out = Written()
    aws: dict[str, list[dict[str, Any]]] = {}
    for reg in sorted(ev.resources, key=lambda r: r.urn):  # stable order: renders diff cleanly
        kind = category(reg)
        if kind is None:
            continue
        layer = layer_of(reg, by_urn)
        out.counts.setdefault(layer, dict.fromkeys(CATEGORIES, 0))[kind] += 1
        rel = None
        if kind == "kubernetes":
            obj = k8s_object(reg)
            meta = obj.get("metadata") or {}
            rel = out.add(
                f"{_safe(layer)}/kubernetes/{_safe(meta.get('namespace') or '_cluster')}/"
                f"{_safe(str(obj.get('kind', reg.type)).lower())}-{_safe(str(meta.get('name') or reg.name))}.yaml",
                _header(reg, layer) + dump(obj),
            )
        elif kind == "helm":
            inputs = redact(reg.raw_inputs)
            repo = inputs.pop("repositoryOpts", None) or {}
            doc = {
                "chart": inputs.pop("chart", None),
                "repository": repo.pop("repo", None) if isinstance(repo, dict) else None,
                "version": inputs.pop("version", None),
                "namespace": inputs.pop("namespace", None),
                "values": inputs.pop("values", {}),
                "inputs": {**inputs, **({"repositoryOpts": repo} if repo else {})},
            }
            rel = out.add(f"{_safe(layer)}/helm/{_safe(reg.name)}.yaml", _header(reg, layer) + dump(doc))
        elif kind == "components":
            rel = out.add(
                f"{_safe(layer)}/components/{_safe(reg.name)}.yaml",
                _header(reg, layer) + dump({"type": reg.type, "inputs": redact(reg.raw_inputs)}),
            )
        elif kind == "aws":
            inputs = {k: v for k, v in redact(reg.raw_inputs).items() if k not in ("tags", "tagsAll")}
            aws.setdefault(layer, []).append({"type": reg.type, "name": reg.name, "inputs": inputs})
            rel = "aws.yaml"
        out.index.append({"layer": layer, "type": reg.type, "name": reg.name, **({"file": rel} if rel else {})})
    out.add("aws.yaml", dump(aws))
    out.add("outputs.yaml", dump({k: redact(v) for k, v in sorted(ev.outputs.items())}))
    out.add("resources.yaml", dump(out.index))
    return out


def leaks(stack: Stack, written: Written) -> list[str]:
    """Mask every secret value found in a file's text; one message per (secret, file)."""
    found = []
    for path, value in stack.secrets.items():
        for needle in _needles(value):
            for rel, text in written.files.items():
                if needle in text:
                    written.files[rel] = text = text.replace(needle, LEAK_MASK)
                    found.append(
                        f"secret {path} appears in plain text in {rel} (masked): a plain input or output holds it"
                    )
    return found


# ------------------------------------------------------------------------------- checks
@dataclass
class Report:
    errors: list[str]
    advisories: list[str]


def run_checks(stack: Stack) -> Report:
    from klutch.policy import rules

    from .manifests import check as check_manifest
    from .manifests import manifests

    errors = [f"schema: {p}" for _, obj in manifests(stack.ev) for p in check_manifest(obj, stack.kubernetes_version)]
    findings = rules.check([rules.from_registration(r) for r in stack.ev.resources], stack.environment)
    errors += [str(f) for f in findings if f.level == "mandatory"]
    return Report(errors, [str(f) for f in findings if f.level != "mandatory"])


# ------------------------------------------------------------------------------- one stack
def render(
    project: Project, directory: Path, stack_name: str, out: Path, *, check: bool, cache: dict[str, Stack] | None = None
) -> int:
    """Render one stack into `out`; 0 when it evaluated (and, with check, passed)."""
    _check_out(out)
    try:
        stack = load(project, directory, stack_name, cache)
    except (RenderError, pulumi.RunError) as e:
        print(f"error: {e}", file=sys.stderr)  # what `pulumi up` prints for a ConfigError
        return 1
    written = render_files(stack)
    errors = leaks(stack, written)
    report = run_checks(stack) if check else Report([], [])
    errors += report.errors
    summary = {
        "project": project.name,
        "stack": stack_name,
        "environment": stack.environment,
        "kubernetesVersion": stack.kubernetes_version,
        "layers": written.counts,
        "totals": {c: sum(n[c] for n in written.counts.values()) for c in CATEGORIES},
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
        return 1
    if check:
        print(f"{project.name}/{stack_name}: check passed ({len(report.advisories)} advisory)")
    return 0


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
    parser = argparse.ArgumentParser(prog="python -m klutch.offline.render", description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--stack", help="the stack to render (Pulumi.<stack>.yaml in the project directory)")
    what.add_argument(
        "--all", action="store_true", help="render every committed stack of every project into OUT/<project>/<stack>"
    )
    what.add_argument("--list", action="store_true", help="print the committed stacks as JSON (for CI matrices)")
    parser.add_argument(
        "--project-dir", default=".", help="the Pulumi project directory (default: .; the tenant project: tenant)"
    )
    parser.add_argument("--out", type=Path, help="output directory")
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
            results = [render(p, d, s, args.out / p.name / s, check=args.check, cache=cache) for p, d, s in stacks]
            failed = sum(1 for r in results if r)
            print(
                f"{len(stacks) - failed}/{len(stacks)} stacks {'checked' if args.check else 'rendered'} without findings"
            )
            return 1 if failed or not stacks else 0
        directory = Path(args.project_dir)
        return render(project_at(directory), directory, args.stack, args.out, check=args.check)
    except RenderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
