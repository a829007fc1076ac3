"""The policy pack: every rule through the real pulumi_policy policy objects, without the policy server."""

from __future__ import annotations

import dataclasses
import importlib
import json
import runpy
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy.policy import _PolicyAnalyzerServicer as Servicer
from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

from klutch import catalog
from klutch.central import security
from klutch.policy import model, pack, rules

ROOT = Path(__file__).resolve().parent.parent
BACKEND_IMAGE = catalog.RELEASES["v1.0.0"].backend().image
K8S_PROVIDER = "cluster-k8s"


# ------------------------------------------------------------------------------- helpers
def _urn(type_: str, name: str) -> str:
    return f"urn:pulumi:prod::klutch-central::{type_}::{name}"


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def _provider(name: str | None) -> PolicyProviderResource | None:
    if name is None:
        return None
    return PolicyProviderResource("pulumi:providers:kubernetes", {}, _urn("pulumi:providers:kubernetes", name), name)


def policy(name: str, environment: str = "prod") -> Any:
    return {p.name: p for p in pack.policies(environment)}[name]


def check_resource(
    name: str, type_: str, props: dict[str, Any], *, provider: str | None = K8S_PROVIDER, resource_name: str = "res"
) -> list[str]:
    """Violations a ResourceValidationPolicy reports for one resource (props through the engine's proxy)."""
    found: list[str] = []
    args = ResourceValidationArgs(
        type_, unknown_checking_proxy(props), _urn(type_, resource_name), resource_name, _opts(), _provider(provider)
    )
    policy(name).validate(args, lambda message, urn=None: found.append(message))
    return found


def stack_resource(type_: str, name: str, props: dict[str, Any]) -> PolicyResource:
    return PolicyResource(
        type_,
        unknown_checking_proxy(props),
        _urn(type_, name),
        name,
        _opts(),
        _provider(K8S_PROVIDER if type_.startswith("kubernetes:") else None),
        None,
        [],
        {},
    )


