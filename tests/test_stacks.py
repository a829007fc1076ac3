"""Every committed stack file evaluates offline, with the environment's defaults it promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from klutch.config import central as central_config
from klutch.offline import stackfile
from tests import harness

STACKS = sorted(p.name.split(".")[1] for p in harness.ROOT.glob("Pulumi.*.yaml"))


def test_the_committed_stacks_are_dev_and_prod():
    assert STACKS == ["dev", "prod"]


@pytest.fixture(scope="module", params=STACKS)
def stack(request):
    return request.param, harness.run_stack_file(request.param)


def test_stack_evaluates_with_outputs(stack):
    name, ev = stack
    for output in ("vpcId", "clusterName", "clusterEndpoint", "clusterCaPem", "kubeconfig"):
        assert output in ev.outputs, f"{name}: {output}"
    assert ev.output("clusterName") == f"klutch-{name}"


def test_dev_stack_defaults():
    ev = harness.run_stack_file("dev")
    assert len(ev.by_type("aws:ec2/natGateway:NatGateway")) == 1
    assert ev.one("eks:index:Cluster").get("publicAccessCidrs") == ["0.0.0.0/0"]
    assert not any(r.protect for r in ev.resources)


def test_prod_stack_defaults():
    ev = harness.run_stack_file("prod")
    assert len(ev.by_type("aws:ec2/natGateway:NatGateway")) == 3
    eks = ev.one("eks:index:Cluster")
    assert "0.0.0.0/0" not in eks.get("publicAccessCidrs")
    assert eks.get("deletionProtection") is True and eks.protect is True


@pytest.mark.parametrize("name", STACKS)
def test_committed_stack_files_hold_no_secret_values(name):
    text = (harness.ROOT / f"Pulumi.{name}.yaml").read_text()
    doc = yaml.safe_load(text)["config"]
    assert "secure:" not in text
    for key in ("klutch-central:kubeconfig",):
        assert key not in doc
    assert "clientSecret" not in (doc.get("klutch-central:oidc") or {})
    for svc in (doc.get("klutch-central:dataServices") or {}).values():
        for endpoint in svc.values():
            assert "password" not in endpoint


def test_placeholders_fill_only_missing_secrets(tmp_path: Path):
    stack = tmp_path / "Pulumi.x.yaml"
    stack.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "klutch-central:oidc": {
                        "issuerUrl": "https://idp.example.com",
                        "clientSecret": {"secure": "v1:abc"},
                    },
                    "klutch-central:dataServices": {"mongodb": {"serviceBroker": {"url": "http://b", "username": "u"}}},
                }
            }
        )
    )
    config, secret_keys = stackfile.read(stack, "klutch-central", central_config.secret_paths)
    assert '"clientSecret": "placeholder-oidc-clientSecret"' in config["klutch-central:oidc"]  # encrypted: never read
    assert (
        '"password": "placeholder-dataServices-mongodb-serviceBroker-password"' in config["klutch-central:dataServices"]
    )
    assert secret_keys == ["klutch-central:dataServices", "klutch-central:oidc"]


@pytest.mark.parametrize("path", [f"Pulumi.{s}.yaml" for s in STACKS] + ["tenant/Pulumi.example.yaml"])
def test_stack_disables_the_default_kubernetes_provider(path):
    doc = yaml.safe_load((harness.ROOT / path).read_text())["config"]
    assert doc["pulumi:disable-default-providers"] == ["kubernetes"]


def test_project_config_declarations_match_the_parser_defaults():
    declared = yaml.safe_load((harness.ROOT / "Pulumi.yaml").read_text())["config"]
    assert set(declared) == {"environment", "klutchRelease", "crossplaneVersion"}
    cfg = central_config.parse({k: v for k, v in harness.base_raw().items()}, set(harness.BASE_SECRET_KEYS), stack="x")
    parsed = {
        "environment": cfg.environment,
        "klutchRelease": cfg.release.name,
        "crossplaneVersion": cfg.crossplane_version,
    }
    for key, decl in declared.items():
        assert "default" in decl and "description" in decl, key  # a declared key without default is required by the CLI
        assert decl["default"] == parsed[key], key


def test_every_manifest_of_every_committed_stack_is_valid(stack):
    from klutch.offline import manifests

    name, ev = stack
    objs = manifests.manifests(ev)
    assert len(objs) > 20
    version = yaml.safe_load((harness.ROOT / f"Pulumi.{name}.yaml").read_text())["config"]["klutch-central:cluster"][
        "kubernetesVersion"
    ]
    assert manifests.check_all(ev, version) == []
