"""The files of a render: one per Kubernetes object, Helm release and remote component, grouped by
layer, each with a header (type, layer, provider, options, what it waits for); the AWS resources,
the outputs and an index; secret values found in plain text masked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from klutch.offline.mockengine import Evaluation, Registration
from klutch.offline.stacks import REDACTED, Stack, k8s_object, needles, redact

LEAK_MASK = "LEAKED-SECRET-MASKED"  # plain text, so the YAML around a masked leak stays valid
ROOT_LAYER = "stack"
INTERNAL_INPUTS = ("compat",)  # inputs a provider SDK adds for itself (helm.v3.Release), not the program's


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
        for needle in needles(value):
            for rel, text in written.files.items():
                if needle in text:
                    written.files[rel] = text = text.replace(needle, LEAK_MASK)
                    found.append(
                        f"secret {path} appears in plain text in {rel} (masked): a plain input or output holds it"
                    )
    return found
