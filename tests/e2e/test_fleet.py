"""The tenant fleet as GitOps under the real engine: tenant stack files merged into a git repository,
`klutch-fleet select` choosing the stacks, `klutch-fleet up` binding them at most 4 at a time, the fleet
view, and a removed file retired by `klutch-fleet retire` — the commands the deploy workflow runs.

Shared and cheap on purpose: ONE central cluster (a plain local control plane with the release's
kube-bind CRDs, no central program) behind the kube-bind backend double, ONE central stack double
(`organization/klutch-central/dev`, the outputs a tenant reads, as in test_tenant), and ten tenant stacks
with their own cluster ids and tenant namespaces there. They bind without a tenant cluster (prepare-only:
the bind and the central side): tenant clusters cannot be shared, since the konnector's namespace and the
cluster-scoped APIServiceBindings have fixed names, and test_tenant proves the tenant-cluster side and its
destroy. Every `up` runs the policy pack, as in the workflow.

The story, in order: merge 1 adds four tenant files (updated one at a time: the sequential rate), merge 2
adds six (four at a time: the parallel rate); the fleet view lists ten healthy rows with clean
previews; a change of the central stack file selects all ten; merge 4 removes one file, its stack is
retired from a checkout of the commit before (as the workflow does) and only its objects go; an
object deleted behind Pulumi's back shows as drift.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from klutch import catalog
from klutch.sandbox.cli import ROOT, Pulumi, offline_env, project_copy
from klutch.sandbox.controlplane import ControlPlane, running
from klutch.sandbox.doubles import kube_bind_crds
from klutch.sandbox.fake_backend import FakeBackend
from tests.e2e.helpers import succeeded
from tests.e2e.stacks import SERVICES
from tests.e2e.test_tenant import central_double, dynamic_plugin_dir, plane

pytestmark = pytest.mark.e2e
RELEASE = catalog.DEFAULT_RELEASE
REL = catalog.RELEASES[RELEASE]
GROUP = REL.kube_bind_group
CLIENT_ID, CLIENT_SECRET = "fleet-binder", "fleet-binder-secret"
APIS = ["postgresqlinstances.anynines.com", "servicebindings.anynines.com"]
TENANTS = [f"t{i:02d}" for i in range(1, 11)]
RETIRED = "t07"
ANALYZER = ROOT / "e2e" / "toolchain" / "policy-analyzer"
FLEET = str(ROOT / ".venv" / "bin" / "klutch-fleet")


@dataclass
class Fleet:
    central: ControlPlane
    backend: FakeBackend
    repo: Path
    env: dict[str, str]
    central_stack: str

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(["git", *args], cwd=cwd or self.repo, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def fleet(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [FLEET, *args], cwd=cwd or self.repo, env=self.env, capture_output=True, text=True, timeout=1800
        )


def fleet_repo(base: Path) -> Path:
    """A repository like this one, cut down to what the fleet needs: the tenant project, a central stack file."""
    repo = base / "fleet-repo"
    project_copy(ROOT / "tenant", repo / "tenant")  # links repo/.venv to the checkout's virtualenv
    (repo / "Pulumi.dev.yaml").write_text("config: {}\n")
    (repo / ".gitignore").write_text(".venv\n")
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.email", "e2e@example.com"),
        ("config", "user.name", "e2e"),
        ("add", "-A"),
        ("commit", "-q", "-m", "the fleet, no tenant yet"),
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    return repo


@pytest.fixture(scope="module")
def fleet(
    workspace: dict[str, Path], plugin_dirs: list[Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    central = plane("fleet-central", tmp_path_factory)
    plugin_dirs = [dynamic_plugin_dir(tmp_path_factory.mktemp("dynamic")), *plugin_dirs]
    with running(central):
        templates = [b.export_template_api_version for b in REL.backends.values()]
        for crd in kube_bind_crds(GROUP, REL.kube_bind_version, templates):
            central.apply(crd)
        central.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        with FakeBackend(central, tmp_path_factory.mktemp("backend"), CLIENT_ID, CLIENT_SECRET) as backend:
            outputs = {
                "exportUrl": f"{backend.url}/export",
                "bindNonInteractiveUrl": backend.bind_url,
                "konnectorImage": REL.konnector_image,
                "bindingApis": catalog.binding_apis(REL, SERVICES),
                "kubeBindCrdUrls": list(REL.kube_bind_crd_urls),
                "tlsCaPem": backend.ca_pem,
                "kubectlBindCommand": f"kubectl bind {backend.url}/export --konnector-image={REL.konnector_image}",
            }
            central_stack = central_double(workspace, plugin_dirs, outputs)
            env = offline_env(plugin_dirs, workspace["home"], workspace["state"])
            env["KLUTCH_POLICY_PACK_DIR"] = str(ROOT / "policy")
            repo = fleet_repo(workspace["base"])
            yield Fleet(central, backend, repo, env, central_stack)


def tenant_config(fleet: Fleet, cluster_id: str) -> dict[str, Any]:
    return {
        "pulumi:disable-default-providers": ["kubernetes"],
        "klutch-tenant:klutchRelease": RELEASE,
        "klutch-tenant:centralStack": fleet.central_stack,
        "klutch-tenant:clusterId": cluster_id,
        "klutch-tenant:oidc": {"tokenUrl": fleet.backend.token_url, "clientId": CLIENT_ID},
        "klutch-tenant:apis": APIS,
        "klutch-tenant:namespaces": ["apps"],
    }


def add_tenants(fleet: Fleet, stacks: list[str]) -> str:
    """What a platform engineer merges for new tenants: each stack created once (the file keeps the lines
    `pulumi stack init` adds), its config in the file, no secret in it. Returns the commit before."""
    base = fleet.git("rev-parse", "HEAD")
    for stack in stacks:
        pulumi = Pulumi(cwd=fleet.repo / "tenant", env=fleet.env, stack=stack)
        pulumi.init()
        path = fleet.repo / "tenant" / f"Pulumi.{stack}.yaml"
        document = yaml.safe_load(path.read_text()) or {}
        document["config"] = tenant_config(fleet, stack)
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    fleet.git("add", "--", *(f"tenant/Pulumi.{s}.yaml" for s in stacks))  # the checkout's secrets stay out
    fleet.git("commit", "-q", "-m", f"tenants {', '.join(stacks)}")
    return base


def select(fleet: Fleet, base: str) -> dict[str, Any]:
    return json.loads(succeeded(fleet.fleet("select", "--base", base)).stdout)


def set_secrets(fleet: Fleet, stacks: list[str]) -> None:
    """The workflow's secret config: one PULUMI_SECRET_CONFIG entry per tenant, set in the checkout."""
    document = {f"klutch-tenant/{s}": {"oidc.clientSecret": CLIENT_SECRET} for s in stacks}
    env = {**fleet.env, "PULUMI_SECRET_CONFIG": json.dumps(document)}
    done = subprocess.run(
        [FLEET, "secrets", "--project", "klutch-tenant", "--all"],
        cwd=fleet.repo,
        env=env,
        capture_output=True,
        text=True,
    )
    succeeded(done)
    assert CLIENT_SECRET not in "".join(p.read_text() for p in (fleet.repo / "tenant").glob("Pulumi.t*.yaml"))


