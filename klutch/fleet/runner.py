"""`pulumi up` and retirement of tenant stacks, at most `parallel` at a time (Pulumi Automation API).

The deploy workflow runs one stack per matrix job (`klutch-fleet up STACK`); a machine runs many with
`--parallel N`. Both go through `up` and `retire` here. Each stack is updated by its own `pulumi`
process; no two operations ever touch one stack at once, since every stack appears once per run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from pulumi import automation as auto

Echo = Callable[[str], None]
T = TypeVar("T")
# `pulumi stack select` rewrites the project's workspace file in PULUMI_HOME: one selection at a time.
SELECTING = threading.Lock()


@dataclass(frozen=True)
class Outcome:
    """How one stack's operation ended; `started`/`ended` are seconds since the epoch."""

    stack: str
    operation: str  # "up" or "retire"
    ok: bool
    started: float
    ended: float
    detail: str  # the change summary, or the error's last lines

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _display(stack: str, echo: Echo) -> dict[str, Any]:
    """How an operation shows: its stdout and stderr lines prefixed with the stack, no colour, no dots."""

    def line(text: str) -> None:
        echo(f"[{stack}] {text.rstrip()}")

    return {"on_output": line, "on_error": line, "color": "never", "suppress_progress": True}


def failure(error: Exception) -> str:
    """The last lines of what a failed `pulumi` command printed."""
    text = (getattr(error, "stderr", "") or "").strip() or (getattr(error, "stdout", "") or "").strip() or str(error)
    return "\n".join(text.splitlines()[-8:])


def _summary(changes: dict[str, int] | None) -> str:
    return ", ".join(f"{n} {op}" for op, n in sorted((changes or {}).items())) or "no changes"


def up(project_dir: Path, stack: str, policy_packs: Sequence[str] = (), echo: Echo = print) -> Outcome:
    """`pulumi up` of one stack (created first if the backend has none, as `pulumi stack select --create`)."""
    started = time.time()
    try:
        with SELECTING:
            found = auto.create_or_select_stack(stack_name=stack, work_dir=str(project_dir))
        result = found.up(policy_packs=list(policy_packs) or None, **_display(stack, echo))
        return Outcome(stack, "up", True, started, time.time(), _summary(result.summary.resource_changes))
    except auto.CommandError as e:
        return Outcome(stack, "up", False, started, time.time(), failure(e))


def retire(project_dir: Path, stack: str, echo: Echo = print) -> Outcome:
    """`pulumi destroy`, then `pulumi stack rm`, of a stack whose file was removed. A stack the backend no
    longer has is already retired."""
    started = time.time()
    try:
        workspace = auto.LocalWorkspace(work_dir=str(project_dir))
        if stack not in {s.name for s in workspace.list_stacks()}:
            return Outcome(stack, "retire", True, started, time.time(), "already retired: no such stack")
        with SELECTING:
            found = auto.Stack.select(stack, workspace)
        result = found.destroy(**_display(stack, echo))
        workspace.remove_stack(stack)
        detail = f"destroyed ({_summary(result.summary.resource_changes)}); stack removed"
        return Outcome(stack, "retire", True, started, time.time(), detail)
    except auto.CommandError as e:
        return Outcome(stack, "retire", False, started, time.time(), failure(e))


def run_all(operation: Callable[[str], T], stacks: Iterable[str], parallel: int) -> list[T]:
    """`operation` on every stack, at most `parallel` at once; the results in the order of `stacks`."""
    with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="fleet") as pool:
        return list(pool.map(operation, stacks))


def locked(echo: Echo) -> Echo:
    """`echo` made safe to call from several threads (whole lines, never interleaved)."""
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            echo(line)

    return write