def check_stack(name: str, resources: list[PolicyResource]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    policy(name).validate(StackValidationArgs(resources), lambda message, urn=None: found.append((message, urn)))
    return found


def k8s(kind: str, name: str, namespace: str | None = None, api_version: str = "v1", **body: Any) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def k8s_type(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"] if "/" in obj["apiVersion"] else f"core/{obj['apiVersion']}"
    return f"kubernetes:{api}:{obj['kind']}"


def deployment(
    image: str, *, sa: str = "anynines-backend", ns: str = "bind", init_image: str | None = None
) -> dict[str, Any]:
    pod: dict[str, Any] = {"serviceAccountName": sa, "containers": [{"name": "app", "image": image}]}
    if init_image:
        pod["initContainers"] = [{"name": "init", "image": init_image}]
    return k8s(
        "Deployment",
        "anynines-backend",
        ns,
        "apps/v1",
        spec={
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": pod},
        },
    )


# ------------------------------------------------------------------------------- the pack
def test_rules_module_imports_without_starting_the_policy_server(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("PolicyPack() must only be called by policy/__main__.py")

    monkeypatch.setattr(pulumi_policy, "PolicyPack", refuse)
    importlib.reload(rules)
    importlib.reload(pack)
    assert len(pack.policies("prod")) == len(rules.RULES) == 13


@pytest.mark.parametrize(
    ("environment", "endpoint_level"),
    [("prod", "mandatory"), ("dev", "advisory"), ("staging", "advisory"), (None, "advisory")],
)
def test_main_builds_the_pack_with_the_stack_environments_levels(monkeypatch, environment, endpoint_level):
    built: dict[str, Any] = {}
    monkeypatch.setattr(Servicer, "ConfigureStack", Servicer.ConfigureStack)  # restored after the test
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kw: built.update(kw))
    config = {"klutch-central:environment": environment} if environment else {}
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps(config))
    monkeypatch.setenv("PULUMI_PROJECT", "klutch-central")
    runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    levels = {p.name: p.enforcement_level for p in built["policies"]}
    assert built["name"] == "klutch"
    assert levels.pop("eks-public-endpoint-restricted") == EnforcementLevel(endpoint_level)
    assert set(levels.values()) == {EnforcementLevel.MANDATORY}
    assert {type(p).__name__ for p in built["policies"]} == {"ResourceValidationPolicy", "StackValidationPolicy"}


def configure_stack(policies: list[Any], project: str, config: dict[str, str]) -> None:
    """What the CLI does right after starting the pack: ConfigureStack with the stack's config."""
    servicer = Servicer("klutch", "0.0.1", policies, EnforcementLevel.MANDATORY)
    request = analyzer_pb2.AnalyzerStackConfigureRequest(project=project, stack="s", config=config)
    servicer.ConfigureStack(request, None)


@pytest.mark.parametrize(
    ("config", "endpoint_level"),
    [
        ({"klutch-central:environment": "prod"}, "mandatory"),
        ({"klutch-central:environment": "staging", "klutch-central:protect": "true"}, "advisory"),
        ({"klutch-central:protect": "true"}, "advisory"),  # unset: dev
        ({"other:environment": "prod"}, "advisory"),  # another project's key
        ({}, "mandatory"),  # no config sent (older CLIs): PULUMI_CONFIG's levels stay
    ],
)
def test_the_environment_follows_the_stack_config_the_cli_sends(monkeypatch, config, endpoint_level):
    monkeypatch.setattr(Servicer, "ConfigureStack", Servicer.ConfigureStack)
    policies = pack.policies("prod")
    pack.follow_stack_config(policies)
    configure_stack(policies, "klutch-central", config)
    levels = {p.name: p.enforcement_level for p in policies}
    assert levels.pop("eks-public-endpoint-restricted") == EnforcementLevel(endpoint_level)
    assert set(levels.values()) == {EnforcementLevel.MANDATORY}


def test_policy_pack_files():
    import yaml

    manifest = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python" and manifest["version"]
    # the pack's virtualenv is the project's: the klutch package, whose dependencies include pulumi-policy
    assert manifest["runtime"]["options"]["virtualenv"] == "../.venv"
    assert (ROOT / "policy" / "requirements.txt").read_text().split()[-2:] == ["-e", ".."]
    assert '"pulumi-policy==1.21.0"' in (ROOT / "pyproject.toml").read_text()


def test_unset_environment_is_dev_and_an_unknown_one_strict():
    assert [rules.environment(v) for v in (None, "dev", "staging", "prod", "qa")] == [
        "dev",
        "dev",
        "staging",
        "prod",
        "prod",
    ]


# ------------------------------------------------------------------------------- EKS endpoint
EKS = "eks:index:Cluster"


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}, []),
        ({"endpointPublicAccess": False}, []),
        ({"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24", "0.0.0.0/0"]}, ["open to 0.0.0.0/0"]),
        ({"publicAccessCidrs": ["::/0"]}, ["open to ::/0"]),  # endpointPublicAccess defaults to true
        ({"endpointPublicAccess": True}, ["publicAccessCidrs is empty"]),
        ({"endpointPublicAccess": True, "publicAccessCidrs": UNKNOWN_ARRAY_VALUE}, []),  # preview: cannot know
    ],
)
def test_eks_public_endpoint(props, expected):
    found = check_resource("eks-public-endpoint-restricted", EKS, props)
    assert len(found) == len(expected)
    for message, want in zip(found, expected, strict=True):
        assert want in message


