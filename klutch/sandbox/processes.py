"""The sandbox's processes by recorded pid: whether they run, and stopping them (their process groups).

A pid is only signalled while its start time (field 22 of /proc/<pid>/stat) is the recorded one, so a
pid the kernel has since given to another process is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from klutch.sandbox.state import Service

STOP_TIMEOUT = 60.0


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state (3rd) on: the name may hold spaces


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, started: int | None = None) -> bool:
    """The process runs (not a zombie) and, when `started` is given, is the one that started then."""
    fields = _stat(pid)
    if fields is None or fields[0] == "Z":
        return False
    return started is None or int(fields[19]) == started


def record_start_times(service: Service) -> None:
    service.started = {str(pid): start_time(pid) or 0 for pid in service.all_pids()}


def running(service: Service) -> list[int]:
    """The recorded pids that still run."""
    return [pid for pid in service.all_pids() if alive(pid, service.started.get(str(pid)))]


def stopped(service: Service) -> list[str]:
    """The names of the recorded processes (the service itself included) that no longer run."""
    left = set(running(service))
    return [name for name, pid in {"service": service.pid, **service.pids}.items() if pid not in left]


def _signal_groups(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)  # each was started as the leader of its own session


def stop(service: Service, timeout: float = STOP_TIMEOUT) -> list[int]:
    """SIGTERM to the service (it stops its control planes in order), then SIGKILL to whatever is left
    after `timeout`; returns the pids still running at the end (none, normally)."""
    if service.pid in running(service):
        _signal_groups([service.pid], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(service) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = running(service)
    if left:
        _signal_groups(left, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running(service) and time.monotonic() < deadline:
            time.sleep(0.2)
    return running(service)
