"""A stack's secret config from one JSON document, as the workflows keep it (`klutch-fleet secrets`).

The document (the repository secret PULUMI_SECRET_CONFIG) maps `<project>/<stack>` to
`{"<config path>": "<value>"}`. Each value is set with `pulumi config set --secret --path`, handed over
on stdin (never on a command line), and in GitHub Actions every line of it is masked in the logs first.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

Echo = Callable[[str], None]


class SecretConfigError(Exception):
    """A document that is not the expected JSON (its values never appear in the message)."""


def parse(document: str) -> dict[str, dict[str, str]]:
    """The document's entries, checked: an object of objects of strings."""
    try:
        found = json.loads(document or "{}")
    except json.JSONDecodeError as e:
        raise SecretConfigError(f"the secret config is not JSON (line {e.lineno}, column {e.colno})") from None
    good = isinstance(found, dict) and all(
        isinstance(v, dict) and all(isinstance(k2, str) and isinstance(v2, str) for k2, v2 in v.items())
        for v in found.values()
    )
    if not good:
        raise SecretConfigError('the secret config must be {"<project>/<stack>": {"<config path>": "<value>"}}')
    return found


def masks(values: Iterable[str]) -> list[str]:
    """GitHub's `::add-mask::` command for every non-empty line of every value."""
    return [f"::add-mask::{line}" for value in values for line in value.splitlines() if line.strip()]


def stacks_of(entries: Mapping[str, Mapping[str, str]], project: str) -> list[str]:
    """The stacks of `project` the document has an entry for."""
    prefix = f"{project}/"
    return sorted(key[len(prefix) :] for key in entries if key.startswith(prefix))


def apply(project_dir: Path, stack: str, values: Mapping[str, str], mask: bool, echo: Echo = print) -> None:
    """Set each of `values` as the secret config of `stack` (`pulumi config set --secret --path`)."""
    if mask:
        for line in masks(values.values()):
            echo(line)
    for path, value in sorted(values.items()):
        done = subprocess.run(
            ["pulumi", "config", "set", "--stack", stack, "--secret", "--path", "--non-interactive", path],
            cwd=project_dir,
            input=value,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise SecretConfigError(f"{stack}: pulumi config set --secret --path {path}: {done.stderr.strip()}")
        echo(f"{stack}: secret config {path} set")