def test_eks_public_endpoint_on_the_plain_aws_cluster():
    bad = {"vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]}}
    assert check_resource("eks-public-endpoint-restricted", "aws:eks/cluster:Cluster", bad)
    assert not check_resource(
        "eks-public-endpoint-restricted", "aws:eks/cluster:Cluster", {"vpcConfig": {"endpointPublicAccess": False}}
    )


# ------------------------------------------------------------------------------- encryption
def test_eks_secrets_encryption():
    assert (
        check_resource("eks-secrets-encryption", EKS, {"encryptionConfigKeyArn": "arn:aws:kms:eu-central-1:1:key/x"})
        == []
    )
    # during preview the new key's ARN is unknown: it will be set
    assert check_resource("eks-secrets-encryption", EKS, {"encryptionConfigKeyArn": UNKNOWN_STRING_VALUE}) == []
    found = check_resource("eks-secrets-encryption", EKS, {"name": "c"})
    assert len(found) == 1 and "encryptionConfigKeyArn" in found[0]
    plain = "aws:eks/cluster:Cluster"
    assert (
        check_resource(
            "eks-secrets-encryption", plain, {"encryptionConfig": {"resources": ["secrets"], "provider": {}}}
        )
        == []
    )
    assert check_resource("eks-secrets-encryption", plain, {"encryptionConfig": {"resources": []}})
    assert check_resource("eks-secrets-encryption", "aws:s3/bucket:Bucket", {}) == []


# ------------------------------------------------------------------------------- node groups
def node_stack(
    http_tokens: str = "required", map_public: bool = False, template: bool = True, nic_public: bool = False
) -> list[PolicyResource]:
    lt = stack_resource(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "nodes",
        {
            "metadataOptions": {"httpTokens": http_tokens},
            **({"networkInterfaces": [{"associatePublicIpAddress": "true"}]} if nic_public else {}),
        },
    )
    subnets = [
        stack_resource("aws:ec2/subnet:Subnet", f"private-{i}", {"mapPublicIpOnLaunch": map_public and i == 1})
        for i in range(3)
    ]
    ng = stack_resource(
        "aws:eks/nodeGroup:NodeGroup",
        "nodes",
        {
            "subnetIds": [f"subnet-{i}" for i in range(3)],
            **({"launchTemplate": {"id": "lt-1", "version": "1"}} if template else {}),
        },
    )
    ng.property_dependencies = {"subnetIds": subnets, **({"launchTemplate": [lt]} if template else {})}
    cluster = stack_resource(EKS, "eks", {"skipDefaultNodeGroup": True, "nodeAssociatePublicIpAddress": False})
    return [cluster, lt, *subnets, ng]


def test_node_group_imdsv2():
    assert check_stack("eks-nodes-imdsv2", node_stack()) == []
    [(message, urn)] = check_stack("eks-nodes-imdsv2", node_stack(http_tokens="optional"))
    assert "httpTokens is 'optional'" in message and urn == _urn("aws:ec2/launchTemplate:LaunchTemplate", "nodes")
    [(message, _)] = check_stack("eks-nodes-imdsv2", node_stack(template=False))
    assert "no launch template" in message


def test_eks_managed_nodes_only():
    assert (
        check_resource(
            "eks-managed-nodes-only", EKS, {"skipDefaultNodeGroup": True, "nodeAssociatePublicIpAddress": False}
        )
        == []
    )
    [message] = check_resource(
        "eks-managed-nodes-only", EKS, {"name": "c"}
    )  # pulumi_eks defaults to a default node group
    assert "default node group is on" in message
    [message] = check_resource(
        "eks-managed-nodes-only", EKS, {"skipDefaultNodeGroup": True, "nodeAssociatePublicIpAddress": True}
    )
    assert "nodeAssociatePublicIpAddress is true" in message


def test_node_group_private():
    assert check_stack("eks-nodes-private", node_stack()) == []
    [(message, urn)] = check_stack("eks-nodes-private", node_stack(map_public=True))
    assert "mapPublicIpOnLaunch true" in message and urn == _urn("aws:ec2/subnet:Subnet", "private-1")
    [(message, _)] = check_stack("eks-nodes-private", node_stack(nic_public=True))
    assert "associatePublicIpAddress is true" in message


def test_node_group_subnets_outside_the_stack_cannot_be_verified():
    ng = stack_resource(
        "aws:eks/nodeGroup:NodeGroup", "nodes", {"subnetIds": ["subnet-123"], "launchTemplate": {"id": "x"}}
    )
    [(message, _)] = check_stack("eks-nodes-private", [ng])
    assert "not part of this stack" in message


# ------------------------------------------------------------------------------- pinning
@pytest.mark.parametrize(
    ("image", "problem"),
    [
        (BACKEND_IMAGE, None),
        ("registry.example.com:5000/team/app:1.2.3", None),
        ("nginx@sha256:" + "a" * 64, None),
        ("nginx", "has no tag"),
        ("nginx:latest", "'latest'"),
        ("registry.example.com:5000/team/app", "has no tag"),
        ("nginx@md5:abc", "malformed digest"),
    ],
)
def test_pinned_container_images(image, problem):
    found = check_resource("pinned-versions", "kubernetes:apps/v1:Deployment", deployment(image))
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and problem in found[0] and "spec.template.spec.containers.0 (app)" in found[0]


def test_pinned_init_containers_and_cronjobs():
    found = check_resource(
        "pinned-versions", "kubernetes:apps/v1:Deployment", deployment(BACKEND_IMAGE, init_image="busybox")
    )
    assert len(found) == 1 and "initContainers.0 (init)" in found[0]
    cron = k8s(
        "CronJob",
        "c",
        "bind",
        "batch/v1",
        spec={
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "alpine:latest"}]}}}},
        },
    )
    assert len(check_resource("pinned-versions", "kubernetes:batch/v1:CronJob", cron)) == 1


