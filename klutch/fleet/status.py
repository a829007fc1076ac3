"""The fleet view: every tenant stack of the backend, what it binds and how its last update ended
(`klutch-fleet status`, Pulumi Automation API).

Per stack: the cluster id and APIs of its binding (from the state, so no secret is decrypted), its last
operation's kind, result and end time, and with `check_drift` whether `pulumi preview --refresh` is clean
(the live objects and the stack file agree with the state). A row is healthy when the stack has a
binding, its last operation succeeded and, where checked, its preview is clean.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto
from rich.console import Console
from rich.table import Table

from klutch.config.tenant import Api
from klutch.fleet.runner import SELECTING, failure, run_all
from klutch.tenant.binding import TYPE as BINDING_TYPE

CLEAN = "clean"


@dataclass(frozen=True)
class Row:
    stack: str
    cluster_id: str | None  # None: the stack holds no binding
    apis: tuple[str, ...]
    last_update: str | None  # the end (or start) of the last operation, ISO 8601 in UTC
    result: str | None  # e.g. "update succeeded", "destroy failed"
    preview: str | None  # None: not checked; "clean"; the pending changes; or "failed: <reason>"

    @property
    def healthy(self) -> bool:
        done = self.result is not None and self.result.endswith(" succeeded")
        return self.cluster_id is not None and done and self.preview in (None, CLEAN)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "apis": list(self.apis), "healthy": self.healthy}


def binding_of(deployment: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...]]:
    """(cluster id, bound APIs as `<resource>.<group>`) of the stack's Binding, or (None, ())."""
    for resource in deployment.get("resources") or []:
        if resource.get("type") == BINDING_TYPE:
            outputs = resource.get("outputs") or {}
            apis = tuple(Api(a.get("group", ""), a["resource"]).name for a in outputs.get("apis") or [])
            return outputs.get("clusterId"), apis
    return None, ()


def preview_state(stack: auto.Stack) -> str:
    try:
        changes = stack.preview(refresh=True, color="never").change_summary
    except auto.CommandError as e:
        return f"failed: {failure(e).splitlines()[-1]}"
    pending = {op: n for op, n in changes.items() if op != "same" and n}
    return ", ".join(f"{n} to {op}" for op, n in sorted(pending.items())) or CLEAN


def row(workspace: auto.LocalWorkspace, name: str, check_drift: bool) -> Row:
    with SELECTING:
        stack = auto.Stack.select(name, workspace)
    cluster_id, apis = binding_of(stack.export_stack().deployment or {})
    [last] = stack.history(page_size=1, show_secrets=False) or [None]
    when = last and (last.end_time or last.start_time)
    return Row(
        stack=name,
        cluster_id=cluster_id,
        apis=apis,
        last_update=when.strftime("%Y-%m-%dT%H:%M:%SZ") if when else None,
        result=f"{last.kind} {last.result}" if last else None,
        preview=preview_state(stack) if check_drift else None,
    )


def rows(project_dir: Path, check_drift: bool = False, parallel: int = 4) -> list[Row]:
    """A row for every stack of the project in `project_dir` that the backend holds, by stack name."""
    workspace = auto.LocalWorkspace(work_dir=str(project_dir))
    names = sorted(s.name for s in workspace.list_stacks())
    return run_all(lambda name: row(workspace, name, check_drift), names, parallel)


def as_json(found: Sequence[Row]) -> str:
    return json.dumps([r.as_dict() for r in found], indent=2)


def table(found: Sequence[Row], check_drift: bool) -> Table:
    view = Table(title=f"tenant stacks: {sum(r.healthy for r in found)}/{len(found)} healthy")
    for column in ("stack", "cluster id", "bound APIs", "last update", "result", *(["preview"] * check_drift), ""):
        view.add_column(column)
    for r in found:
        cells = [r.stack, r.cluster_id or "-", "\n".join(r.apis) or "-", r.last_update or "-", r.result or "-"]
        view.add_row(*cells, *([r.preview or "-"] * check_drift), "ok" if r.healthy else "UNHEALTHY")
    return view


def print_table(found: Sequence[Row], check_drift: bool) -> None:
    Console(width=200).print(table(found, check_drift))
