"""Which tenant stacks a merge deploys or retires: the changed files between two commits → stacks.

A tenant stack is one file, `tenant/Pulumi.<stack>.yaml`. Between `base` and `head`:

- a tenant file added or changed: `up` of that stack, after its central stack's `up`;
- a tenant file removed: `retire` of that stack (`pulumi destroy` behind a reviewer, then `pulumi stack rm`);
- a central stack file `Pulumi.<central>.yaml` changed: `up` of every tenant whose `centralStack` names it;
- the programs changed (the `klutch` package, either project's `Pulumi.yaml` or `__main__.py`, the pins):
  `up` of every tenant stack, since any output a tenant reads may have changed.

Without a usable base (the first deploy, a rewritten history) every tenant stack is updated and none
retired. The examples (`EXAMPLES`) are rendered and previewed, never deployed.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

TENANT_DIR = "tenant"
EXAMPLES = frozenset({"example"})
PROGRAM_PATHS = (
    "klutch/",
    "Pulumi.yaml",
    "__main__.py",
    "tenant/Pulumi.yaml",
    "tenant/__main__.py",
    "pyproject.toml",
    "constraints.txt",
    "requirements.txt",
    "tenant/requirements.txt",
)
_STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[^/]+)\.yaml$")
_CENTRAL_STACK = re.compile(r"^[^/]+/klutch-central/(?P<stack>[^/]+)$")


class SelectError(Exception):
    """A fleet the selection cannot plan (printed as `error: ...`)."""


@dataclass(frozen=True, order=True)
class Tenant:
    """What the selection reads from one tenant stack file."""

    stack: str
    central: str  # the central stack's name: the last part of `klutch-tenant:centralStack`
    cluster_id: str


@dataclass(frozen=True)
class Change:
    status: str  # git's A, M, D, T (renames are a removal and an addition: --no-renames)
    path: str


@dataclass(frozen=True)
class Plan:
    up: dict[str, tuple[str, ...]] = field(default_factory=dict)  # central stack → its tenants to update
    retire: tuple[str, ...] = ()

    def as_json(self) -> str:
        return json.dumps({"up": {c: list(s) for c, s in self.up.items()}, "retire": list(self.retire)})

    def github_outputs(self) -> str:
        """`up-<central>=<JSON list>` per central stack and `retire=<JSON list>`: a job's outputs."""
        lines = [f"up-{central}={json.dumps(list(stacks))}" for central, stacks in self.up.items()]
        return "\n".join([*lines, f"retire={json.dumps(list(self.retire))}"]) + "\n"


def plan(changes: Iterable[Change] | None, tenants: Mapping[str, Tenant], centrals: Iterable[str]) -> Plan:
    """The stacks to update and to retire. `tenants`: the tenant files at head by stack; `centrals`: the
    central stack files at head; `changes`: None when the base is unknown (then every tenant is updated)."""
    chosen: set[str] = set(tenants) if changes is None else set()
    retire: set[str] = set()
    for change in changes or ():
        tenant, central = _stack_of(change.path, TENANT_DIR), _stack_of(change.path, "")
        if tenant is not None and tenant not in EXAMPLES:
            (retire if change.status == "D" else chosen).add(tenant)
        elif central is not None:
            chosen |= {t.stack for t in tenants.values() if t.central == central}
        elif any(change.path == p or (p.endswith("/") and change.path.startswith(p)) for p in PROGRAM_PATHS):
            chosen |= set(tenants)
    up = {c: tuple(sorted(s for s in chosen if s in tenants and tenants[s].central == c)) for c in sorted(centrals)}
    return Plan(up=up, retire=tuple(sorted(retire - set(tenants))))


def _stack_of(path: str, directory: str) -> str | None:
    """The stack of a stack file directly in `directory` ('' : the repository root), else None."""
    parent, _, name = path.rpartition("/")
    found = _STACK_FILE.match(name)
    return found["stack"] if found and parent == directory else None


def check(tenants: Mapping[str, Tenant], centrals: Iterable[str]) -> list[str]:
    """Problems of the fleet as a whole: a central stack without a file, a cluster id used twice."""
    problems = []
    known = set(centrals)
    seen: dict[tuple[str, str], str] = {}
    for tenant in sorted(tenants.values()):
        where = f"{TENANT_DIR}/Pulumi.{tenant.stack}.yaml"
        if tenant.central not in known:
            problems.append(
                f"{where}: klutch-tenant:centralStack names central stack {tenant.central!r}, which has no "
                f"stack file; central stacks: {', '.join(sorted(known)) or 'none'}"
            )
        other = seen.setdefault((tenant.central, tenant.cluster_id), tenant.stack)
        if other != tenant.stack:
            problems.append(
                f"{where}: klutch-tenant:clusterId = {tenant.cluster_id!r} is already the cluster id of tenant "
                f"stack {other!r} on central stack {tenant.central!r}; a cluster id must be unique per central stack"
            )
    return problems


# ------------------------------------------------------------------------------- reading git
def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise SelectError(f"git {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def changed(root: Path, base: str | None, head: str) -> list[Change] | None:
    """The files changed from `base` to `head`; None when `base` is missing, all zeros or unknown to git."""
    if not base or set(base) == {"0"}:
        return None
    try:
        git(root, "cat-file", "-e", f"{base}^{{commit}}")
    except SelectError:
        return None
    out = git(root, "diff", "--name-status", "--no-renames", "-z", base, head)
    fields = out.split("\0")
    return [Change(status, path) for status, path in zip(fields[::2], fields[1::2], strict=False) if path]


def stack_files(root: Path, head: str, directory: str) -> list[str]:
    """The stacks of the stack files in `directory` at `head`."""
    names = git(root, "ls-tree", "--name-only", "-z", f"{head}:{directory}" if directory else head).split("\0")
    return sorted(m["stack"] for m in map(_STACK_FILE.match, names) if m)


def tenants_at(root: Path, head: str) -> dict[str, Tenant]:
    """Every deployable tenant stack file at `head` (the examples left out)."""
    found = {}
    for stack in stack_files(root, head, TENANT_DIR):
        if stack in EXAMPLES:
            continue
        path = f"{TENANT_DIR}/Pulumi.{stack}.yaml"
        try:
            config = (yaml.safe_load(git(root, "show", f"{head}:{path}")) or {}).get("config") or {}
        except (yaml.YAMLError, AttributeError) as e:
            raise SelectError(f"{path}: not a stack file ({e}); `klutch-render --all --check` says more") from None
        reference = config.get("klutch-tenant:centralStack")
        found_central = _CENTRAL_STACK.match(reference) if isinstance(reference, str) else None
        if not found_central:
            raise SelectError(
                f"{path}: klutch-tenant:centralStack = {reference!r}: expected '<organization>/klutch-central/<stack>'"
            )
        found[stack] = Tenant(stack, found_central["stack"], str(config.get("klutch-tenant:clusterId")))
    return found


def select(root: Path, base: str | None, head: str = "HEAD") -> Plan:
    """The plan of a merge from `base` to `head` in the repository at `root` (SelectError if the fleet is invalid)."""
    tenants, centrals = tenants_at(root, head), stack_files(root, head, "")
    if problems := check(tenants, centrals):
        raise SelectError("\n".join(problems))
    return plan(changed(root, base, head), tenants, centrals)
