"""What `klutch-recover` does with a stack an interrupted `pulumi up` left behind, decided from the state
and from what the cluster holds (pure: the cluster is asked through `ClusterView`; docs/operations.md,
"Recovering an interrupted update").

- A pending create of a Kubernetes object (built-in or CRD-backed) that exists on the cluster is imported
  with the id the Kubernetes provider gives it (`namespace/name`, or `name` for a cluster-scoped kind);
  one that does not exist (or whose kind the cluster does not know) is cleared: the next `up` creates it.
- A Helm release (`helm.sh/v3` Release): importing a release whose install was cut off leaves no release
  in the state, and a Helm record the state does not know blocks the next install ("cannot re-use a
  name that is still in use"). So its Helm records are dropped and the pending create cleared; the chart's
  objects stay, and the next `up` installs the release again, Helm adopting the objects that carry the
  release's ownership labels. A release interrupted while upgrading keeps its deployed revisions; only the
  records of the interrupted operation (pending-install, pending-upgrade, pending-rollback) are dropped.
- Resources that exist only in the state (random, tls, providers) are cleared: the next `up` makes them.
- Anything else (a cloud resource) cannot be checked here: the operator decides (`Action.MANUAL`).
- Pending updates and deletes are settled by the same refresh that imports and clears.
- A release of the program that the state has no trace of, with Helm records that never reached `deployed`
  (its install failed while the update went on), has its records dropped too: the next `up` installs it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
STATE_ONLY_PREFIXES = ("random:", "tls:", "pulumi:providers:")  # nothing of theirs lives outside the state
PENDING_HELM_STATUSES = ("pending-install", "pending-upgrade", "pending-rollback")
SETTLED_HELM_STATUSES = ("deployed", "superseded")  # a release that was installed once
CREATING = "creating"


class Action(enum.Enum):
    IMPORT = "import"  # the object exists: adopt it with its id
    CLEAR = "clear"  # it does not exist: the next `up` creates it
    REINSTALL = "reinstall"  # a Helm release: drop its interrupted Helm records, clear; the next `up` installs
    DROP_PENDING_RECORDS = "drop pending records"  # a Helm release cut off while upgrading
    REFRESH = "refresh"  # a pending update or delete: the refresh reads the resource as it is
    MANUAL = "decide by hand"  # cannot be checked here


@dataclass(frozen=True)
class PendingOp:
    """One pending operation of the stack's state (`pulumi stack export`)."""

    urn: str
    type: str  # the resource type token, e.g. kubernetes:core/v1:Secret
    operation: str  # creating | updating | deleting | reading | importing
    inputs: Mapping[str, Any]
    provider: str  # "<provider urn>::<provider id>", "" for none

    @classmethod
    def from_state(cls, op: Mapping[str, Any]) -> PendingOp:
        resource = op.get("resource", {})
        return cls(
            urn=resource.get("urn", ""),
            type=resource.get("type", ""),
            operation=op.get("type", ""),
            inputs=resource.get("inputs") or {},
            provider=resource.get("provider", ""),
        )

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class ObjectRef:
    """The Kubernetes object a resource of type `kubernetes:<group>/<version>:<Kind>` stands for."""

    api_version: str
    kind: str
    name: str
    namespace: str | None  # as the inputs give it (None: not given)


@dataclass(frozen=True)
class HelmRecord:
    """One revision of a Helm release as Helm stores it (a Secret `sh.helm.release.v1.<name>.v<revision>`)."""

    secret: str
    revision: int
    status: str


class ClusterView(Protocol):
    """What the planning asks the cluster."""

    def namespaced(self, api_version: str, kind: str) -> bool | None:
        """Whether the kind is namespaced; None when the cluster does not serve it."""
        ...

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool: ...

    def helm_records(self, namespace: str, release: str) -> list[HelmRecord]: ...


@dataclass(frozen=True)
class Decision:
    op: PendingOp
    action: Action
    why: str
    id: str | None = None  # IMPORT: the id to import with
    records: tuple[HelmRecord, ...] = ()  # REINSTALL, DROP_PENDING_RECORDS: the Helm records to drop


