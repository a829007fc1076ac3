"""The README's quick start for an existing cluster, run as written against a local cluster.

The block after `<!-- quickstart:existing -->` runs verbatim with bash in the checkout, as the README
says, with the inputs it reads from the environment. Two things an air-gapped operator does before
it are done here too: the copy of the example stack exists already with a `mirrors` block (charts
from the local chart repository), and PULUMI_HOME/HOME are private to the test. The load balancer
double gives `localhost`, where a stand-in for the backend behind it answers `/export` over TLS
(kwok's pods run no process).
"""

from __future__ import annotations

import re
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from klutch.sandbox.cli import ROOT, offline_env
from klutch.sandbox.controlplane import ControlPlane, self_signed
from klutch.sandbox.servers import ChartRepository
from tests.e2e.helpers import central_cluster, succeeded

pytestmark = pytest.mark.e2e
STACK = "my-kind"
MARKER = "<!-- quickstart:existing -->"


def quickstart_block() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", readme, re.S)
    assert match, f"README.md has no bash block after {MARKER}"
    return match.group(1)


class _Export(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/export" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backend_behind_the_load_balancer(tmp_path: Path) -> Iterator[None]:
    """HTTPS on 127.0.0.1:443 answering /export: what the backend would answer through the gateway."""
    self_signed(tmp_path, "backend", "localhost")
    server = ThreadingHTTPServer(("127.0.0.1", 443), _Export)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "backend.crt", tmp_path / "backend.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def cluster(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[ControlPlane]:
    with central_cluster("readme", tmp_path_factory, bin_dir, lb_hostname="localhost", cert_manager=True) as plane:
        yield plane


def test_the_readme_quick_start_for_an_existing_cluster_works_as_written(
    cluster: ControlPlane,
    chart_repo: ChartRepository,
    plugin_dirs: list[Path],
    backend_behind_the_load_balancer: None,
    tmp_path: Path,
):
    stack_file = ROOT / f"Pulumi.{STACK}.yaml"
    assert not stack_file.exists(), f"{stack_file} exists: a user's stack file is in the way"
    example = yaml.safe_load((ROOT / "Pulumi.kind.yaml").read_text())
    example["config"]["klutch-central:mirrors"] = {
        "charts": dict.fromkeys(("crossplane", "cert-manager", "envoy-gateway"), chart_repo.url),
        "kubeBindCrds": [f"{chart_repo.url}/kube-bind-{example['config']['klutch-central:klutchRelease']}.yaml"],
    }
    env = offline_env(plugin_dirs, tmp_path / "pulumi-home", tmp_path / "unused")
    del env["PULUMI_BACKEND_URL"]  # the block logs in itself
    env.update(
        {
            "HOME": str(tmp_path),  # `pulumi login --local` keeps its state under ~/.pulumi
            "KUBECONFIG": str(cluster.kubeconfig_path),
            "OIDC_ISSUER_URL": "https://keycloak.e2e.test/realms/klutch",
            "OIDC_CLIENT_SECRET": "oidc-secret-e2e",
        }
    )
    try:
        stack_file.write_text(yaml.safe_dump(example, sort_keys=False))
        done = subprocess.run(
            ["bash", "-c", quickstart_block()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
        )
        written = stack_file.read_text()
    finally:
        stack_file.unlink(missing_ok=True)
    out = succeeded(done).stdout
    # klutch-status: every row ok, among them the provider and the backend's certificate from the stack's CA
    assert re.search(r"ok\s+│ Provider\s+│ provider-anynines\s+│ Installed=True Healthy=True", out), out[-4000:]
    assert re.search(r"ok\s+│ CA\s+│ bind/klutch-backend-ca", out), out[-4000:]
    assert re.search(r"^healthy: all \d+ checks pass$", out, re.M), out[-4000:]
    assert out.rstrip().splitlines()[-1] == "200"  # curl of the exportUrl output
    assert "Traceback" not in done.stderr
    assert cluster.exists("deployment", "anynines-backend", "bind")
    assert written.count("secure: v1:") == 2  # kubeconfig and oidc.clientSecret, encrypted in the stack file
    assert "BEGIN CERTIFICATE" not in written and "oidc-secret-e2e" not in written
