"""`./klutch-sandbox`, the README's first command, run as a user runs it, in a temporary state directory.

In order: `up` from nothing (the central stack deployed, the tenant bound: its APIServiceBindings on
the tenant cluster), `status` exits 0, a second `up` changes nothing, an edit of the sandbox stack file
adding a second data service is applied by the next `up`, `down` leaves none of the recorded processes
running and no state, and a second `down` succeeds. The `up` times are printed (docs/sandbox.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from klutch.sandbox import processes
from klutch.sandbox.cli import ROOT
from klutch.sandbox.state import Layout, Service

pytestmark = pytest.mark.e2e
COMMAND = ["bash", str(ROOT / "klutch-sandbox")]


def readme_command() -> str:
    """The first command of the README's "Two commands": the sandbox's `up`."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"## Two commands\n.*?```bash\n(.*?)```", readme, re.S)
    assert match, "README.md has no bash block under ## Two commands"
    return match.group(1).strip()


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[Layout]:
    layout = Layout(tmp_path_factory.mktemp("sandbox") / "state")
    yield layout
    sandbox(layout, "down")  # whatever a failed step left


def sandbox(layout: Layout, *args: str, shell: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KLUTCH_SANDBOX_DIR": str(layout.root)}
    command = ["bash", "-c", shell] if shell else [*COMMAND, *args]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    print(f"\n{command[-1] if shell else ' '.join(args)}: exit {done.returncode} in {time.monotonic() - started:.0f}s")
    return done


def kubectl(layout: Layout, cluster: str, *args: str) -> dict:
    done = subprocess.run(
        ["kubectl", f"--kubeconfig={layout.kubeconfig(cluster)}", *args, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


def names(layout: Layout, cluster: str, resource: str) -> set[str]:
    return {item["metadata"]["name"] for item in kubectl(layout, cluster, "get", resource, "-A")["items"]}


def commands_naming(root: Path) -> list[str]:
    """The command lines of the running processes that name the sandbox's state directory."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and str(root) in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def test_up_from_nothing_deploys_and_binds(layout: Layout):
    assert readme_command() == "./klutch-sandbox up"
    done = sandbox(layout, shell=readme_command())
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    out = done.stdout
    assert f"export KUBECONFIG={layout.kubeconfig('central')}" in out
    assert f"export KUBECONFIG={layout.kubeconfig('tenant')}" in out
    assert re.search(r"kubeconfig\s+\[secret\]", out)  # secrets stay secret
    assert "Simulated: pods" in out and "klutch-sandbox down" in out
    assert re.search(r"│ ok\s+│ Tenant\s+│ cluster-sandbox ", out), out[-4000:]
    bindings = names(layout, "tenant", "apiservicebindings.klutch.anynines.com")
    assert "postgresqlinstances.anynines.com" in bindings
    assert "postgresql-service-broker" in names(layout, "central", "providerconfigs.dataservices.anynines.com")


def test_status_exits_0(layout: Layout):
    done = sandbox(layout, "status")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    assert "healthy" in done.stdout


def test_a_second_up_changes_nothing(layout: Layout):
    done = sandbox(layout, "up")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    summaries = re.findall(r"done in \d+s: (.*)", done.stdout)
    assert len(summaries) == 2, done.stdout[:3000]
    for summary in summaries:
        assert re.fullmatch(r"\d+ unchanged", summary), summary


def test_an_edited_stack_file_is_applied(layout: Layout):
    stack_file = layout.projects / "central" / "Pulumi.sandbox.yaml"
    document = yaml.safe_load(stack_file.read_text())
    services = document["config"]["klutch-central:dataServices"]
    services["mongodb"] = {
        kind: {"url": f"http://127.0.0.1:9/mongodb/{kind}", "username": "admin"}
        for kind in ("serviceBroker", "backupManager")
    }
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    done = sandbox(layout, "up")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"done in \d+s: \+ \d+ created", done.stdout), done.stdout[:3000]
    configs = names(layout, "central", "providerconfigs.dataservices.anynines.com")
    assert {"mongodb-service-broker", "mongodb-backup-manager"} <= configs


def test_down_stops_every_process_and_twice_is_fine(layout: Layout):
    service = Service.load(layout.service_file)
    assert service is not None
    planes = {f"{c}/{p}" for c in ("central", "tenant") for p in ("etcd", "kube-apiserver", "kwok")}
    assert planes | {"keycloak"} <= set(service.pids)
    assert processes.running(service) == service.all_pids()
    assert len(commands_naming(layout.root)) >= len(service.all_pids())
    done = sandbox(layout, "down")
    assert done.returncode == 0, done.stdout + done.stderr
    assert processes.running(service) == []
    assert not any(processes.alive(pid) for pid in service.all_pids())
    assert not layout.root.exists()
    assert commands_naming(layout.root) == []  # nor any process of theirs that was not recorded
    again = sandbox(layout, "down")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no sandbox" in again.stdout