def test_pinned_helm_charts():
    ok = {
        "chart": "cert-manager",
        "version": "v1.19.6",
        "repositoryOpts": {"repo": "https://charts.jetstack.io"},
        "values": {"image": {"tag": "v1.19.6"}},
    }
    release = "kubernetes:helm.sh/v3:Release"
    assert check_resource("pinned-versions", release, ok) == []
    assert "no exact version" in check_resource("pinned-versions", release, {**ok, "version": None})[0]
    assert "no exact version" in check_resource("pinned-versions", release, {**ok, "version": "^1.19"})[0]
    assert (
        "'latest'"
        in check_resource("pinned-versions", release, {**ok, "values": {"controller": {"image": {"tag": "latest"}}}})[0]
    )
    assert (
        "has no tag" in check_resource("pinned-versions", release, {**ok, "values": {"sidecar": {"image": "envoy"}}})[0]
    )


def test_pinned_crossplane_packages():
    provider = k8s(
        "Provider",
        "provider-anynines",
        api_version="pkg.crossplane.io/v1",
        spec={"package": catalog.RELEASES["v1.0.0"].provider_package},
    )
    t = "kubernetes:pkg.crossplane.io/v1:Provider"
    assert check_resource("pinned-versions", t, provider) == []
    provider["spec"]["package"] = "xpkg.upbound.io/crossplane-contrib/function-patch-and-transform"
    assert "spec.package" in check_resource("pinned-versions", t, provider)[0]


def test_pinned_remote_manifests():
    t = "kubernetes:yaml/v2:ConfigFile"
    assert check_resource("pinned-versions", t, {"file": catalog.RELEASES["v1.0.0"].kube_bind_crd_urls[0]}) == []
    assert check_resource("pinned-versions", t, {"file": "https://raw.githubusercontent.com/o/r/main/crds.yaml"})
    assert check_resource("pinned-versions", t, {"file": "https://example.com/releases/latest/download/crds.yaml"})
    assert check_resource("pinned-versions", t, {"file": "http://example.com/v1.2.3/crds.yaml"}) == [
        "manifest URL 'http://example.com/v1.2.3/crds.yaml' is not https"
    ]


