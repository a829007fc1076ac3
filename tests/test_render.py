"""The offline render: committed stacks render and pass --check; broken objects, policy violations,
leaked secrets and bad config fail with every finding listed; secrets never reach the files."""

from __future__ import annotations

import json
import shutil
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from klutch import catalog
from klutch.central import program, security
from klutch.config import central as central_config
from klutch.offline import layout, projects, render, stackfile, stacks

ROOT = Path(__file__).resolve().parent.parent
STACKS = render.committed_stacks()
RELEASE = catalog.RELEASES["v1.0.0"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = render.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def files(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted(out.rglob("*")) if p.is_file()}


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def placeholders(project: render.Project, directory: Path, stack: str) -> list[str]:
    """The values the offline tools put in place of the stack's secrets (what must never be written)."""
    cfg = project.config()
    config, _ = stackfile.read(directory / f"Pulumi.{stack}.yaml", cfg.NAMESPACE, cfg.secret_paths)
    raw = {k.split(":", 1)[1]: stacks.decode(v) for k, v in config.items() if k.startswith(f"{cfg.NAMESPACE}:")}
    return [n for _, path in cfg.secret_paths(raw) for n in stacks.needles(stackfile.placeholder(path))]


def add_to_program(monkeypatch, extra: Callable[[k8s.Provider], None]) -> None:
    """The central program plus `extra(provider)` declared after it (same stack, same engine)."""
    original = program.main

    def patched() -> None:
        original()
        extra(k8s.Provider("test-k8s", kubeconfig="{}"))

    monkeypatch.setattr(program, "main", patched)


def with_provider(p: k8s.Provider, **kw: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(provider=p, **kw)


# ------------------------------------------------------------------------------- committed stacks
def test_committed_stacks_are_found():
    assert {("klutch-central", ".", "dev"), ("klutch-central", ".", "prod")} <= {
        (p.name, p.directory, s) for p, _, s in STACKS
    }


@pytest.mark.parametrize(("project", "directory", "stack"), STACKS, ids=[f"{p.name}/{s}" for p, _, s in STACKS])
def test_every_committed_stack_renders_and_passes_check(project, directory, stack, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    argv = ["--stack", stack, "--out", str(out), "--check"]
    if project.directory != ".":
        argv += ["--project-dir", project.directory]
    code, stdout, stderr = run(argv, capsys)
    assert code == 0, stderr
    assert f"{project.name}/{stack}: check passed" in stdout
    summary = load_yaml(out / "summary.yaml")
    assert (summary["project"], summary["stack"], summary["check"]["errors"]) == (project.name, stack, [])
    # secrets are never written: no placeholder the offline tools filled in appears anywhere
    needles = placeholders(project, directory, stack)
    assert needles  # every stack has secrets (OIDC client secret, passwords, kubeconfigs)
    needles.append("mock-token")  # the credential in every mocked kubeconfig
    for rel, text in files(out).items():
        for needle in needles:
            assert needle not in text, f"{needle!r} written to {rel}"


def test_dev_render_contents(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code, _, stderr = run(["--stack", "dev", "--out", str(tmp_path), "--check"], capsys)
    assert code == 0
    summary = load_yaml(tmp_path / "summary.yaml")
    assert (summary["environment"], summary["kubernetesVersion"]) == ("dev", "1.33")
    assert (
        summary["layers"]["network"]["aws"] == 24
    )  # VPC, IGW, 3 AZ x (2 subnets, 2 RTAs, RT, route), 1 EIP + NAT, public RT + route
    assert summary["layers"]["cluster"] == {"kubernetes": 0, "helm": 0, "components": 0, "aws": 9, "other": 1}
    # dev's open API endpoint is advisory there: listed, not failing
    assert summary["check"]["advisories"] == [
        "[advisory] eks-public-endpoint-restricted: eks:index:Cluster cluster-eks: the public API endpoint is open to "
        "0.0.0.0/0; restrict cluster.publicAccessCidrs to the operators' networks"
    ]
    assert "warning: [advisory] eks-public-endpoint-restricted" in stderr
    aws = load_yaml(tmp_path / "aws.yaml")
    eks = next(r for r in aws["cluster"] if r["type"] == "eks:index:Cluster")
    assert eks["inputs"]["encryptionConfigKeyArn"].startswith("arn:aws:kms:")
    assert eks["inputs"]["publicAccessCidrs"] == ["0.0.0.0/0"] and "tags" not in eks["inputs"]
    ng = next(r for r in aws["cluster"] if r["type"] == "aws:eks/nodeGroup:NodeGroup")
    assert ng["inputs"]["scalingConfig"] == {"minSize": 3, "maxSize": 6, "desiredSize": 3}  # whole numbers stay ints
    outputs = load_yaml(tmp_path / "outputs.yaml")
    assert outputs["kubeconfig"] == stacks.REDACTED
    assert outputs["clusterName"] == "klutch-dev" and outputs["clusterCaPem"].startswith("-----BEGIN CERTIFICATE-----")
    index = load_yaml(tmp_path / "resources.yaml")
    assert {"layer": "cluster", "type": "pulumi:providers:kubernetes", "name": "cluster-k8s"} in index


def test_prod_is_strict(tmp_path, monkeypatch, capsys):
    """Prod's open endpoint would be mandatory: the committed prod stack restricts it, so none is reported."""
    monkeypatch.chdir(ROOT)
    assert run(["--stack", "prod", "--out", str(tmp_path), "--check"], capsys)[0] == 0
    summary = load_yaml(tmp_path / "summary.yaml")
    assert summary["environment"] == "prod" and summary["check"] == {"errors": [], "advisories": []}


def test_all_renders_every_committed_stack(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code, stdout, _ = run(["--all", "--out", str(tmp_path)], capsys)
    assert code == 0
    assert f"{len(STACKS)}/{len(STACKS)} stacks rendered" in stdout
    for project, _, stack in STACKS:
        assert (tmp_path / project.name / stack / "summary.yaml").exists()


def test_list_prints_the_committed_stacks_as_json(capsys):
    code, stdout, _ = run(["--list"], capsys)
    assert code == 0
    listed = json.loads(stdout)
    assert {"project": "klutch-central", "dir": ".", "stack": "dev"} in listed
    assert len(listed) == len(STACKS)


# ------------------------------------------------------------------------------- what is written
def test_objects_helm_releases_and_components_are_written_per_layer_with_secrets_redacted(
    tmp_path, monkeypatch, capsys
):
    class Extras(pulumi.ComponentResource):
        def __init__(self, p: k8s.Provider) -> None:
            super().__init__("klutch:test:Extras", "extras")
            child = with_provider(p, parent=self)
            k8s.core.v1.Secret(
                "creds",
                metadata={"name": "creds", "namespace": "bind"},
                string_data={"password": "not-a-pulumi-secret-4411"},
                opts=child,
            )
            k8s.core.v1.ConfigMap(
                "settings",
                metadata={"name": "settings", "namespace": "bind"},
                data={"token": pulumi.Output.secret("s3cr3t-value-9d1e"), "mode": "plain"},
                opts=child,
            )
            k8s.apps.v1.Deployment(
                "konnector",
                metadata={"name": "konnector", "namespace": "bind"},
                spec={
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "k"}},
                    "template": {
                        "metadata": {"labels": {"app": "k"}},
                        "spec": {
                            "securityContext": security.pod_security_context(security.BACKEND_UID),
                            "containers": [
                                {
                                    "name": "k",
                                    "image": RELEASE.konnector_image,
                                    "securityContext": security.container_security_context(),
                                }
                            ],
                        },
                    },
                },
                opts=child,
            )
            chart = catalog.CHARTS["cert-manager"]
            k8s.helm.v3.Release(
                "cert-manager",
                chart=chart.chart,
                version=chart.version,
                namespace=chart.namespace,
                repository_opts={"repo": chart.repo},
                values={"crds": {"enabled": True}},
                timeout=chart.timeout_seconds,
                opts=with_provider(p, parent=self, protect=True),
            )
            k8s.yaml.v2.ConfigGroup("kube-bind-crds", files=list(RELEASE.kube_bind_crd_urls), opts=child)
            self.register_outputs({})

    add_to_program(monkeypatch, Extras)
    monkeypatch.chdir(ROOT)
    code, _, stderr = run(["--stack", "dev", "--out", str(tmp_path), "--check"], capsys)
    assert code == 0, stderr
    written = files(tmp_path)
    assert load_yaml(tmp_path / "summary.yaml")["layers"]["extras"] == {
        "kubernetes": 3,
        "helm": 1,
        "components": 1,
        "aws": 0,
        "other": 0,
    }

    secret_text = written["extras/kubernetes/bind/secret-creds.yaml"]
    assert secret_text.startswith("# kubernetes:core/v1:Secret 'creds' — layer extras, provider test-k8s\n")
    assert load_yaml(tmp_path / "extras/kubernetes/bind/secret-creds.yaml")["stringData"] == {
        "password": stacks.REDACTED
    }
    # Pulumi marks the whole map secret when one value is: every value masked, the keys kept
    assert load_yaml(tmp_path / "extras/kubernetes/bind/configmap-settings.yaml")["data"] == {
        "token": stacks.REDACTED,
        "mode": stacks.REDACTED,
    }
    assert load_yaml(tmp_path / "extras/kubernetes/bind/deployment-konnector.yaml")["spec"]["replicas"] == 2

    helm_text = written["extras/helm/cert-manager.yaml"]
    assert "# options: protect" in helm_text
    helm = load_yaml(tmp_path / "extras/helm/cert-manager.yaml")
    assert (helm["chart"], helm["repository"], helm["version"], helm["namespace"], helm["values"]) == (
        "cert-manager",
        "https://charts.jetstack.io",
        catalog.CHARTS["cert-manager"].version,
        "cert-manager",
        {"crds": {"enabled": True}},
    )
    assert helm["inputs"]["timeout"] == 600

    component = load_yaml(tmp_path / "extras/components/kube-bind-crds.yaml")
    assert component == {
        "type": "kubernetes:yaml/v2:ConfigGroup",
        "inputs": {"files": list(RELEASE.kube_bind_crd_urls)},
    }
    for text in written.values():
        assert "not-a-pulumi-secret-4411" not in text and "s3cr3t-value-9d1e" not in text


def test_broken_objects_policy_violations_and_leaks_fail_with_every_finding(tmp_path, monkeypatch, capsys):
    def broken(p: k8s.Provider) -> None:
        k8s.core.v1.ConfigMap(
            "bad-name", metadata={"name": "Bad_Name", "namespace": "bind"}, data={"a": "b"}, opts=with_provider(p)
        )
        k8s.core.v1.ConfigMap("no-provider", metadata={"name": "no-provider", "namespace": "bind"}, data={"a": "b"})
        k8s.core.v1.Service(
            "exposed",
            metadata={"name": "exposed", "namespace": "bind"},
            spec={"type": "LoadBalancer", "ports": [{"port": 443}], "selector": {"app": "x"}},
            opts=with_provider(p),
        )
        k8s.apps.v1.Deployment(
            "web",
            metadata={"name": "web", "namespace": "bind"},
            spec={
                "selector": {"matchLabels": {"app": "w"}},
                "template": {
                    "metadata": {"labels": {"app": "w"}},
                    "spec": {"containers": [{"name": "w", "image": "nginx:latest"}]},
                },
            },
            opts=with_provider(p),
        )
        # a program bug: the OIDC client secret copied into a plain input
        leaked = central_config.load().oidc.client_secret.reveal()
        k8s.core.v1.ConfigMap(
            "leak", metadata={"name": "leak", "namespace": "bind"}, data={"secret": leaked}, opts=with_provider(p)
        )

    add_to_program(monkeypatch, broken)
    monkeypatch.chdir(ROOT)
    code, _, stderr = run(["--stack", "prod", "--out", str(tmp_path), "--check"], capsys)
    assert code == 1
    errors = load_yaml(tmp_path / "summary.yaml")["check"]["errors"]
    expected = [
        "secret oidc.clientSecret appears in plain text in stack/kubernetes/bind/configmap-leak.yaml (masked)",
        "schema: ConfigMap bind/Bad_Name: metadata.name 'Bad_Name' is not a valid DNS-1123 name",
        "[mandatory] pinned-versions: Deployment bind/web: spec.template.spec.containers.0 (w): "
        "image 'nginx:latest' uses the moving tag 'latest'",
        "[mandatory] no-loadbalancer-services: Service bind/exposed: "
        "is a LoadBalancer Service outside the controller's namespace",
        "[mandatory] explicit-kubernetes-provider: ConfigMap bind/no-provider: "
        "uses the default Kubernetes provider (none given)",
    ]
    for want in expected:
        assert any(e.startswith(want) or want in e for e in errors), (want, errors)
        assert want.split(": ", 1)[-1][:40] in stderr
    assert f"error: klutch-central/prod: {len(errors)} findings:" in stderr
    leaked = stackfile.placeholder("oidc.clientSecret")
    assert all(leaked not in text for text in files(tmp_path).values())
    assert load_yaml(tmp_path / "stack/kubernetes/bind/configmap-leak.yaml")["data"] == {"secret": layout.LEAK_MASK}


def test_without_check_only_leaks_fail(tmp_path, monkeypatch, capsys):
    add_to_program(
        monkeypatch,
        lambda p: k8s.core.v1.ConfigMap("bad", metadata={"name": "Bad_Name"}, data={"a": "b"}, opts=with_provider(p)),
    )
    monkeypatch.chdir(ROOT)
    code, stdout, _ = run(["--stack", "dev", "--out", str(tmp_path)], capsys)
    assert code == 0 and "rendered" in stdout
    assert "check" not in load_yaml(tmp_path / "summary.yaml")


# ------------------------------------------------------------------------------- errors
def test_bad_config_exits_with_the_config_error_message(tmp_path, capsys):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project)
    text = (ROOT / "Pulumi.dev.yaml").read_text().replace("natGateways: single", "natGateways: double")
    (project / "Pulumi.dev.yaml").write_text(text)
    code, _, stderr = run(
        ["--project-dir", str(project), "--stack", "dev", "--out", str(tmp_path / "out"), "--check"], capsys
    )
    assert code == 1
    assert stderr == (
        "error: invalid configuration for stack 'dev' (1 problem):\n"
        "  - klutch-central:network.natGateways = 'double': must be one of 'single', 'one-per-az'\n"
    )
    assert not (tmp_path / "out").exists()


def test_unknown_stack_and_project(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code, _, stderr = run(["--stack", "nope", "--out", str(tmp_path / "o")], capsys)
    have = ", ".join(projects.stack_files(ROOT))
    assert code == 1 and "no stack file" in stderr and f"stack files of klutch-central: {have}" in stderr
    assert "dev" in have and "prod" in have
    (tmp_path / "Pulumi.yaml").write_text("name: something-else\nruntime: python\n")
    code, _, stderr = run(["--project-dir", str(tmp_path), "--stack", "dev", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "unknown project 'something-else'; known: klutch-central, klutch-tenant" in stderr


def test_refuses_to_overwrite_a_directory_that_is_not_a_render(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    (tmp_path / "notes.txt").write_text("keep me")
    code, _, stderr = run(["--stack", "dev", "--out", str(tmp_path)], capsys)
    assert code == 1 and "is not empty and holds no earlier render" in stderr
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------- tenant stacks
@pytest.fixture
def fake_tenant(tmp_path, monkeypatch):
    """A stand-in tenant project: reads the central stack through a StackReference."""
    module = types.ModuleType("fake_tenant")
    module.NAMESPACE = "klutch-tenant"
    module.secret_paths = lambda raw: [("clientSecret", "clientSecret")]

    def main() -> None:
        cfg = pulumi.Config("klutch-tenant")
        central = pulumi.StackReference("central", stack_name=cfg.require("centralStack"))
        pulumi.export("centralEndpoint", central.get_output("clusterEndpoint"))
        pulumi.export("centralKubeconfig", central.get_output("kubeconfig"))
        pulumi.export("clientSecret", cfg.require_secret("clientSecret"))

    module.main = main
    monkeypatch.setitem(sys.modules, "fake_tenant", module)
    monkeypatch.setattr(
        projects,
        "PROJECTS",
        (projects.CENTRAL, projects.Project("klutch-tenant", "tenant", "fake_tenant", "fake_tenant")),
    )
    directory = tmp_path / "tenant"
    directory.mkdir()
    (directory / "Pulumi.yaml").write_text("name: klutch-tenant\nruntime: python\n")
    return directory


def test_tenant_stack_reads_the_rendered_central_stacks_outputs(fake_tenant, tmp_path, capsys):
    (fake_tenant / "Pulumi.example.yaml").write_text(
        "config:\n  klutch-tenant:centralStack: organization/klutch-central/dev\n"
    )
    out = tmp_path / "out"
    code, _, stderr = run(
        ["--project-dir", str(fake_tenant), "--stack", "example", "--out", str(out), "--check"], capsys
    )
    assert code == 0, stderr
    assert load_yaml(out / "outputs.yaml") == {
        "centralEndpoint": "https://CLUSTER-EKS.gr7.eu-central-1.eks.amazonaws.com",
        "centralKubeconfig": stacks.REDACTED,  # secret in the central stack, secret through the reference
        "clientSecret": stacks.REDACTED,
    }
    summary = load_yaml(out / "summary.yaml")
    assert (summary["project"], summary["environment"]) == ("klutch-tenant", "dev")


def test_tenant_stack_naming_an_uncommitted_central_stack_fails(fake_tenant, tmp_path, capsys):
    (fake_tenant / "Pulumi.example.yaml").write_text(
        "config:\n  klutch-tenant:centralStack: organization/klutch-central/qa\n"
    )
    code, _, stderr = run(
        ["--project-dir", str(fake_tenant), "--stack", "example", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 1
    assert "klutch-tenant:centralStack = 'organization/klutch-central/qa': no central stack file " in stderr
    assert "Pulumi.qa.yaml" in stderr
    (fake_tenant / "Pulumi.example.yaml").write_text("config:\n  klutch-tenant:centralStack: organization/other/dev\n")
    code, _, stderr = run(
        ["--project-dir", str(fake_tenant), "--stack", "example", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 1 and "expected '<organization>/klutch-central/<stack>'" in stderr


def test_rendered_objects_have_a_stable_conventional_key_order(tmp_path):
    assert render.main(["--stack", "dev", "--out", str(tmp_path / "a")]) == 0
    assert render.main(["--stack", "dev", "--out", str(tmp_path / "b")]) == 0
    first = next((tmp_path / "a").rglob("deployment-anynines-backend.yaml")).read_text()
    assert first == next((tmp_path / "b").rglob("deployment-anynines-backend.yaml")).read_text()
    body = [line for line in first.splitlines() if not line.startswith("#")]
    assert [line.split(":")[0] for line in body if not line.startswith(" ")] == [
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    ]
    metadata = body[body.index("metadata:") + 1 : body.index("spec:")]
    assert [
        line.strip().split(":")[0] for line in metadata if line.startswith("  ") and not line.startswith("   ")
    ] == ["annotations", "labels", "name", "namespace"]