def up(fleet: Fleet, stacks: list[str], parallel: int) -> list[dict[str, Any]]:
    started = time.monotonic()
    done = fleet.fleet("up", "--parallel", str(parallel), "--json", "--policy-pack", str(ANALYZER), *stacks)
    elapsed = time.monotonic() - started
    succeeded(done, f"backend: {fleet.backend.errors[-5:]}")
    outcomes = json.loads(done.stdout)
    assert [(o["stack"], o["ok"]) for o in outcomes] == [(s, True) for s in stacks]
    rate = len(stacks) / elapsed * 60
    print(f"\nklutch-fleet up --parallel {parallel}: {len(stacks)} binds in {elapsed:.1f} s = {rate:.1f} binds/min")
    return outcomes


def overlap(outcomes: list[dict[str, Any]]) -> int:
    """The most operations that ran at one time."""
    edges = sorted([(o["started"], 1) for o in outcomes] + [(o["ended"], -1) for o in outcomes])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def uids(plane: ControlPlane, resource: str, namespace: str) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in plane.items(resource, namespace)}


def central_objects(fleet: Fleet, stack: str) -> dict[str, str]:
    namespace = f"cluster-{stack}"
    return {
        **uids(fleet.central, f"apiserviceexportrequests.{GROUP}", namespace),
        **uids(fleet.central, f"apiservicenamespaces.{GROUP}", namespace),
    }