def test_a_crd_is_checked_by_the_files_it_came_from():
    # Under the real engine the policy pack sees the CRDs a ConfigGroup registers, never the group's `files`.
    t = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"

    def crd(annotations: dict[str, str] | None) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "apiservicebindings.kube-bind.io", "annotations": annotations},
        }

    pinned = json.dumps([catalog.RELEASES["v1.5.0"].kube_bind_crd_urls[0], "/srv/mirror/kube-bind.yaml"])
    assert check_resource("pinned-versions", t, crd({catalog.CRD_SOURCE_ANNOTATION: pinned})) == []
    assert check_resource("pinned-versions", t, crd(None)) == []  # a CRD the program did not fetch
    plain = json.dumps(["http://mirror.internal/v1.5.0/kube-bind.yaml"])
    assert check_resource("pinned-versions", t, crd({catalog.CRD_SOURCE_ANNOTATION: plain})) == [
        "its file: manifest URL 'http://mirror.internal/v1.5.0/kube-bind.yaml' is not https"
    ]
    assert check_resource("pinned-versions", t, crd({catalog.CRD_SOURCE_ANNOTATION: "not json"})) == []


# ------------------------------------------------------------------------------- TLS
GW = "gateway.networking.k8s.io/v1"


def gateway(https: bool = True, cert: bool = True) -> PolicyResource:
    listeners = [{"name": "http", "protocol": "HTTP", "port": 80}]
    if https:
        listeners.append(
            {
                "name": "https",
                "protocol": "HTTPS",
                "port": 443,
                "hostname": "klutch.example.com",
                **({"tls": {"certificateRefs": [{"name": "backend-tls"}]}} if cert else {}),
            }
        )
    return stack_resource(
        f"kubernetes:{GW}:Gateway",
        "gw",
        k8s("Gateway", "klutch", "bind", GW, spec={"gatewayClassName": "envoy", "listeners": listeners}),
    )


def route(name: str, section: str | None, redirect: bool = False, gateway_name: str = "klutch") -> PolicyResource:
    ref = {"name": gateway_name, **({"sectionName": section} if section else {})}
    rule = (
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
        if redirect
        else {"backendRefs": [{"name": "anynines-backend", "port": 443}]}
    )
    return stack_resource(
        f"kubernetes:{GW}:HTTPRoute",
        name,
        k8s("HTTPRoute", name, "bind", GW, spec={"parentRefs": [ref], "rules": [rule]}),
    )


def test_tls_gateway_routes_pass_when_on_https_or_redirecting():
    assert (
        check_stack(
            "tls-on-exposed-routes", [gateway(), route("backend", "https"), route("redirect", "http", redirect=True)]
        )
        == []
    )


def test_tls_route_on_the_plain_http_listener_fails():
    found = check_stack("tls-on-exposed-routes", [gateway(), route("backend", "http")])
    assert [(m.split(":")[0], u) for m, u in found] == [
        ("HTTPRoute bind/backend", _urn(f"kubernetes:{GW}:HTTPRoute", "backend"))
    ]
    assert "plain-HTTP listener 'http'" in found[0][0]


def test_tls_route_without_section_attaches_to_every_listener():
    found = check_stack("tls-on-exposed-routes", [gateway(), route("backend", None)])
    assert len(found) == 1 and "listener 'http'" in found[0][0]


def test_tls_gateway_needs_an_https_listener_with_a_certificate():
    assert [m for m, _ in check_stack("tls-on-exposed-routes", [gateway(https=False)])] == [
        "Gateway bind/klutch: no HTTPS listener"
    ]
    assert "no tls.certificateRefs" in check_stack("tls-on-exposed-routes", [gateway(cert=False)])[0][0]


def test_tls_route_to_an_unknown_gateway_or_listener():
    found = check_stack(
        "tls-on-exposed-routes", [gateway(), route("a", "https", gateway_name="other"), route("b", "nope")]
    )
    assert "bind/other is not in this stack" in found[0][0]
    assert "'nope' names no listener" in found[1][0]


