"""A stack evaluated offline (its stack file read as `pulumi up` reads it, its program run under the
mock engine; a tenant stack's StackReference outputs from its central stack), and the redaction of
what it registered: secrets replaced, keys in a stable order."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from klutch import catalog
from klutch.config.reader import show
from klutch.offline import stackfile
from klutch.offline.mockengine import Evaluation, Registration, evaluate
from klutch.offline.projects import CENTRAL, Project, RenderError, find_root, stack_files
from klutch.sdk.tree import dotted_get, walk_secrets

REDACTED = "[secret]"


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


def decode(value: str) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def needles(value: Any) -> list[str]:
    """The strings of a secret value that must never appear in the output (a kubeconfig: its credentials)."""
    if not isinstance(value, str) or len(value) < 6:
        return []
    doc = decode(value.strip())
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
    raw = {k[len(prefix) :]: decode(v) for k, v in config.items() if k.startswith(prefix)}
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
