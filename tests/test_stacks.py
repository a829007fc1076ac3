"""Every committed stack file evaluates offline, with the environment's defaults it promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from klutch.config import central as central_config
from klutch.offline import render, stackfile
from tests import harness

# The shipped central stacks (git-tracked; a user's own stack files never enter the suite). The
# existing-cluster example Pulumi.kind.yaml is always evaluated, tracked yet or not.
STACKS = sorted({s for p, _, s in render.committed_stacks(harness.ROOT) if p == render.CENTRAL} | {"kind"})


def mode(name: str) -> str:
    doc = yaml.safe_load((harness.ROOT / f"Pulumi.{name}.yaml").read_text())["config"]
    return (doc.get("klutch-central:cluster") or {}).get("mode", "eks")


def test_the_shipped_stacks_are_dev_kind_and_prod():
    assert {"dev", "prod", "kind"} <= set(STACKS) <= set(render.CENTRAL.shipped)
    assert [mode(s) for s in ("dev", "kind", "prod")] == ["eks", "existing", "eks"]


@pytest.fixture(scope="module", params=STACKS)
def stack(request):
    return request.param, harness.run_stack_file(request.param)


def test_stack_evaluates_with_outputs(stack):
    name, ev = stack
    for output in ("clusterName", "clusterEndpoint", "clusterCaPem", "kubeconfig", "exportUrl"):
        assert output in ev.outputs, f"{name}: {output}"
    if mode(name) == "eks":
        assert "vpcId" in ev.outputs and ev.output("clusterName") == f"klutch-{name}"
    else:  # existing: no network; the name is the kubeconfig's context (the offline placeholder's)
        assert "vpcId" not in ev.outputs and not ev.by_prefix("aws:") and not ev.by_prefix("eks:")
        assert ev.output("clusterName") == stackfile.PLACEHOLDER_CONTEXT


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
def test_committed_stack_files_hold_no_plain_text_secret(name):
    ours = stackfile.namespace_config(harness.ROOT / f"Pulumi.{name}.yaml", central_config.NAMESPACE)
    assert stackfile.plain_text_secrets(ours, central_config.secret_paths) == []


def test_encrypted_values_written_by_pulumi_config_set_secret_are_fine(tmp_path: Path):
    """`pulumi config set --secret --path ...` writes `secure: v1:...` into the stack file: normal."""
    doc = yaml.safe_load((harness.ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["klutch-central:oidc"]["clientSecret"] = {"secure": "v1:AAAABBBBCCCC"}
    doc["config"]["klutch-central:dataServices"]["postgresql"]["serviceBroker"]["password"] = {"secure": "v1:DDDD"}
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(doc))
    ours = stackfile.namespace_config(path, central_config.NAMESPACE)
    assert stackfile.plain_text_secrets(stackfile._strip_secure(ours), central_config.secret_paths) == []
    config, secret_keys = stackfile.read(path, central_config.NAMESPACE, central_config.secret_paths)
    assert secret_keys == ["klutch-central:dataServices", "klutch-central:oidc"]
    assert "v1:" not in "".join(config.values())  # encrypted values are never read offline
    central_config.parse(
        {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("klutch-central:")},
        {k.split(":", 1)[1] for k in secret_keys},
        stack="dev",
    )


def test_a_plain_text_secret_in_a_stack_file_is_found(tmp_path: Path):
    doc = yaml.safe_load((harness.ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["klutch-central:oidc"]["clientSecret"] = "hunter2-in-plain-text"
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(doc))
    ours = stackfile.namespace_config(path, central_config.NAMESPACE)
    assert stackfile.plain_text_secrets(ours, central_config.secret_paths) == ["oidc.clientSecret"]


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
    unset = {k: v for k, v in harness.base_raw().items() if k != "klutchRelease"}  # the parser's own default
    cfg = central_config.parse(unset, set(harness.BASE_SECRET_KEYS), stack="x")
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
    cluster = yaml.safe_load((harness.ROOT / f"Pulumi.{name}.yaml").read_text())["config"]["klutch-central:cluster"]
    assert manifests.check_all(ev, cluster.get("kubernetesVersion", "1.33")) == []
