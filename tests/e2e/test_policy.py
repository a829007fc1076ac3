"""The policy pack (`policy/`) under the real CLI: `pulumi preview --policy-pack` of the central stack.

The built Python language host (sdk v3.79.0) cannot start a pack from its directory, so the CLI gets the
pack in its executable form, `e2e/toolchain/policy-analyzer` (the same `policy/__main__.py`, started as a
binary analyzer; docs/e2e.md). The CLI configures the pack with the stack's config as a current Pulumi
CLI does (ConfigureStack), which is where the pack reads the stack's `environment` from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from klutch import catalog
from klutch.sandbox.cli import ROOT, Pulumi
from klutch.sandbox.controlplane import ControlPlane
from klutch.sandbox.servers import ChartRepository
from tests.e2e.helpers import central_cluster, central_project
from tests.e2e.stacks import configure, existing_cluster_config, transformed_program

pytestmark = pytest.mark.e2e
RELEASE = catalog.DEFAULT_RELEASE
ANALYZER = ROOT / "e2e" / "toolchain" / "policy-analyzer"
OBSERVABILITY_CHARTS = ("kube-prometheus-stack", "kube-state-metrics")  # what prod installs


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[ControlPlane]:
    with central_cluster("policy", tmp_path_factory, bin_dir) as plane:
        yield plane


def stack(name: str, plane: ControlPlane, repo: ChartRepository, workspace, plugin_dirs, **changes: object) -> Pulumi:
    pulumi = central_project(workspace, plugin_dirs, name)
    pulumi.env["KLUTCH_POLICY_PACK_DIR"] = str(ROOT / "policy")
    configure(pulumi, plane, {**existing_cluster_config(plane, repo, RELEASE, "envoy-gateway"), **changes})
    return pulumi


def preview_with_pack(pulumi: Pulumi) -> tuple[int, str]:
    done = pulumi.preview("--policy-pack", str(ANALYZER), check=False)
    return done.returncode, done.stdout + done.stderr


def test_a_pinned_config_passes_the_pack(plane, chart_repo, workspace, plugin_dirs):
    # The operator's CRD mirror is a local file: nothing fetched over plain HTTP.
    crds = chart_repo.root / f"kube-bind-{RELEASE}.yaml"
    mirrors = {"charts": dict.fromkeys(("crossplane", "cert-manager", "envoy-gateway"), chart_repo.url)}
    pulumi = stack(
        "policy-pinned", plane, chart_repo, workspace, plugin_dirs, mirrors={**mirrors, "kubeBindCrds": [str(crds)]}
    )
    code, out = preview_with_pack(pulumi)
    assert code == 0, out[-4000:]
    assert "Policies:\n    ✅ klutch@" in out, out[-4000:]
    assert "[mandatory]" not in out and "[advisory]" not in out


def test_a_prod_config_that_breaks_a_mandatory_rule_fails_preview_naming_it(plane, chart_repo, workspace, plugin_dirs):
    # The e2e's own CRD mirror is plain HTTP: `pinned-versions` refuses a manifest not fetched over https.
    # Every chart, prod's kube-prometheus-stack too, comes from the local repository: the pack's refusal is the
    # preview's only failure (a chart that cannot be fetched would end the preview before the pack is heard).
    mirrors = existing_cluster_config(plane, chart_repo, RELEASE, "envoy-gateway")["mirrors"]
    mirrors["charts"].update(dict.fromkeys(OBSERVABILITY_CHARTS, chart_repo.url))
    pulumi = stack(
        "policy-prod", plane, chart_repo, workspace, plugin_dirs, environment="prod", protect=True, mirrors=mirrors
    )
    code, out = preview_with_pack(pulumi)
    assert code != 0
    assert "❌ klutch@" in out and "errored" not in out, out[-4000:]
    # Under the real engine the pack sees the kube-bind CRDs, each recording the file it came from.
    crd = f"kube-bind-crds:apiservicebindings.{catalog.RELEASES[RELEASE].kube_bind_group}"
    assert (
        f"- [mandatory]  pinned-versions  (kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition: {crd})" in out
    )
    assert f"its file: manifest URL '{chart_repo.url}/kube-bind-{RELEASE}.yaml' is not https" in out
    # `up` previews first: the same violation stops it before anything exists.
    done = pulumi.run("up", "--yes", "--policy-pack", str(ANALYZER), check=False)
    assert done.returncode != 0 and "pinned-versions" in done.stdout + done.stderr
    assert [r["type"] for r in pulumi.resources() if r["type"] != "pulumi:pulumi:Stack"] == []
    assert not plane.exists("namespace", "crossplane-system")


# A user's own change: the backend's securityContext dropped.
WITHOUT_SECURITY_CONTEXT = """
def transform(args):
    if args.type_ != "kubernetes:apps/v1:Deployment":
        return None
    pod = args.props["spec"]["template"]["spec"]
    pod.pop("securityContext", None)
    for container in pod["containers"]:
        container.pop("securityContext", None)
    return pulumi.ResourceTransformationResult(args.props, args.opts)
"""


def test_a_change_that_drops_the_backends_security_context_fails_preview(plane, chart_repo, workspace, plugin_dirs):
    # dev: the workload rules are mandatory in every environment
    pulumi = stack("policy-hardening", plane, chart_repo, workspace, plugin_dirs)
    transformed_program(pulumi, WITHOUT_SECURITY_CONTEXT)
    code, out = preview_with_pack(pulumi)
    assert code != 0
    release = catalog.RELEASES[RELEASE]
    assert "- [mandatory]  workload-security-context  (kubernetes:apps/v1:Deployment: kube-bind-backend)" in out, out[
        -4000:
    ]
    assert f"containers.0 ({release.backend_name}): runAsNonRoot is not true" in out
    assert [r["type"] for r in pulumi.resources() if r["type"] != "pulumi:pulumi:Stack"] == []
