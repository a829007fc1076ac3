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
version and the policy pack's rules (`policy/rules.py`) for the stack's environment, and fails on
any schema problem or mandatory violation; advisory violations are listed as warnings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from klutch import catalog
from klutch.config.reader import show
from klutch.offline import stackfile
from klutch.offline.mockengine import Evaluation, Registration, evaluate
from klutch.sdk.tree import dotted_get, walk_secrets

ROOT = Path(__file__).resolve().parents[2]  # the repository of an editable install (see find_root)
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
INTERNAL_INPUTS = ("compat",)  # inputs a provider SDK adds for itself (helm.v3.Release), not the program's


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


# ------------------------------------------------------------------------------- evaluation
@dataclass
class Stack:
    """One evaluated stack and the facts the render and the checks need."""

    project: Project
    name: str
    ev: Evaluation
    raw: dict[str, Any]  # the project's config, keys without namespace, structured values decoded
    secrets: dict[str, str] = field(default_factory=dict)  # secret path -> value that must never be written
    central: Stack | None = None  # a tenant stack's central stack

    @property
    def environment(self) -> str:
        """The policy environment: the stack's `environment` (a tenant stack: its central stack's)."""
        from klutch.policy import rules

        if self.central is not None and "environment" not in self.raw:
            return self.central.environment
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
    """Evaluate a stack file under the mock engine (raises RenderError, StackFileError or the program's RunError)."""
    cache = {} if cache is None else cache
    path = directory / f"Pulumi.{stack}.yaml"
    key = str(path.resolve())
    if key in cache:
        return cache[key]
    if not path.exists():
        have = ", ".join(stack_files(directory)) or "none"
        raise RenderError(f"no stack file {path} (stack files of {project.name}: {have})")
    cfg = project.config()
    config, secret_keys = stackfile.read(path, cfg.NAMESPACE, cfg.secret_paths)
    prefix = f"{cfg.NAMESPACE}:"
    raw = {k[len(prefix) :]: _decode(v) for k, v in config.items() if k.startswith(prefix)}
    stack_outputs, central = {}, None
    if isinstance(raw.get("centralStack"), str) and len(raw["centralStack"].split("/")) == 3:
        # (any other value: the program reports it, as under `pulumi up`)
        central = _central(raw["centralStack"], directory, cache)
        stack_outputs[raw["centralStack"]] = central.ev.outputs
    ev = evaluate(
        project.program(),
        config,
        secret_keys,
        project=project.name,
        stack=stack,
        stack_outputs=stack_outputs,
        invented=(*stackfile.INVENTED, *(central.ev.invented if central else ())),
    )
    secrets = {dotted: dotted_get(raw, dotted) for _, dotted in cfg.secret_paths(raw)}
    result = Stack(project, stack, ev, raw, {k: v for k, v in secrets.items() if isinstance(v, str)}, central)
    cache[key] = result
    return result


def _central(reference: str, tenant_directory: Path, cache: dict[str, Stack]) -> Stack:
    """The central stack a tenant's `centralStack` ('<org>/klutch-central/<stack>') names: its stack
    file in the repository the tenant project lives in."""
    parts = reference.split("/")
    key = "klutch-tenant:centralStack"
    if parts[1] != CENTRAL.name:
        raise RenderError(f"{key} = {show(reference)}: expected '<organization>/{CENTRAL.name}/<stack>'")
    directory = find_root(tenant_directory) / CENTRAL.directory
    if not (directory / f"Pulumi.{parts[-1]}.yaml").exists():
        raise RenderError(
            f"{key} = {show(reference)}: no central stack file {directory / f'Pulumi.{parts[-1]}.yaml'}; "
            "the offline render takes the central stack's outputs from rendering it"
        )
    return load(CENTRAL, directory, parts[-1], cache)


# ------------------------------------------------------------------------------- redaction
_FIRST_KEYS = ("apiVersion", "kind", "metadata", "spec")


def _key_order(key: str) -> tuple[int, str]:
    """Kubernetes' conventional order first, then alphabetical: stable files, readable diffs."""
    return (_FIRST_KEYS.index(key) if key in _FIRST_KEYS else len(_FIRST_KEYS), key)


def _redact_leaf(value: Any, in_secret: bool) -> Any:
    if in_secret:
        return REDACTED
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _redact_node(node: Any, in_secret: bool) -> Any:
    if in_secret or not isinstance(node, dict):
        return node
    return {k: node[k] for k in sorted(node, key=_key_order) if not k.startswith("__")}


def redact(value: Any) -> Any:
    """Secrets replaced by REDACTED (structure kept), protobuf numbers that are whole made ints,
    keys in a stable order (the engine's maps arrive in no particular order)."""
    return walk_secrets(value, _redact_leaf, _redact_node)


