"""Day 2 on a protected central stack with a data service, under the real engine, on one cluster: `pulumi up`
killed with SIGKILL (the whole process group) twice and recovered with `klutch-recover` as
docs/operations.md says; the stack of an earlier release taken over; a broker password and the OIDC client
secret rotated, each with one `up`. The tests run in this order and share the stack."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from klutch import catalog
from klutch.central import edge, kubebind
from klutch.sandbox.cli import Pulumi
from klutch.sandbox.controlplane import ControlPlane
from tests.e2e.helpers import Lab, succeeded
from tests.e2e.stacks import assert_rendered_objects_exist, configure, existing_cluster_config

pytestmark = pytest.mark.e2e
RELEASE = catalog.RELEASES[catalog.DEFAULT_RELEASE]
CROSSPLANE_NS = catalog.CHARTS["crossplane"].namespace
BACKEND_NS = RELEASE.backend_namespace
PROVIDER_CONFIGS = "providerconfigs.dataservices.anynines.com"
BROKER_SECRET = catalog.SERVICE_BROKER.secret_name("postgresql")
KILL_WAIT = 300.0


@pytest.fixture(scope="module")
def stack(lab: Lab) -> Iterator[tuple[Pulumi, ControlPlane]]:
    with lab.cluster("day2") as plane:
        pulumi = lab.central_project("day2")
        config = existing_cluster_config(
            plane, lab.chart_repo, RELEASE.name, "envoy-gateway", services=("postgresql",), protect=True
        )
        config["backend"] = {}  # no host: the backend's certificate comes from the stack's own CA
        configure(pulumi, plane, config)
        yield pulumi, plane


def process_groups(root: int) -> set[int]:
    """The process groups of `root` and its descendants: the CLI's, and those of the plugins it starts (each
    plugin gets a group of its own, which a kill of the CLI's group alone would leave running)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    groups = set()
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    return groups - {os.getpgid(0)}


