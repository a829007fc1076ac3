"""Committed stack files, read the way the Pulumi CLI hands them to a program — for offline tools.

The tests and the offline renderer evaluate committed stacks without a Pulumi CLI. Secrets are
never committed: every secret a stack needs (`secret_paths`) that the file leaves out, or holds
only encrypted (`secure:`), is filled with a placeholder and marked secret. `pulumi up` never
does this: there, a missing secret is a configuration error.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from klutch.offline.mockengine import mock_kubeconfig

SecretPaths = Callable[[Mapping[str, Any]], "list[tuple[str, str]]"]


def placeholder(path: str) -> str:
    if path == "kubeconfig" or path.endswith(".kubeconfig"):
        return mock_kubeconfig("https://kubernetes.placeholder.invalid:6443", "placeholder")
    return f"placeholder-{path.replace('.', '-')}"


def _strip_secure(value: Any) -> Any:
    """Drop encrypted values: offline tools never read secrets."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return None
        return {k: v for k, v in ((k, _strip_secure(v)) for k, v in value.items()) if v is not None}
    if isinstance(value, list):
        return [_strip_secure(v) for v in value]
    return value


def read(path: Path, namespace: str, secret_paths: SecretPaths) -> tuple[dict[str, str], list[str]]:
    """(config with full keys, values as the CLI passes them; secret keys) of a committed stack file."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    cfg = _strip_secure(copy.deepcopy(doc.get("config") or {}))
    prefix = f"{namespace}:"
    ours = {k[len(prefix) :]: v for k, v in cfg.items() if k.startswith(prefix)}
    secret_keys: set[str] = set()
    for top, dotted in secret_paths(ours):
        parts = dotted.split(".")
        if len(parts) == 1:
            if ours.get(top) in (None, ""):
                ours[top] = placeholder(dotted)
        else:
            node = ours.setdefault(top, {})
            for p in parts[1:-1]:
                node = node.setdefault(p, {})
            if node.get(parts[-1]) in (None, ""):
                node[parts[-1]] = placeholder(dotted)
        secret_keys.add(f"{prefix}{top}")
    out = {k: v for k, v in cfg.items() if not k.startswith(prefix)}
    out.update({f"{prefix}{k}": v for k, v in ours.items()})
    return {k: _as_cli(v) for k, v in out.items()}, sorted(secret_keys)


def _as_cli(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)
