"""Cluster layer: EKS inputs, node group, KMS, the explicit Kubernetes provider, existing mode."""

from __future__ import annotations

import base64
import json

import pytest

from klutch.central.cluster import ADMIN_POLICY_ARN, NODE_POLICIES
from klutch.offline.curated import PLACEHOLDER_CA_PEM, mock_kubeconfig
from tests import harness

EKS = "eks:index:Cluster"
NODES = "aws:eks/nodeGroup:NodeGroup"
ADMIN = "arn:aws:iam::123456789012:role/platform-admin"


@pytest.fixture(scope="module")
def ev():
    return harness.run({"cluster": {"adminPrincipalArns": [ADMIN], "publicAccessCidrs": ["203.0.113.0/24"]}})


def test_eks_control_plane_inputs(ev):
    eks = ev.one(EKS)
    assert eks.remote is True
    assert eks.get("name") == "klutch-test"
    assert eks.get("version") == "1.33"
    assert eks.get("authenticationMode") == "API"
    assert eks.get("createOidcProvider") is True
    assert eks.get("endpointPrivateAccess") is True
    assert eks.get("endpointPublicAccess") is True
    assert eks.get("publicAccessCidrs") == ["203.0.113.0/24"]
    assert eks.get("enabledClusterLogTypes") == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    assert eks.get("skipDefaultNodeGroup") is True
    assert eks.get("nodeAssociatePublicIpAddress") is False
    assert eks.get("deletionProtection") is False
    assert eks.get("vpcId") == "network-vpc-id"
    assert eks.get("privateSubnetIds") == [f"network-private-{i}-id" for i in range(3)]
    assert eks.get("publicSubnetIds") == [f"network-public-{i}-id" for i in range(3)]


def test_secrets_envelope_encryption_with_a_rotating_key(ev):
    key = ev.one("aws:kms/key:Key")
    assert key.get("enableKeyRotation") is True
    assert key.get("deletionWindowInDays") == 30
    assert ev.one(EKS).get("encryptionConfigKeyArn") == key.outputs["arn"]
    assert ev.one("aws:kms/alias:Alias").get("name") == "alias/klutch-test-secrets"


def test_admin_access_entries(ev):
    entries = ev.one(EKS).get("accessEntries")
    assert entries == {
        "admin-0": {
            "principalArn": ADMIN,
            "accessPolicies": {"cluster-admin": {"policyArn": ADMIN_POLICY_ARN, "accessScope": {"type": "cluster"}}},
        }
    }


def test_managed_node_group(ev):
    ng = ev.one(NODES)
    assert ng.get("clusterName") == "klutch-test"
    assert ng.get("instanceTypes") == ["t3a.xlarge"]
    assert ng.get("scalingConfig") == {"minSize": 3, "desiredSize": 3, "maxSize": 6}
    assert ng.get("subnetIds") == [f"network-private-{i}-id" for i in range(3)]
    assert ng.get("amiType") == "AL2023_x86_64_STANDARD"
    assert ng.get("nodeRoleArn") == ev.one("aws:iam/role:Role", "cluster-nodes").outputs["arn"]
    assert ng.ignore_changes == ["scalingConfig.desiredSize"]
    assert ng.custom_timeouts == {"create": "30m", "update": "60m", "delete": "30m"}
    template = ev.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert ng.get("launchTemplate") == {"id": template.id, "version": "1"}


def test_nodes_require_imdsv2_and_encrypted_disks(ev):
    template = ev.one("aws:ec2/launchTemplate:LaunchTemplate")
    assert template.get("metadataOptions") == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 2,
    }
    ebs = template.get("blockDeviceMappings")[0]["ebs"]
    assert ebs["encrypted"] == "true" and ebs["volumeType"] == "gp3" and ebs["volumeSize"] == 50