def object_ref(op: PendingOp) -> ObjectRef | None:
    """The object of a Kubernetes resource type, None for any other type (Helm releases included)."""
    package, _, rest = op.type.partition(":")
    module, _, kind = rest.partition(":")
    if package != "kubernetes" or op.type == HELM_RELEASE or "/" not in module:
        return None
    group, _, version = module.rpartition("/")
    metadata = op.inputs.get("metadata") or {}
    return ObjectRef(
        api_version=version if group == "core" else f"{group}/{version}",
        kind=kind,
        name=str(metadata.get("name") or ""),
        namespace=metadata.get("namespace"),
    )


def object_id(ref: ObjectRef, namespaced: bool) -> str:
    """The Kubernetes provider's id of an object: `namespace/name` (the default namespace when the inputs
    name none), or `name` for a cluster-scoped kind."""
    return f"{ref.namespace or 'default'}/{ref.name}" if namespaced else ref.name


def decide(op: PendingOp, cluster: ClusterView) -> Decision:
    """What to do with one pending operation."""
    if op.type == HELM_RELEASE:
        return decide_release(op, cluster)
    if op.operation != CREATING:
        return Decision(op, Action.REFRESH, f"interrupted while {op.operation}: the refresh reads it as it is")
    if op.type.startswith(STATE_ONLY_PREFIXES):
        return Decision(op, Action.CLEAR, "exists only in the state: the next up makes it")
    ref = object_ref(op)
    if ref is None:
        return Decision(op, Action.MANUAL, f"{op.type} cannot be looked up here; import it or clear it by hand")
    if not ref.name:
        return Decision(op, Action.MANUAL, "its inputs name no object")
    namespaced = cluster.namespaced(ref.api_version, ref.kind)
    if namespaced is None:
        return Decision(op, Action.CLEAR, f"the cluster serves no {ref.kind} ({ref.api_version}): it was not created")
    oid = object_id(ref, namespaced)
    namespace = (ref.namespace or "default") if namespaced else None
    if cluster.exists(ref.api_version, ref.kind, ref.name, namespace):
        return Decision(op, Action.IMPORT, f"{ref.kind} {oid} exists", id=oid)
    return Decision(op, Action.CLEAR, f"{ref.kind} {oid} does not exist")


def release_of(inputs: Mapping[str, Any]) -> tuple[str, str]:
    """The namespace and name a Helm release's inputs give it (the default namespace when they name none)."""
    return str(inputs.get("namespace") or "default"), str(inputs.get("name") or "")


def decide_release(op: PendingOp, cluster: ClusterView) -> Decision:
    """A Helm release: its records are looked up where the release's inputs put it."""
    namespace, name = release_of(op.inputs)
    if not name:
        return Decision(op, Action.MANUAL, "its inputs name no Helm release")
    records = sorted(cluster.helm_records(namespace, name), key=lambda r: r.revision)
    where = f"Helm release {namespace}/{name}"
    if op.operation == CREATING:
        if not records:
            return Decision(op, Action.CLEAR, f"{where} does not exist")
        statuses = ", ".join(f"v{r.revision} {r.status}" for r in records)
        why = f"{where} has records ({statuses}) the state does not know: dropped, its objects adopted on install"
        return Decision(op, Action.REINSTALL, why, records=tuple(records))
    pending = tuple(r for r in records if r.status in PENDING_HELM_STATUSES)
    if pending:
        why = f"{where} was cut off ({', '.join(r.status for r in pending)}): back to its last revision"
        return Decision(op, Action.DROP_PENDING_RECORDS, why, records=pending)
    return Decision(op, Action.REFRESH, f"interrupted while {op.operation}: the refresh reads it as it is")


