"""Stack files, read the way the Pulumi CLI hands them to a program — for offline tools.

The tests and the offline renderer evaluate stacks without a Pulumi CLI, as strictly as `pulumi up`:

- a file the CLI refuses (not YAML, a key given twice, `config:` not a mapping, a key without a
  namespace) raises `StackFileError`, naming the file and the line or key;
- a value the CLI passes through (an object key holding a list, say) reaches the program, whose
  configuration messages report it exactly as `pulumi up` would;
- a top-level key is secret when it holds an encrypted (`secure:`) value, as the CLI decides.

Offline tools never decrypt: every secret a stack needs (`secret_paths`) that the file leaves out,
or holds only encrypted, is filled with a placeholder and marked secret. `pulumi up` never does
this: there, a missing secret is a configuration error. A key that holds a secret in plain text
(and nothing encrypted) gets no placeholders and stays plain, so the program rejects it as it
would under `pulumi up`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from klutch.config.reader import show
from klutch.offline.curated import mock_kubeconfig
from klutch.sdk.tree import dotted_get, dotted_set

SecretPaths = Callable[[Mapping[str, Any]], "list[tuple[str, str]]"]


class StackFileError(ValueError):
    """A stack file the Pulumi CLI would refuse to load (the message names the file and line or key)."""


PLACEHOLDER_SERVER = "https://kubernetes.placeholder.invalid:6443"
PLACEHOLDER_CONTEXT = "placeholder"
# What a program can read out of the placeholders (a kubeconfig's server and context): made-up values.
INVENTED = (PLACEHOLDER_SERVER, PLACEHOLDER_CONTEXT)


def placeholder(path: str) -> str:
    if path == "kubeconfig" or path.endswith(".kubeconfig"):
        return mock_kubeconfig(PLACEHOLDER_SERVER, PLACEHOLDER_CONTEXT)
    return f"placeholder-{path.replace('.', '-')}"


# ------------------------------------------------------------------------------- the file
class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice (the CLI's YAML parser does)."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is given twice (first on line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_config(path: Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file (full keys), or StackFileError saying what the CLI would refuse."""
    path = Path(path)
    try:
        doc = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise StackFileError(f"{where}: not valid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise StackFileError(f"{path}: not valid YAML: {e}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise StackFileError(f"{path}: the file = {show(doc)}: must be a mapping with a 'config:' key")
    config = doc.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise StackFileError(
            f"{path}: config = {show(config)}: must be a mapping of '<namespace>:<key>' to values, "
            "e.g. 'klutch-central:environment: dev'"
        )
    for key in config:
        if not isinstance(key, str) or ":" not in key.strip(":"):
            raise StackFileError(
                f"{path}: config key {show(key)}: must be '<namespace>:<key>', e.g. 'klutch-central:{key}' "
                "(what `pulumi config set` writes)"
            )
    return config


def _strip_secure(value: Any) -> Any:
    """Drop encrypted values: offline tools never read secrets."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return None
        return {k: v for k, v in ((k, _strip_secure(v)) for k, v in value.items()) if v is not None}
    if isinstance(value, list):
        return [_strip_secure(v) for v in value]
    return value


def is_encrypted(value: Any) -> bool:
    """True when `value` is or holds an encrypted (`secure:`) value (the CLI then passes it as a secret)."""
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(is_encrypted(v) for v in value.values())
    if isinstance(value, list):
        return any(is_encrypted(v) for v in value)
    return False


def plain_text_secrets(ours: Mapping[str, Any], secret_paths: SecretPaths) -> list[str]:
    """The secret paths of a namespace's config (keys without namespace, encrypted values left out)
    that hold a value in plain text."""
    found = []
    for _, dotted in secret_paths(ours):
        value = dotted_get(ours, dotted)
        if value not in (None, "") and not is_encrypted(value):
            found.append(dotted)
    return found


def namespace_config(path: Path, namespace: str) -> dict[str, Any]:
    """The stack file's config of `namespace`, keys without the namespace, values as written (`secure:` kept)."""
    prefix = f"{namespace}:"
    return {k[len(prefix) :]: v for k, v in load_config(path).items() if k.startswith(prefix)}


# ------------------------------------------------------------------------------- what a program gets
def read(path: Path, namespace: str, secret_paths: SecretPaths) -> tuple[dict[str, str], list[str]]:
    """(config with full keys, values as the CLI passes them; secret keys) of a stack file."""
    cfg = load_config(path)
    prefix = f"{namespace}:"
    written = {k[len(prefix) :]: v for k, v in cfg.items() if k.startswith(prefix)}
    ours = _strip_secure(copy.deepcopy(written))
    secret_keys = {top for top, value in written.items() if is_encrypted(value)}  # as the CLI marks them
    plain = set(plain_text_secrets(ours, secret_paths))
    needed: dict[str, list[str]] = {}
    for top, dotted in secret_paths(ours):
        needed.setdefault(top, []).append(dotted)
    for top, paths in needed.items():
        if top not in secret_keys and plain & set(paths):
            continue  # a secret in plain text: the program reports it (and anything missing), as under `pulumi up`
        filled = False
        for dotted in paths:
            if dotted_get(ours, dotted) in (None, ""):
                filled |= dotted_set(ours, dotted, placeholder(dotted))
        if filled:
            secret_keys.add(top)
    out = _strip_secure({k: v for k, v in cfg.items() if not k.startswith(prefix)})
    out.update({f"{prefix}{k}": v for k, v in ours.items()})
    return {k: _as_cli(v) for k, v in out.items()}, sorted(f"{prefix}{k}" for k in secret_keys)


def _as_cli(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)
