"""Property trees: the nested dicts and lists of config values and resource properties.

One dotted-path reader (`spec.template.metadata`, list indexes as numbers) and one walker of
deserialized Pulumi property values whose secrets may be wrapped at any depth. Used by the config
reader, the policy rules, the offline render and the mock engine alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from klutch.sdk import compat


def _keep_leaf(value: Any, in_secret: bool) -> Any:
    return value


def _keep_node(node: Any, in_secret: bool) -> Any:
    return node


def walk_secrets(
    value: Any,
    leaf: Callable[[Any, bool], Any] = _keep_leaf,
    node: Callable[[Any, bool], Any] = _keep_node,
    *,
    in_secret: bool = False,
) -> Any:
    """The one walker of deserialized Pulumi property values (secrets wrapped, at any depth).

    Rebuilds `value` without the secret wrappers: every scalar becomes `leaf(scalar, in_secret)`,
    every rebuilt dict or list `node(container, in_secret)`, where `in_secret` says whether it sat
    inside a secret.
    """
    if compat.is_secret(value):
        return walk_secrets(compat.unwrap_secret(value), leaf, node, in_secret=True)
    if isinstance(value, dict):
        return node({k: walk_secrets(v, leaf, node, in_secret=in_secret) for k, v in value.items()}, in_secret)
    if isinstance(value, list):
        return node([walk_secrets(v, leaf, node, in_secret=in_secret) for v in value], in_secret)
    return leaf(value, in_secret)


def unwrap_secrets(value: Any) -> Any:
    """A deserialized Pulumi property value with every wrapped secret replaced by its plain value."""
    return walk_secrets(value)


def contains_secret(value: Any) -> bool:
    """True when `value` is, or holds anywhere inside, a Pulumi secret."""
    seen: list[bool] = []

    def note(v: Any, in_secret: bool) -> Any:
        seen.append(in_secret)
        return v

    walk_secrets(value, note, note)
    return any(seen)


def _path(path: str | Sequence[str]) -> list[str]:
    return [p for p in path.split(".") if p] if isinstance(path, str) else [str(p) for p in path]


def dotted_walk(value: Any, path: str | Sequence[str]) -> tuple[Any, bool]:
    """(the value at a dotted path — `spec.template.metadata`, list indexes as numbers — or None;
    whether a secret was crossed on the way). Secrets on the way are unwrapped; the value found is not."""
    crossed = False
    for part in _path(path):
        while compat.is_secret(value):
            crossed = True
            value = compat.unwrap_secret(value)
        if isinstance(value, list):
            value = value[int(part)] if part.isdigit() and int(part) < len(value) else None
        elif isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None, crossed
    return value, crossed


def dotted_get(value: Any, path: str | Sequence[str], default: Any = None) -> Any:
    """The plain value (secrets unwrapped) at a dotted path, `default` when there is none."""
    found, _ = dotted_walk(value, path)
    return default if found is None else unwrap_secrets(found)


def dotted_set(value: dict[str, Any], path: str | Sequence[str], new: Any) -> bool:
    """Set the value at a dotted path, creating missing objects; False (nothing set) when a value
    on the way is not an object."""
    parts = _path(path)
    node: Any = value
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            return False
    node[parts[-1]] = new
    return True


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every node below `value` (plain values: dicts and lists)."""
    yield path, value
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from walk(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{path}.{i}" if path else str(i))


def strings(value: Any) -> Iterator[str]:
    """Every string inside a plain value."""
    return (v for _, v in walk(value) if isinstance(v, str))