def status(fleet: Fleet, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    done = fleet.fleet("status", "--json", "--project-dir", "tenant", *extra)
    assert done.returncode in (0, 2), done.stderr[-4000:]
    return done.returncode, json.loads(done.stdout)


def test_merged_tenant_files_are_selected_and_bound_sequentially_then_four_at_a_time(fleet: Fleet):
    first, second = TENANTS[:4], TENANTS[4:]
    base = add_tenants(fleet, first)
    assert select(fleet, base) == {"up": {"dev": first}, "retire": []}  # exactly the added files
    set_secrets(fleet, first)
    assert overlap(up(fleet, first, parallel=1)) == 1
    base = add_tenants(fleet, second)
    assert select(fleet, base) == {"up": {"dev": second}, "retire": []}  # exactly the added files
    set_secrets(fleet, TENANTS)
    assert overlap(up(fleet, second, parallel=4)) == 4
    assert sorted(r["clusterID"] for r in fleet.backend.bind_requests) == TENANTS
    for stack in TENANTS:
        assert sorted(central_objects(fleet, stack)) == sorted([*APIS, "apps"]), stack
    assert fleet.backend.errors == []


def test_the_fleet_view_lists_ten_healthy_stacks_with_clean_previews(fleet: Fleet):
    code, rows = status(fleet, "--check-drift")
    assert code == 0, rows
    assert [r["stack"] for r in rows] == TENANTS
    for row in rows:
        assert (row["cluster_id"], row["apis"], row["result"], row["preview"], row["healthy"]) == (
            row["stack"],
            APIS,
            "update succeeded",
            "clean",
            True,
        ), row
        assert row["last_update"]


def test_a_central_stack_change_selects_every_tenant_reading_it(fleet: Fleet):
    base = fleet.git("rev-parse", "HEAD")
    (fleet.repo / "Pulumi.dev.yaml").write_text("config:\n  klutch-central:environment: dev\n")
    fleet.git("commit", "-q", "-am", "the central stack changes")
    assert select(fleet, base) == {"up": {"dev": TENANTS}, "retire": []}


def test_a_removed_tenant_file_retires_only_that_stack_behind_the_workflow_s_checkout(fleet: Fleet, tmp_path: Path):
    others = {s: central_objects(fleet, s) for s in TENANTS if s != RETIRED}
    base = fleet.git("rev-parse", "HEAD")
    fleet.git("rm", "-q", "-f", f"tenant/Pulumi.{RETIRED}.yaml")  # -f: the checkout had set its secret
    fleet.git("commit", "-q", "-m", f"retire {RETIRED}")
    assert select(fleet, base) == {"up": {"dev": []}, "retire": [RETIRED]}
    # The workflow retires from a checkout of the commit that still has the file.
    checkout = tmp_path / "checkout"
    fleet.git("worktree", "add", "-q", "--detach", str(checkout), base)
    os.symlink(ROOT / ".venv", checkout / ".venv")
    done = succeeded(fleet.fleet("retire", RETIRED, cwd=checkout))
    assert f"klutch binding of cluster id '{RETIRED}' deleted from this stack" in done.stderr, done.stderr[-3000:]
    assert done.stdout.startswith(f"{RETIRED}: retire succeeded in ")
    assert central_objects(fleet, RETIRED) == {}  # its export requests and APIServiceNamespaces are gone
    assert fleet.central.exists("namespace", f"cluster-{RETIRED}")  # the backend has no unbind: it stays
    assert {s: central_objects(fleet, s) for s in others} == others  # the other nine: untouched, same uids
    again = fleet.fleet("retire", RETIRED, cwd=checkout)  # a rerun of the job finds nothing to do
    assert again.returncode == 0 and "already retired" in again.stdout
    code, rows = status(fleet)
    assert (code, [r["stack"] for r in rows]) == (0, [s for s in TENANTS if s != RETIRED])


def test_an_object_deleted_behind_pulumi_s_back_shows_as_drift(fleet: Fleet):
    fleet.central.kubectl("delete", f"apiservicenamespaces.{GROUP}", "apps", "-n", "cluster-t03")
    code, rows = status(fleet, "--check-drift")
    assert code == 2
    drifted = {r["stack"]: r["preview"] for r in rows if not r["healthy"]}
    assert drifted == {"t03": "1 to create"}, rows