def _mask(value: Any) -> Any:
    """Every value inside `value` replaced by REDACTED (structure kept)."""
    return walk_secrets(value, lambda v, _s: REDACTED)


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


def _urn_label(urn: str, by_urn: Mapping[str, Registration]) -> str:
    """`<type>/<name>` of a resource by its URN ('urn:pulumi:<stack>::<project>::<parent types$>type::name')."""
    reg = by_urn.get(urn)
    if reg is not None:
        return f"{reg.type}/{reg.name}"
    parts = urn.split("::")
    return f"{parts[-2].rsplit('$', 1)[-1]}/{parts[-1]}" if len(parts) >= 4 else urn


def waits_for(reg: Registration, by_urn: Mapping[str, Registration]) -> list[str]:
    """`<type>/<name>` of every resource `reg` depends on directly (explicitly or through its inputs)."""
    urns = set(reg.dependencies)
    for deps in reg.property_dependencies.values():
        urns.update(deps)
    urns.discard(reg.urn)
    return sorted({_urn_label(u, by_urn) for u in urns})


def _header(reg: Registration, layer: str, by_urn: Mapping[str, Registration] | None = None) -> str:
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
    deps = waits_for(reg, by_urn or {})
    if deps:
        lines.append(f"# waits for: {', '.join(deps)}")
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
        header = _header(reg, layer, by_urn)
        rel = None
        if kind == "kubernetes":
            obj = k8s_object(reg)
            meta = obj.get("metadata") or {}
            rel = out.add(
                f"{_safe(layer)}/kubernetes/{_safe(meta.get('namespace') or '_cluster')}/"
                f"{_safe(str(obj.get('kind', reg.type)).lower())}-{_safe(str(meta.get('name') or reg.name))}.yaml",
                header + dump(obj),
            )
        elif kind == "helm":
            inputs = _program_inputs(reg)
            repo = inputs.pop("repositoryOpts", None) or {}
            doc = {
                "chart": inputs.pop("chart", None),
                "repository": repo.pop("repo", None) if isinstance(repo, dict) else None,
                "version": inputs.pop("version", None),
                "namespace": inputs.pop("namespace", None),
                "values": inputs.pop("values", {}),
                "inputs": {**inputs, **({"repositoryOpts": repo} if repo else {})},
            }
            rel = out.add(f"{_safe(layer)}/helm/{_safe(reg.name)}.yaml", header + dump(doc))
        elif kind == "components":
            rel = out.add(
                f"{_safe(layer)}/components/{_safe(reg.name)}.yaml",
                header + dump({"type": reg.type, "inputs": _program_inputs(reg)}),
            )
        elif kind == "aws":
            inputs = {k: v for k, v in redact(reg.raw_inputs).items() if k not in ("tags", "tagsAll")}
            aws.setdefault(layer, []).append({"type": reg.type, "name": reg.name, "inputs": inputs})
            rel = "aws.yaml"
        out.index.append({"layer": layer, "type": reg.type, "name": reg.name, **({"file": rel} if rel else {})})
    if aws:
        out.add("aws.yaml", dump(aws))
    out.add("outputs.yaml", dump_outputs(ev))
    out.add("resources.yaml", dump(out.index))
    # a category no resource of the stack falls in is left out (a tenant stack has no AWS resources)
    present = [c for c in CATEGORIES if any(n[c] for n in out.counts.values())]
    out.counts = {layer: {c: n[c] for c in present} for layer, n in out.counts.items()}
    return out


def _program_inputs(reg: Registration) -> dict[str, Any]:
    """The inputs the program gave (redacted), without those the provider SDK adds for itself."""
    return {k: v for k, v in redact(reg.raw_inputs).items() if k not in INTERNAL_INPUTS}


PLACEHOLDER_NOTE = "# placeholder: made up by the offline engine; the real value exists after `pulumi up`"


def dump_outputs(ev: Evaluation) -> str:
    """The stack outputs (secrets redacted); a made-up value follows a PLACEHOLDER_NOTE line."""
    text = ""
    for name, value in sorted(ev.outputs.items()):
        shown = redact(value)
        entry = dump({name: shown})
        if shown != REDACTED and ev.is_placeholder(value):
            entry = f"{PLACEHOLDER_NOTE}\n{entry}"
        text += entry
    return text if ev.outputs else dump({})


def placeholder_outputs(text: str) -> list[str]:
    """The outputs an outputs.yaml marks as placeholders."""
    lines = text.splitlines()
    return [lines[i + 1].split(":", 1)[0] for i, line in enumerate(lines[:-1]) if line == PLACEHOLDER_NOTE]


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