def ingress(tls_hosts: list[str] | None, hosts: tuple[str, ...] = ("klutch.example.com",)) -> PolicyResource:
    spec: dict[str, Any] = {"ingressClassName": "nginx", "rules": [{"host": h} for h in hosts]}
    if tls_hosts is not None:
        spec["tls"] = [{"hosts": tls_hosts, "secretName": "backend-tls"}]
    return stack_resource(
        "kubernetes:networking.k8s.io/v1:Ingress",
        "ing",
        k8s("Ingress", "anynines-backend", "bind", "networking.k8s.io/v1", spec=spec),
    )


def test_tls_ingress():
    assert check_stack("tls-on-exposed-routes", [ingress(["klutch.example.com"])]) == []
    assert check_stack("tls-on-exposed-routes", [ingress(["*.example.com"])]) == []
    assert "no spec.tls" in check_stack("tls-on-exposed-routes", [ingress(None)])[0][0]
    found = check_stack(
        "tls-on-exposed-routes", [ingress(["klutch.example.com"], ("klutch.example.com", "other.example.org"))]
    )
    assert "['other.example.org'] are not covered" in found[0][0]


# ------------------------------------------------------------------------------- load balancers
def service(ns: str, type_: str) -> dict[str, Any]:
    return k8s("Service", "svc", ns, spec={"type": type_, "ports": [{"port": 443}]})


def test_no_load_balancers():
    t = "kubernetes:core/v1:Service"
    assert check_resource("no-loadbalancer-services", t, service("bind", "ClusterIP")) == []
    for chart in model.CONTROLLER_CHARTS:
        assert check_resource("no-loadbalancer-services", t, service(chart.namespace, "LoadBalancer")) == []
    [message] = check_resource("no-loadbalancer-services", t, service("bind", "LoadBalancer"))
    assert "LoadBalancer Service outside the controller's namespace" in message


def test_no_load_balancers_in_other_charts_values():
    t = "kubernetes:helm.sh/v3:Release"
    nginx = catalog.CHARTS["ingress-nginx"]
    assert (
        check_resource(
            "no-loadbalancer-services",
            t,
            {"chart": nginx.chart, "values": {"controller": {"service": {"type": "LoadBalancer"}}}},
        )
        == []
    )
    [message] = check_resource(
        "no-loadbalancer-services",
        t,
        {"chart": "crossplane", "values": {"webhooks": {"service": {"type": "LoadBalancer"}}}},
    )
    assert "values.webhooks.service.type" in message


# ------------------------------------------------------------------------------- cluster-admin
def binding(
    name: str, subjects: list[dict[str, str]], role: str = "cluster-admin", kind: str = "ClusterRoleBinding"
) -> PolicyResource:
    rbac = "rbac.authorization.k8s.io/v1"
    return stack_resource(
        f"kubernetes:{rbac}:{kind}",
        name,
        k8s(
            kind,
            name,
            None,
            rbac,
            subjects=subjects,
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        ),
    )


BACKEND_SA = {"kind": "ServiceAccount", "name": "anynines-backend", "namespace": "bind"}


def backend() -> PolicyResource:
    return stack_resource("kubernetes:apps/v1:Deployment", "backend", deployment(BACKEND_IMAGE))


def test_cluster_admin_only_for_the_backend():
    assert check_stack("cluster-admin-only-backend", [backend(), binding("anynines-backend", [BACKEND_SA])]) == []
    # other roles are not this rule's business
    assert check_stack("cluster-admin-only-backend", [binding("x", [{"kind": "User", "name": "u"}], role="view")]) == []


def test_cluster_admin_for_anyone_else_fails():
    found = check_stack("cluster-admin-only-backend", [backend(), binding("ops", [{"kind": "User", "name": "alice"}])])
    assert len(found) == 1 and "grants cluster-admin to User default/alice" in found[0][0]
    # the backend's ServiceAccount name in the wrong namespace is someone else
    found = check_stack(
        "cluster-admin-only-backend", [backend(), binding("b", [{**BACKEND_SA, "namespace": "default"}])]
    )
    assert len(found) == 1