def up_killed_when(pulumi: Pulumi, ready: Callable[[], bool]) -> None:
    """`pulumi up` SIGKILLed as soon as `ready()` holds, as when its machine goes away: the process groups of
    the CLI and of every plugin it started."""
    command = ["pulumi", "up", "--yes", "--skip-preview", "--stack", pulumi.stack, "--non-interactive"]
    log = (pulumi.cwd / "killed-up.log").open("w")
    up = subprocess.Popen(
        command, cwd=pulumi.cwd, env=pulumi.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + KILL_WAIT
    while not ready() and up.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert up.poll() is None, "the up ended before the kill point: " + killed_up_log(pulumi)
    for group in process_groups(up.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    up.wait(timeout=30)
    log.close()


def checkpoint(pulumi: Pulumi) -> Path:
    """The stack's checkpoint on the file backend."""
    root = Path(urlparse(pulumi.env["PULUMI_BACKEND_URL"]).path)
    return root / ".pulumi" / "stacks" / "klutch-central" / f"{pulumi.stack}.json"


def saved_state(pulumi: Pulumi) -> dict:
    """The stack's state as the file backend has it saved right now (written whole, then renamed), read
    without the CLI, which a kill can leave unable to read it (`klutch-recover` repairs that)."""
    try:
        saved = json.loads(checkpoint(pulumi).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return {"deployment": saved.get("checkpoint", {}).get("latest") or {}}


def pending_provider_configs(state: dict) -> dict[str, str]:
    """Resource name -> object name of each ProviderConfig the state has a pending create of."""
    return {
        op["resource"]["urn"].rsplit("::", 1)[-1]: op["resource"]["inputs"]["metadata"]["name"]
        for op in state.get("deployment", {}).get("pending_operations") or []
        if op["resource"]["type"].endswith(":ProviderConfig")
    }


def killed_up_log(pulumi: Pulumi) -> str:
    return (pulumi.cwd / "killed-up.log").read_text()


def with_killed_up(report: str, pulumi: Pulumi) -> str:
    """A recovery report with the end of the killed up's output: what the engine did up to the kill."""
    return f"{report}\n--- the killed up:\n{killed_up_log(pulumi)[-4000:]}"


def recover(pulumi: Pulumi) -> str:
    """The documented recovery: `.venv/bin/klutch-recover --stack <stack>` in the project directory."""
    done = subprocess.run(
        [".venv/bin/klutch-recover", "--stack", pulumi.stack],
        cwd=pulumi.cwd,
        env=pulumi.env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return succeeded(done).stdout


def converges(pulumi: Pulumi, plane: ControlPlane, out: Path) -> None:
    """The next `up` converges: no pending operations, a clean preview, every rendered object there."""
    pulumi.up()
    assert not pulumi.state()["deployment"].get("pending_operations")
    pulumi.preview("--expect-no-changes")
    assert_rendered_objects_exist(plane, pulumi, out)


def helm_records(plane: ControlPlane, release: str) -> list[dict]:
    path = f"/api/v1/namespaces/{CROSSPLANE_NS}/secrets?labelSelector=owner%3Dhelm%2Cname%3D{release}"
    return plane.api("GET", path)["items"]


def test_an_up_killed_in_the_first_helm_release_is_recovered(stack, tmp_path_factory):
    pulumi, plane = stack
    up_killed_when(pulumi, lambda: bool(helm_records(plane, "crossplane")))
    assert saved_state(pulumi)["deployment"].get("pending_operations")
    report = recover(pulumi)
    assert re.search(r"reinstall +kubernetes:helm.sh/v3:Release crossplane: ", report), with_killed_up(report, pulumi)
    assert "lock: stale, its holder is gone" in report and f"run `pulumi up --stack {pulumi.stack}`" in report
    converges(pulumi, plane, tmp_path_factory.mktemp("day2-helm"))
    [record] = [r for r in helm_records(plane, "crossplane") if r["metadata"]["labels"]["status"] == "deployed"]
    assert record["metadata"]["labels"]["version"] == "1"  # one release, installed over the chart's objects


def test_an_up_killed_among_provider_configs_is_recovered(stack, tmp_path_factory):
    pulumi, plane = stack
    for kind in ("serviceBroker", "backupManager"):  # a second data service
        for key, value in (("url", f"http://127.0.0.1:9/mongodb/{kind}"), ("username", "admin"), ("password", "pw")):
            key_path = f"klutch-central:dataServices.mongodb.{kind}.{key}"
            pulumi.config(key_path, value, secret=key == "password", path=True)
    up_killed_when(pulumi, lambda: bool(pending_provider_configs(saved_state(pulumi))))
    pending_configs = pending_provider_configs(saved_state(pulumi))
    assert pending_configs, "the kill came after every ProviderConfig was recorded"
    metadata = checkpoint(pulumi).with_name(checkpoint(pulumi).name + ".attrs")
    metadata.write_text("")  # as a kill leaves it between truncating and rewriting it
    unreadable = pulumi.run("stack", "export", check=False)
    assert unreadable.returncode != 0 and "failed to load checkpoint: EOF" in unreadable.stderr, unreadable
    report = recover(pulumi)
    assert f"checkpoint: {metadata} was cut off by the kill: removed" in report, with_killed_up(report, pulumi)
    for resource, name in pending_configs.items():  # imported when it made it to the cluster, else cleared
        action = "import" if plane.exists(PROVIDER_CONFIGS, name) else "clear"
        line = rf"{action} +kubernetes:dataservices.anynines.com/v1:ProviderConfig {resource}: "
        assert re.search(line, report), with_killed_up(report, pulumi)
    converges(pulumi, plane, tmp_path_factory.mktemp("day2-pc"))
    assert len(plane.items(PROVIDER_CONFIGS)) == 4


def test_a_stack_of_an_earlier_release_is_taken_over_by_one_provider_update(stack):
    pulumi, plane = stack
    # the state as the previous release recorded it: the provider without enableSecretMutable, the CA's
    # key and certificate without a replacement trigger
    state = pulumi.state()
    resources = state["deployment"]["resources"]
    [provider] = [r for r in resources if r["type"] == "pulumi:providers:kubernetes"]
    assert provider["inputs"].pop("enableSecretMutable") == "true"
    provider.get("outputs", {}).pop("enableSecretMutable", None)
    ca = [r for r in resources if r["type"].startswith("tls:")]
    assert [r.pop("replacementTrigger") for r in ca] == [0, 0]  # the first generation, recorded
    pulumi.run("stack", "import", input=json.dumps(state))
    assert changes(pulumi) == {"update": [provider["urn"]]}
    pulumi.up()
    pulumi.preview("--expect-no-changes")
    recorded = [r.get("replacementTrigger") for r in pulumi.resources() if r["type"].startswith("tls:")]
    assert recorded == [0, 0]  # taken over: the next generation replaces the CA


def test_a_broker_password_is_rotated_in_place(stack):
    pulumi, plane = stack
    secret, checksum = plane.get("secret", BROKER_SECRET, CROSSPLANE_NS), backend_checksum(plane)
    pulumi.config("klutch-central:dataServices.postgresql.serviceBroker.password", "rotated-pw", secret=True, path=True)
    planned = changes(pulumi)
    assert list(planned) == ["update"] and len(planned["update"]) == 1, planned  # the Secret
    pulumi.up()
    rotated = plane.get("secret", BROKER_SECRET, CROSSPLANE_NS)
    assert rotated["metadata"]["uid"] == secret["metadata"]["uid"]
    assert base64.b64decode(rotated["data"]["password"]).decode() == "rotated-pw"
    assert backend_checksum(plane) == checksum  # not the backend's secret
    pulumi.preview("--expect-no-changes")


def test_the_oidc_client_secret_is_rotated_in_place_and_the_backend_rolls(stack):
    pulumi, plane = stack
    secret, checksum = plane.get("secret", kubebind.OIDC_SECRET, BACKEND_NS), backend_checksum(plane)
    pulumi.config("klutch-central:oidc.clientSecret", "rotated-client-secret", secret=True, path=True)
    planned = changes(pulumi)
    assert list(planned) == ["update"] and len(planned["update"]) == 2, planned  # the Secret and the Deployment
    pulumi.up()
    rotated = plane.get("secret", kubebind.OIDC_SECRET, BACKEND_NS)
    assert rotated["metadata"]["uid"] == secret["metadata"]["uid"]
    assert base64.b64decode(rotated["data"]["oidc-issuer-client-secret"]).decode() == "rotated-client-secret"
    assert backend_checksum(plane) != checksum
    pulumi.preview("--expect-no-changes")


def changes(pulumi: Pulumi) -> dict[str, list[str]]:
    """The URNs `pulumi preview` plans, by operation (unchanged and read ones, and the stack, left out)."""
    steps = json.loads(pulumi.preview("--json").stdout).get("steps", [])
    planned: dict[str, list[str]] = {}
    for step in steps:
        if step["op"] not in ("same", "read") and "pulumi:pulumi:Stack" not in step["urn"]:
            planned.setdefault(step["op"], []).append(step["urn"])
    return planned


def backend_checksum(plane: ControlPlane) -> str:
    deployment = plane.get("deployment", RELEASE.backend_name, BACKEND_NS)
    return deployment["spec"]["template"]["metadata"]["annotations"][kubebind.CHECKSUM_ANNOTATION]


def test_a_new_ca_generation_renews_the_ca_in_place(stack):
    pulumi, plane = stack
    secret, ca_pem = plane.get("secret", edge.CA_SECRET, BACKEND_NS), pulumi.outputs()["tlsCaPem"]
    pulumi.config("klutch-central:rotation.backendCa", "1", path=True)
    planned = {op: {urn.split("::")[2].rsplit("$", 1)[-1] for urn in urns} for op, urns in changes(pulumi).items()}
    tls = {"tls:index/privateKey:PrivateKey", "tls:index/selfSignedCert:SelfSignedCert"}
    assert planned.pop("update") == {"kubernetes:core/v1:Secret", "kubernetes:cert-manager.io/v1:Certificate"}
    assert planned and all(types == tls for types in planned.values()), planned  # only the CA is replaced
    pulumi.up()
    renewed = plane.get("secret", edge.CA_SECRET, BACKEND_NS)
    assert renewed["metadata"]["uid"] == secret["metadata"]["uid"]
    new_pem = pulumi.outputs()["tlsCaPem"]
    assert new_pem != ca_pem and base64.b64decode(renewed["data"]["tls.crt"]).decode() == new_pem
    certificate = plane.get("certificates.cert-manager.io", edge.TLS_SECRET, BACKEND_NS)
    assert certificate["spec"]["subject"] == {"organizationalUnits": ["backend CA generation 1"]}
    pulumi.preview("--expect-no-changes")