def plan(state: Mapping[str, Any], cluster: ClusterView, releases: Iterable[tuple[str, str]] = ()) -> list[Decision]:
    """One decision per pending operation of an exported state (`deployment.pending_operations`), then one
    per stray Helm release among `releases` (namespace, name: those the program installs)."""
    ops = [PendingOp.from_state(op) for op in state.get("deployment", {}).get("pending_operations") or []]
    return [decide(op, cluster) for op in ops] + stray_releases(state, releases, cluster)


def stray_releases(
    state: Mapping[str, Any], releases: Iterable[tuple[str, str]], cluster: ClusterView
) -> list[Decision]:
    """The releases the state has no trace of (neither a resource nor a pending operation) whose Helm records
    never reached `deployed`: an install that failed while the update went on, its records left behind when
    the update was cut off. They would block the next install, so they are dropped as for a reinstall. A
    release with a deployed revision was installed outside this stack and is left alone."""
    deployment = state.get("deployment", {})
    entries = [
        *(deployment.get("resources") or []),
        *(op.get("resource", {}) for op in deployment.get("pending_operations") or []),
    ]
    known = {release_of(r.get("inputs") or {}) for r in entries if r.get("type") == HELM_RELEASE}
    decisions = []
    for namespace, name in releases:
        records = sorted(cluster.helm_records(namespace, name), key=lambda r: r.revision)
        if (namespace, name) in known or not records or any(r.status in SETTLED_HELM_STATUSES for r in records):
            continue
        op = PendingOp(f"{HELM_RELEASE}::{name}", HELM_RELEASE, "", {"name": name, "namespace": namespace}, "")
        statuses = ", ".join(f"v{r.revision} {r.status}" for r in records)
        why = f"Helm release {namespace}/{name} has records ({statuses}) and the state no trace of it: dropped"
        decisions.append(Decision(op, Action.REINSTALL, why, records=tuple(records)))
    return decisions


def import_args(decisions: Iterable[Decision]) -> list[str]:
    """`pulumi refresh` flags: each import as a URN and an id (the flag repeated), then the rest cleared."""
    args: list[str] = []
    for d in decisions:
        if d.action is Action.IMPORT and d.id:
            args += ["--import-pending-creates", d.op.urn, "--import-pending-creates", d.id]
    return [*args, "--clear-pending-creates"]


# ------------------------------------------------------------------------------- the lock
@dataclass(frozen=True)
class Lock:
    """A file backend's lock of a stack: who took it for which update, and when."""

    where: str
    pid: int
    user: str
    host: str
    created: datetime

    @classmethod
    def from_json(cls, where: str, content: Mapping[str, Any]) -> Lock:
        return cls(
            where=where,
            pid=int(content.get("pid") or 0),
            user=str(content.get("username") or "?"),
            host=str(content.get("hostname") or "?"),
            created=datetime.fromisoformat(str(content.get("timestamp"))),
        )

    def __str__(self) -> str:
        return f"{self.where}: taken by {self.user}@{self.host} (pid {self.pid}) at {self.created.isoformat()}"


def live_holder(lock: Lock, host: str, now: datetime, stale_after: timedelta, running: Sequence[int]) -> str | None:
    """Why `lock` may still belong to a running update, or None when its holder is gone: on this host, no
    `pulumi` process has its pid (`running`); on another host, it is older than `stale_after`."""
    if lock.host == host:
        return f"pulumi (pid {lock.pid}) still runs on this host" if lock.pid in running else None
    age = now - lock.created
    if age < stale_after:
        minutes = int(age.total_seconds() // 60)
        return f"taken on another host {minutes} min ago: an update may still run there"
    return None


@dataclass(frozen=True)
class Process:
    pid: int
    parent: int
    name: str  # the file name of its executable


def orphaned_plugins(processes: Sequence[Process]) -> list[Process]:
    """Provider plugins whose `pulumi` is gone. The CLI starts each plugin in a process group of its own,
    so killing the CLI (even its whole group) leaves them running, and they may still finish, or start,
    what they were asked to do: the cluster is not settled until they have exited."""
    names = {p.pid: p.name for p in processes}
    return [p for p in processes if p.name.startswith("pulumi-resource-") and names.get(p.parent) != "pulumi"]