def test_cluster_admin_without_the_backend_or_twice_fails():
    assert check_stack("cluster-admin-only-backend", [binding("anynines-backend", [BACKEND_SA])])
    found = check_stack(
        "cluster-admin-only-backend", [backend(), binding("a", [BACKEND_SA]), binding("b", [BACKEND_SA])]
    )
    assert [m for m, _ in found] == [
        "2 cluster-admin bindings (ClusterRoleBinding a, ClusterRoleBinding b); only the backend's one is allowed"
    ]


# ------------------------------------------------------------------------------- explicit provider
def test_explicit_provider():
    cm = k8s("ConfigMap", "c", "bind", data={})
    t = "kubernetes:core/v1:ConfigMap"
    assert check_resource("explicit-kubernetes-provider", t, cm, provider=K8S_PROVIDER) == []
    assert (
        "default Kubernetes provider (default_4_34_2)"
        in check_resource("explicit-kubernetes-provider", t, cm, provider="default_4_34_2")[0]
    )
    assert check_resource("explicit-kubernetes-provider", t, cm, provider=None)
    # components report no provider of their own; AWS resources are not this rule's business
    assert (
        check_resource("explicit-kubernetes-provider", "kubernetes:yaml/v2:ConfigFile", {"file": "x"}, provider=None)
        == []
    )
    assert check_resource("explicit-kubernetes-provider", "aws:ec2/vpc:Vpc", {}, provider="default_7_0_0") == []


# ------------------------------------------------------------------------------- the render's adapter
def test_check_reports_levels_per_environment():
    res = model.Resource(
        EKS,
        "eks",
        "urn:eks",
        {"publicAccessCidrs": ["0.0.0.0/0"], "encryptionConfigKeyArn": "k", "skipDefaultNodeGroup": True},
    )
    [dev] = rules.check([res], "dev")
    [prod] = rules.check([res], "prod")
    assert (dev.level, prod.level) == ("advisory", "mandatory")
    assert str(prod) == (
        "[mandatory] eks-public-endpoint-restricted: eks:index:Cluster eks: the public API endpoint is "
        "open to 0.0.0.0/0; restrict cluster.publicAccessCidrs to the operators' networks"
    )


# ------------------------------------------------------------------------------- workload security
def hardened(dep: dict[str, Any]) -> dict[str, Any]:
    pod = dep["spec"]["template"]["spec"]
    pod["securityContext"] = security.pod_security_context(security.BACKEND_UID)
    for c in pod["containers"]:
        c["securityContext"] = security.container_security_context()
    return dep


def test_workload_security_context_passes_the_backends_and_names_each_gap():
    t = "kubernetes:apps/v1:Deployment"
    assert check_resource("workload-security-context", t, hardened(deployment(BACKEND_IMAGE))) == []
    assert check_resource("workload-security-context", t, deployment(BACKEND_IMAGE)) == [
        "containers.0 (app): allowPrivilegeEscalation is not false",
        "containers.0 (app): capabilities.drop does not list ALL",
        "containers.0 (app): readOnlyRootFilesystem is not true (mount an emptyDir where it writes)",
        "containers.0 (app): runAsNonRoot is not true",
        "containers.0 (app): no seccompProfile of type RuntimeDefault or Localhost",
    ]
    risky = hardened(deployment(BACKEND_IMAGE))
    risky["spec"]["template"]["spec"]["hostNetwork"] = True
    risky["spec"]["template"]["spec"]["containers"][0]["securityContext"].update(
        runAsUser=0, capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}
    )
    assert check_resource("workload-security-context", t, risky) == [
        "hostNetwork is true",
        "containers.0 (app): capabilities.add ['NET_ADMIN'] (only NET_BIND_SERVICE is allowed)",
        "containers.0 (app): runs as user 0",
    ]