def test_node_role_policies(ev):
    role = ev.one("aws:iam/role:Role", "cluster-nodes")
    assert json.loads(role.get("assumeRolePolicy"))["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    attached = {a.get("policyArn") for a in ev.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert attached == set(NODE_POLICIES.values())


def test_node_group_waits_for_control_plane_and_policies(ev):
    ng = ev.one(NODES)
    assert ev.depends_on(ng, ev.one(EKS))
    for a in ev.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment"):
        assert ev.depends_on(ng, a)


def test_kubernetes_provider_is_built_from_the_cluster_and_waits_for_nodes(ev):
    provider = ev.one("pulumi:providers:kubernetes")
    assert provider.is_secret("kubeconfig")
    kubeconfig = json.loads(provider.get("kubeconfig"))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == ev.output("clusterEndpoint")
    assert ev.depends_on(provider, ev.one(NODES))
    assert provider.get("deleteUnreachable") == "false"


def test_every_kubernetes_resource_uses_the_explicit_provider(ev):
    provider = ev.one("pulumi:providers:kubernetes")
    k8s_resources = [r for r in ev.by_prefix("kubernetes:") if r.custom]
    assert len(k8s_resources) > 20
    for r in k8s_resources:
        assert r.provider_urn == provider.urn, f"{r.type} {r.name} uses {r.provider or 'the default provider'}"


def test_oidc_provider_for_irsa_is_created_and_exported(ev):
    assert ev.one(EKS).get("createOidcProvider") is True
    assert ev.output("oidcProviderArn").startswith("arn:aws:iam::123456789012:oidc-provider/oidc.eks.")


def test_cluster_outputs(ev):
    assert ev.output("clusterName") == "klutch-test"
    assert ev.output("clusterEndpoint").startswith("https://") and ev.output("clusterEndpoint").endswith(
        ".eks.amazonaws.com"
    )
    assert ev.output("clusterCaPem") == PLACEHOLDER_CA_PEM
    assert not ev.output_is_secret("clusterCaPem") and not ev.output_is_secret("clusterEndpoint")
    assert ev.output_is_secret("kubeconfig")


def test_prod_protects_the_cluster_and_key():
    ev = harness.run({"environment": "prod", "cluster": {"deletionProtection": True}})
    assert ev.one(EKS).protect is True
    assert ev.one(EKS).get("deletionProtection") is True
    assert ev.one("aws:kms/key:Key").protect is True


def test_dev_does_not_protect(ev):
    assert ev.one(EKS).protect is False and ev.one("aws:kms/key:Key").protect is False


def test_private_endpoint_only():
    ev = harness.run({"cluster": {"endpointPublicAccess": False}})
    eks = ev.one(EKS)
    assert eks.get("endpointPublicAccess") is False
    assert eks.get("publicAccessCidrs") is None


# ------------------------------------------------------------------ existing cluster
KIND = mock_kubeconfig("https://127.0.0.1:40123", "kind-klutch")


@pytest.fixture(scope="module")
def existing():
    raw = harness.merged(
        {"cluster": {"mode": "existing", "apiServerUrl": "https://klutch-api.example.com:6443"}, "kubeconfig": KIND},
        drop=("network",),
    )
    return harness.run(raw=raw, secret_keys=("dataServices", "oidc", "kubeconfig"))


def test_existing_mode_creates_no_aws_resources(existing):
    assert [r.type for r in existing.resources if r.type.startswith(("aws:", "eks:"))] == []
    assert "vpcId" not in existing.outputs


def test_existing_mode_provider_uses_the_given_kubeconfig(existing):
    provider = existing.one("pulumi:providers:kubernetes")
    assert provider.is_secret("kubeconfig")
    assert provider.get("kubeconfig") == KIND
    assert provider.dependencies == []


def test_existing_mode_outputs(existing):
    assert existing.output("clusterName") == "kind-klutch"
    assert not existing.output_is_secret("clusterName")
    assert "oidcProviderArn" not in existing.outputs
    assert existing.output("clusterEndpoint") == "https://klutch-api.example.com:6443"  # the override tenants reach
    assert existing.output("clusterCaPem") == PLACEHOLDER_CA_PEM
    assert existing.output_is_secret("kubeconfig")


def test_ca_pem_is_decoded_once_not_base64_of_base64(existing):
    pem = existing.output("clusterCaPem")
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert base64.b64encode(pem.encode()).decode() in KIND
