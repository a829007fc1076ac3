"""The render as users run it (from tenant/, the klutch-render script), and what its files say:
placeholders marked, provider-internal inputs left out, each object's dependencies, a tenant render
without central-only content; tenant stacks report every problem in one round."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from klutch.central import program
from klutch.offline import layout, projects, render

ROOT = Path(__file__).resolve().parent.parent


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = render.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def dev(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dev")
    assert render.main(["--project-dir", str(ROOT), "--stack", "dev", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tenant")
    assert render.main(["--project-dir", str(ROOT / "tenant"), "--stack", "example", "--out", str(out)]) == 0
    return out


# ------------------------------------------------------------------------------- running it
def test_renders_from_the_tenant_directory_wherever_the_package_is_installed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(projects, "ROOT", tmp_path / "site-packages")  # not the repository: found from the cwd
    monkeypatch.chdir(ROOT / "tenant")
    code, stdout, stderr = run(["--stack", "example", "--out", str(tmp_path / "x"), "--check"], capsys)
    assert code == 0, stderr
    assert "klutch-tenant/example: check passed" in stdout


def test_the_klutch_render_script_runs_from_the_tenant_directory(tmp_path):
    script = Path(sys.executable).parent / "klutch-render"
    if not script.exists():
        pytest.skip("the package's console script is not installed")
    done = subprocess.run(
        [str(script), "--stack", "example", "--out", str(tmp_path / "x")],
        cwd=ROOT / "tenant",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "x" / "summary.yaml").exists()


def test_help_shows_out_as_required(capsys):
    with pytest.raises(SystemExit):
        render.main(["--help"])
    usage = capsys.readouterr().out
    assert usage.startswith("usage: klutch-render (--stack STACK | --all) --out OUT [--project-dir DIR] [--check]\n")
    assert "klutch-render --list" in usage
    assert "output directory (required, except with --list)" in usage


def test_all_counts_advisories_in_its_last_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code, stdout, _ = run(["--all", "--check", "--out", str(tmp_path)], capsys)
    assert code == 0
    stacks = render.committed_stacks()
    advisories = sum(
        len(yaml.safe_load((tmp_path / p.name / s / "summary.yaml").read_text())["check"]["advisories"])
        for p, _, s in stacks
    )
    assert advisories >= 1  # dev's open API endpoint
    plural = "advisory" if advisories == 1 else "advisories"
    assert stdout.splitlines()[-1] == (
        f"{len(stacks)}/{len(stacks)} stacks checked without findings ({advisories} {plural})"
    )


def test_kind_example_stack_renders_and_passes_check(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code, stdout, stderr = run(["--stack", "kind", "--out", str(tmp_path), "--check"], capsys)
    assert code == 0, stderr
    assert "klutch-central/kind: check passed" in stdout
    assert not (tmp_path / "aws.yaml").exists()  # an existing cluster: no AWS resource
    outputs = yaml.safe_load((tmp_path / "outputs.yaml").read_text())
    # no backend.host: the backend is served on the load balancer's name with the stack's own CA
    assert "vpcId" not in outputs and outputs["backendHost"] == outputs["loadBalancerHostname"]
    assert "BEGIN CERTIFICATE" in outputs["tlsCaPem"]
    placeholders = layout.placeholder_outputs((tmp_path / "outputs.yaml").read_text())
    assert {"clusterEndpoint", "clusterName", "loadBalancerHostname"} <= set(placeholders)


# ------------------------------------------------------------------------------- what the files say
def test_outputs_the_offline_engine_made_up_are_marked_as_placeholders(dev):
    text = (dev / "outputs.yaml").read_text()
    marked = layout.placeholder_outputs(text)
    assert {
        "clusterEndpoint",
        "clusterCaPem",
        "loadBalancerHostname",
        "vpcId",
        "publicSubnetIds",
        "privateSubnetIds",
        "oidcProviderArn",
    } <= set(marked)
    outputs = yaml.safe_load(text)
    real = {"clusterName", "backendHost", "exportUrl", "klutchRelease", "kubeconfig", "bindingApis"}
    assert real <= set(outputs) and not real & set(marked)
    assert f"{layout.PLACEHOLDER_NOTE}\nvpcId: network-vpc-id\n" in text  # the comment line precedes its output


def test_tenant_outputs_from_the_bind_response_are_placeholders(tenant):
    marked = layout.placeholder_outputs((tenant / "outputs.yaml").read_text())
    assert {"centralNamespace", "namespaceMap"} <= set(marked)
    assert "konnectorImage" not in marked and "boundApis" not in marked


def test_provider_internal_inputs_are_left_out(dev):
    helm = sorted(dev.glob("*/helm/*.yaml"))
    assert helm
    for path in helm:
        assert "compat" not in yaml.safe_load(path.read_text())["inputs"], path


def test_each_object_file_says_what_it_waits_for(tmp_path, monkeypatch, capsys):
    original = program.main

    def patched() -> None:
        original()
        p = k8s.Provider("test-k8s", kubeconfig="{}")
        ns = k8s.core.v1.Namespace("apps", metadata={"name": "apps"}, opts=pulumi.ResourceOptions(provider=p))
        k8s.core.v1.ConfigMap(
            "settings",
            metadata={"name": "settings", "namespace": ns.metadata["name"]},
            data={"a": "b"},
            opts=pulumi.ResourceOptions(provider=p, depends_on=[p]),
        )

    monkeypatch.setattr(program, "main", patched)
    monkeypatch.chdir(ROOT)
    code, _, stderr = run(["--stack", "dev", "--out", str(tmp_path)], capsys)
    assert code == 0, stderr
    lines = (tmp_path / "stack/kubernetes/apps/configmap-settings.yaml").read_text().splitlines()
    assert lines[:2] == [
        "# kubernetes:core/v1:ConfigMap 'settings' — layer stack, provider test-k8s",
        "# waits for: kubernetes:core/v1:Namespace/apps, pulumi:providers:kubernetes/test-k8s",
    ]
    assert not any(
        line.startswith("# waits for")
        for line in (tmp_path / "stack/kubernetes/_cluster/namespace-apps.yaml").read_text().splitlines()
    )


def test_a_tenant_render_has_no_aws_file_and_no_central_only_keys(tenant):
    assert not (tenant / "aws.yaml").exists()
    summary = yaml.safe_load((tenant / "summary.yaml").read_text())
    assert "kubernetesVersion" not in summary
    assert summary["environment"] == "dev"  # the central stack's (its policy level)
    assert "aws" not in summary["totals"] and all("aws" not in n for n in summary["layers"].values())
    assert "helm" not in summary["totals"]  # a category no resource falls in is left out


def test_a_central_render_keeps_every_category(dev):
    summary = yaml.safe_load((dev / "summary.yaml").read_text())
    assert list(summary["totals"]) == list(render.CATEGORIES)
    assert "kubernetesVersion" in summary and (dev / "aws.yaml").exists()


# ------------------------------------------------------------------------------- tenant: one round
def tenant_project(tmp_path: Path, config: str) -> Path:
    project = tmp_path / "tenant"
    project.mkdir()
    shutil.copy(ROOT / "tenant" / "Pulumi.yaml", project)
    (project / "Pulumi.t.yaml").write_text(
        "config:\n  pulumi:disable-default-providers:\n    - kubernetes\n"
        "  klutch-tenant:centralStack: organization/klutch-central/dev\n" + config
    )
    return project


def test_a_tenant_stack_reports_its_config_and_central_problems_together(tmp_path, capsys):
    project = tenant_project(
        tmp_path,
        "  klutch-tenant:clusterId: ACME\n"
        "  klutch-tenant:oidc:\n    tokenUrl: https://idp.example.com/token\n    clientId: c\n    scpoe: openid\n"
        "  klutch-tenant:apis:\n    - redisinstances.anynines.com\n    - backups\n",
    )
    code, _, stderr = run(["--project-dir", str(project), "--stack", "t", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    lines = stderr.splitlines()
    assert lines[0] == "error: invalid configuration for stack 't' (3 problems):"
    assert lines[1].startswith("  - klutch-tenant:clusterId = 'ACME': must be a DNS label")
    assert lines[2].startswith("  - klutch-tenant:oidc.scpoe = '[secret]': unknown key; did you mean 'scope'?")
    assert lines[3].startswith(
        "  - klutch-tenant:apis[0] = 'redisinstances.anynines.com': is not exported by central stack "
        "'organization/klutch-central/dev'; valid: postgresqlinstances.anynines.com"
    )
    assert len(lines) == 4


def test_a_bad_central_stack_name_is_reported_at_once(tmp_path, capsys):
    project = tenant_project(tmp_path, "  klutch-tenant:clusterId: acme\n")
    text = (project / "Pulumi.t.yaml").read_text().replace("organization/klutch-central/dev", "klutch-central-dev")
    (project / "Pulumi.t.yaml").write_text(text)
    code, _, stderr = run(["--project-dir", str(project), "--stack", "t", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert (
        "  - klutch-tenant:centralStack = 'klutch-central-dev': must be the central stack's fully qualified" in stderr
    )
    assert "Traceback" not in stderr


def test_a_tenant_release_other_than_the_central_stack_s_fails_the_render(tmp_path, capsys):
    project = tenant_project(
        tmp_path,
        "  klutch-tenant:clusterId: acme\n  klutch-tenant:klutchRelease: v1.0.0\n"
        "  klutch-tenant:oidc:\n    tokenUrl: https://idp.acme.io/token\n    clientId: c\n",
    )
    code, _, stderr = run(["--project-dir", str(project), "--stack", "t", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert stderr.splitlines()[1] == (
        "  - klutch-tenant:klutchRelease = 'v1.0.0': differs from the klutchRelease output 'v1.5.0' of central "
        "stack 'organization/klutch-central/dev'; use the central stack's release: "
        "`pulumi config set klutchRelease v1.5.0`"
    )


def test_the_shipped_dev_stack_renders_with_its_reserved_example_hosts_warned_about_first(dev):
    warnings = yaml.safe_load((dev / "summary.yaml").read_text())["warnings"]
    assert [w.split(" names the reserved example host")[0] for w in warnings[:4]] == [
        "klutch-central:backend.host = 'klutch.dev.example.com'",
        "klutch-central:oidc.issuerUrl = 'https://keycloak.dev.example.com/realms/klutch'",
        "klutch-central:dataServices.postgresql.serviceBroker.url = "
        "'http://postgresql-service-broker.dev.example.com:3000'",
        "klutch-central:dataServices.postgresql.backupManager.url = "
        "'http://postgresql-backup-manager.dev.example.com:3000'",
    ]
    assert not any("reserved example host" in w for w in warnings[4:])