def test_workload_security_context_is_the_central_stacks_business_only():
    """The tenant project applies klutchio's konnector manifest as it ships."""
    t = "kubernetes:apps/v1:Deployment"
    found: list[str] = []
    args = ResourceValidationArgs(
        t,
        unknown_checking_proxy(deployment(BACKEND_IMAGE)),
        "urn:pulumi:example::klutch-tenant::kubernetes:apps/v1:Deployment::konnector",
        "konnector",
        _opts(),
        _provider(K8S_PROVIDER),
    )
    policy("workload-security-context").validate(args, lambda message, urn=None: found.append(message))
    assert found == []


def namespace(name: str, enforce: str | None = "restricted", warn: str = "restricted") -> PolicyResource:
    labels = {"pod-security.kubernetes.io/warn": warn, "pod-security.kubernetes.io/audit": "restricted"}
    if enforce:
        labels["pod-security.kubernetes.io/enforce"] = enforce
    return stack_resource(
        "kubernetes:core/v1:Namespace", name, k8s("Namespace", name, metadata={"name": name, "labels": labels})
    )


def network_policy(ns: str, spec: dict[str, Any]) -> PolicyResource:
    obj = k8s("NetworkPolicy", "p", ns, "networking.k8s.io/v1", spec=spec)
    return stack_resource("kubernetes:networking.k8s.io/v1:NetworkPolicy", f"p-{ns}", obj)


def test_pod_security_labels_on_every_namespace_restricted_where_workloads_run():
    assert (
        check_stack("pod-security-labels", [namespace("bind"), namespace("crossplane-system", "baseline"), backend()])
        == []
    )
    found = check_stack(
        "pod-security-labels", [namespace("bind", "baseline"), namespace("x", None, warn="baseline"), backend()]
    )
    assert [m for m, _ in found] == [
        "Namespace x: label pod-security.kubernetes.io/enforce is None; set baseline or restricted",
        "Namespace x: label pod-security.kubernetes.io/warn is 'baseline'; set restricted",
        "Namespace bind: holds Deployment bind/anynines-backend, so it must enforce restricted",
    ]


def test_network_policy_present_needs_a_default_deny_where_workloads_run():
    deny = security.default_deny_spec()
    assert check_stack("network-policy-present", [backend(), network_policy("bind", deny)]) == []
    only_ingress = {"podSelector": {}, "policyTypes": ["Ingress"]}
    some_pods = {**deny, "podSelector": {"matchLabels": {"app": "a"}}}
    for policies in (
        [],
        [network_policy("bind", only_ingress)],
        [network_policy("bind", some_pods)],
        [network_policy("other", deny)],
    ):
        assert [m for m, _ in check_stack("network-policy-present", [backend(), *policies])] == [
            "Deployment bind/anynines-backend: namespace bind has no default-deny NetworkPolicy"
        ]


def test_a_change_that_removes_the_backends_security_context_is_refused():
    """The shipped dev stack passes; the same stack with the backend's securityContext removed (a user's own
    change to the program) fails mandatory rules, in dev too."""
    from tests import harness

    resources = [model.from_registration(r) for r in harness.run_stack_file("dev").resources]
    assert [f for f in rules.check(resources, "dev") if f.level == "mandatory"] == []

    def stripped(res: model.Resource) -> model.Resource:
        if res.kind != "Deployment":
            return res
        props = json.loads(json.dumps(res.props))
        pod = props["spec"]["template"]["spec"]
        pod.pop("securityContext")
        for c in pod["containers"]:
            c.pop("securityContext")
        return dataclasses.replace(res, props=props)

    found = [f for f in rules.check([stripped(r) for r in resources], "dev") if f.level == "mandatory"]
    assert {f.policy for f in found} == {"workload-security-context"}
    assert "Deployment bind/anynines-backend: containers.0 (anynines-backend): runAsNonRoot is not true" in {
        f.message for f in found
    }


def test_workload_security_context_unknown_during_preview_is_not_a_violation():
    dep = hardened(deployment(BACKEND_IMAGE))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = UNKNOWN_STRING_VALUE
    assert check_resource("workload-security-context", "kubernetes:apps/v1:Deployment", dep) == []
