"""The tenant program under the mock engine: a mocked central StackReference and a mocked bind.

The Binding dynamic resource's outputs come from `resource_hook` (what the backend would return for
the requested APIs); the APIServiceNamespaces get the central namespace the backend would assign.
"""

from __future__ import annotations

import json
import runpy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from klutch import catalog
from klutch.config import tenant as tenant_config
from klutch.config.reader import ConfigError
from klutch.offline import manifests, stackfile
from klutch.offline.curated import mock_kubeconfig
from klutch.offline.mockengine import Evaluation, Registration, evaluate
from klutch.tenant import binding
from klutch.tenant import program as tenant_program
from klutch.tenant.cluster import accepted, export_for, konnector_deployment_spec
from tests.test_tenant_config import (
    CENTRAL_STACK,
    CLIENT_SECRET,
    EXPORTED,
    NS,
    SECRET_KEYS,
    base_raw,
    central_outputs,
)

ROOT = Path(__file__).resolve().parent.parent
RELEASE = catalog.RELEASES["v1.0.0"]
CENTRAL_NAMESPACE = "cluster-acme-dev-x7k2p"
PROVIDER_TOKEN = "central-sa-token-9e3b"
SB_CLAIMS = [
    {"group": "", "resource": "secrets", "version": "v1", "selector": {"owner": "Provider"}},
    {"group": "", "resource": "configmaps", "version": "v1", "selector": {"owner": "Provider"}},
]
GROUP_VERSION = f"{RELEASE.kube_bind_group}/{RELEASE.kube_bind_version}"


def bind_mock(args: pulumi.runtime.MockResourceArgs) -> dict[str, Any] | None:
    """What the backend returns for the requested APIs, and what it assigns to APIServiceNamespaces."""
    if args.typ == binding.TYPE:
        return {
            "kubeconfig": mock_kubeconfig(
                "https://central.example.com:6443", "central", namespace=CENTRAL_NAMESPACE, token=PROVIDER_TOKEN
            ),
            "namespace": CENTRAL_NAMESPACE,
            "exports": [
                {
                    **api,
                    "versions": ["v1"],
                    "request": f"{api['resource']}-req",
                    "parameters": None,
                    "permissionClaims": SB_CLAIMS if api["resource"] == "servicebindings" else [],
                }
                for api in args.inputs["apis"]
            ],
        }
    if args.typ == f"kubernetes:{GROUP_VERSION}:APIServiceNamespace":
        return {"status": {"namespace": f"{CENTRAL_NAMESPACE}-{args.inputs['metadata']['name']}"}}
    return None


def run(
    overrides: dict[str, Any] | None = None,
    *,
    drop: tuple[str, ...] = (),
    outputs: dict[str, Any] | None = None,
    secret_keys: tuple[str, ...] = SECRET_KEYS,
) -> Evaluation:
    raw = {**base_raw(), **(overrides or {})}
    for key in drop:
        raw.pop(key)
    return evaluate(
        tenant_program.main,
        {f"{NS}:{k}": v for k, v in raw.items()},
        [f"{NS}:{k}" for k in secret_keys],
        project="klutch-tenant",
        stack="acme-dev",
        stack_outputs={CENTRAL_STACK: central_outputs() if outputs is None else outputs},
        resource_hook=bind_mock,
    )


@pytest.fixture(scope="module")
def ev() -> Evaluation:
    return run({"namespaces": ["apps", "web"]})


def provider_of(ev: Evaluation, reg: Registration) -> Registration:
    found = ev.by_urn(reg.provider_urn)
    assert found is not None, f"{reg.name} has no explicit provider"
    return found


def binding_object(ev: Evaluation, resource: str) -> Registration:
    return ev.k8s("APIServiceBinding", f"{resource}.anynines.com")


# ------------------------------------------------------------------------------- the bind
def test_the_stack_reference_names_the_central_stack(ev):
    assert ev.one("pulumi:pulumi:StackReference").name == CENTRAL_STACK


def test_binding_requests_every_exported_api_with_the_central_urls(ev):
    b = ev.one(binding.TYPE, "binding")
    assert b.get("clusterId") == "acme-dev"
    assert b.get("apis") == [{"group": "anynines.com", "resource": r} for r in EXPORTED]
    assert b.get("bindUrl") == "https://klutch.example.com/bind-noninteractive"
    assert b.get("tokenUrl") == base_raw()["oidc"]["tokenUrl"] and b.get("clientId") == "acme-binder"
    assert b.is_secret("clientSecret") and b.get("clientSecret") == CLIENT_SECRET
    assert not b.is_secret("clusterId") and b.get("caPem") is None


def test_self_signed_central_ca_reaches_the_bind():
    from klutch.offline.curated import PLACEHOLDER_CA_PEM

    ev = run(outputs=central_outputs(tlsCaPem=PLACEHOLDER_CA_PEM))
    assert ev.one(binding.TYPE).get("caPem") == PLACEHOLDER_CA_PEM


# ------------------------------------------------------------------------------- tenant side
def test_every_kubernetes_object_uses_an_explicit_provider(ev):
    tenant_k8s = ev.one("pulumi:providers:kubernetes", "tenant-k8s")
    central_k8s = ev.one("pulumi:providers:kubernetes", "central-k8s")
    objects = ev.by_prefix("kubernetes:")
    assert objects
    for reg in objects:
        assert provider_of(ev, reg).urn in (tenant_k8s.urn, central_k8s.urn), reg.name
    central = {r.name for r in objects if provider_of(ev, r).urn == central_k8s.urn}
    assert central == {f"central-export-{r}.anynines.com" for r in EXPORTED} | {
        "central-namespace-apps",
        "central-namespace-web",
    }


def test_tenant_provider_uses_the_tenant_kubeconfig_as_a_secret(ev):
    p = ev.one("pulumi:providers:kubernetes", "tenant-k8s")
    assert p.is_secret("kubeconfig") and p.get("kubeconfig") == base_raw()["kubeconfig"]


def test_namespace_and_kubeconfig_secret(ev):
    ns = ev.k8s("Namespace", "klutch-bind")
    secret = ev.k8s("Secret", "kubeconfig", "klutch-bind")
    assert secret.get("type") == "Opaque"
    assert list(secret.get("stringData")) == ["kubeconfig"]
    assert secret.is_secret("stringData.kubeconfig")
    assert (
        yaml.safe_load(secret.get("stringData.kubeconfig"))["contexts"][0]["context"]["namespace"] == CENTRAL_NAMESPACE
    )
    assert ev.depends_on(secret, ns)


def test_kube_bind_crds_come_from_the_central_stack_and_are_waited_for(ev):
    crds = ev.one("kubernetes:yaml/v2:ConfigGroup", "tenant-kube-bind-crds")
    assert crds.get("files") == list(RELEASE.kube_bind_crd_urls)
    assert provider_of(ev, crds).name == "tenant-k8s"
    assert not crds.protect and crds.retain_on_delete  # CRDs are never deleted with the stack


def test_one_cluster_scoped_api_service_binding_per_api(ev):
    bindings = ev.kinds("APIServiceBinding")
    assert sorted(b.k8s_name for b in bindings) == sorted(f"{r}.anynines.com" for r in EXPORTED)
    for b in bindings:
        assert b.type == f"kubernetes:{GROUP_VERSION}:APIServiceBinding"
        assert b.get("metadata.namespace") is None  # cluster-scoped in released CRDs
        assert b.get("spec.kubeconfigSecretRef") == {
            "name": "kubeconfig",
            "namespace": "klutch-bind",
            "key": "kubeconfig",
        }


def test_permission_claims_are_accepted(ev):
    assert binding_object(ev, "servicebindings").get("spec.permissionClaims") == [
        {**c, "state": "Accepted"} for c in SB_CLAIMS
    ]
    assert binding_object(ev, "postgresqlinstances").get("spec.permissionClaims") == []
    assert accepted([{"resource": "secrets"}]) == [{"resource": "secrets", "state": "Accepted"}]
    with pytest.raises(ValueError, match="no export for backups.anynines.com"):
        export_for([], tenant_config.Api("anynines.com", "backups"))


def test_crds_are_established_before_any_binding_object(ev):
    crds = ev.one("kubernetes:yaml/v2:ConfigGroup")
    secret = ev.k8s("Secret", "kubeconfig", "klutch-bind")
    for b in ev.kinds("APIServiceBinding"):
        assert ev.depends_on(b, crds), b.k8s_name
        assert ev.depends_on(b, secret), b.k8s_name
        assert not ev.depends_on(crds, b)


def test_konnector(ev):
    sa = ev.k8s("ServiceAccount", "konnector", "klutch-bind")
    role = ev.k8s("ClusterRole", "klutch-bind-konnector")
    assert role.get("rules") == [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    rb = ev.k8s("ClusterRoleBinding", "klutch-bind-konnector")
    assert rb.get("roleRef") == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "klutch-bind-konnector",
    }
    assert rb.get("subjects") == [{"kind": "ServiceAccount", "name": "konnector", "namespace": "klutch-bind"}]
    deploy = ev.k8s("Deployment", "konnector", "klutch-bind")
    pod = deploy.get("spec.template.spec")
    assert pod["serviceAccountName"] == "konnector"
    assert [c["image"] for c in pod["containers"]] == [RELEASE.konnector_image]
    assert (
        deploy.get("spec.selector.matchLabels") == {"app": "konnector"} == deploy.get("spec.template.metadata.labels")
    )
    assert deploy.custom_timeouts == {"create": "10m", "update": "10m"}
    assert ev.depends_on(rb, sa) and ev.depends_on(rb, role)


def test_namespace_then_secret_then_konnector(ev):
    ns = ev.k8s("Namespace", "klutch-bind")
    secret = ev.k8s("Secret", "kubeconfig", "klutch-bind")
    deploy = ev.k8s("Deployment", "konnector", "klutch-bind")
    crds = ev.one("kubernetes:yaml/v2:ConfigGroup")
    assert ev.depends_on(deploy, secret) and ev.depends_on(secret, ns) and ev.depends_on(deploy, crds)
    assert ev.depends_on(ev.k8s("ServiceAccount", "konnector", "klutch-bind"), ns)
    assert not ev.depends_on(secret, deploy) and not ev.depends_on(ns, secret)


def test_nothing_on_the_tenant_cluster_is_created_before_the_bind(ev):
    bind = ev.one(binding.TYPE, "binding")
    tenant_k8s = ev.one("pulumi:providers:kubernetes", "tenant-k8s")
    on_tenant = [r for r in ev.resources if r.provider_urn == tenant_k8s.urn]
    assert len(on_tenant) > 5
    assert [r.name for r in on_tenant if not ev.depends_on(r, bind)] == []


def test_konnector_image_override():
    ev = run({"konnectorImage": "registry.example.com/mirror/konnector:v1.3.0"})
    deploy = ev.k8s("Deployment", "konnector", "klutch-bind")
    assert deploy.get("spec.template.spec.containers.0.image") == "registry.example.com/mirror/konnector:v1.3.0"
    assert ev.output("konnectorImage") == "registry.example.com/mirror/konnector:v1.3.0"
    assert ev.output("kubectlBindCommand") == (
        "kubectl bind https://klutch.example.com/export --konnector-image=registry.example.com/mirror/konnector:v1.3.0"
    )


# ------------------------------------------------------------------------------- central side
def test_central_provider_is_the_returned_kubeconfig_in_the_tenant_namespace(ev):
    p = ev.one("pulumi:providers:kubernetes", "central-k8s")
    assert p.is_secret("kubeconfig") and PROVIDER_TOKEN in p.get("kubeconfig")
    assert p.get("namespace") == CENTRAL_NAMESPACE
    assert ev.depends_on(p, ev.one(binding.TYPE))


def test_one_export_request_per_api_in_the_central_namespace(ev):
    requests = ev.kinds("APIServiceExportRequest")
    assert sorted(r.k8s_name for r in requests) == sorted(f"{r}.anynines.com" for r in EXPORTED)
    sb = ev.k8s("APIServiceExportRequest", "servicebindings.anynines.com", CENTRAL_NAMESPACE)
    assert sb.type == f"kubernetes:{GROUP_VERSION}:APIServiceExportRequest"
    assert sb.get("spec") == {
        "resources": [
            {"group": "anynines.com", "resource": "servicebindings", "versions": ["v1"], "permissionClaims": SB_CLAIMS}
        ]
    }
    assert sb.replace_on_changes == ["spec"] and sb.delete_before_replace


def test_api_service_namespaces_map_consumer_to_central_namespaces(ev):
    apps = ev.k8s("APIServiceNamespace", "apps", CENTRAL_NAMESPACE)
    assert apps.get("spec") == {}
    assert apps.get("metadata.annotations") == {"pulumi.com/waitFor": "jsonpath={.status.namespace}"}
    assert "status" not in apps.inputs  # status is read back, never sent
    assert ev.output("namespaceMap") == {"apps": f"{CENTRAL_NAMESPACE}-apps", "web": f"{CENTRAL_NAMESPACE}-web"}


def test_no_namespaces_means_an_empty_map():
    ev = run()
    assert ev.kinds("APIServiceNamespace") == [] and ev.output("namespaceMap") == {}


# ------------------------------------------------------------------------------- outputs, secrets
def test_outputs(ev):
    assert ev.output_is_secret("providerKubeconfig")
    assert yaml.safe_load(ev.output("providerKubeconfig"))["users"][0]["user"]["token"] == PROVIDER_TOKEN
    assert ev.output("centralNamespace") == CENTRAL_NAMESPACE
    assert ev.output("boundApis") == [f"{r}.anynines.com" for r in EXPORTED]
    assert ev.output("kubectlBindCommand") == central_outputs()["kubectlBindCommand"]
    assert ev.output("konnectorImage") == RELEASE.konnector_image
    for name in ("centralNamespace", "boundApis", "namespaceMap", "kubectlBindCommand", "konnectorImage"):
        assert not ev.output_is_secret(name), name


def _plain_text(value: Any, secret: bool) -> str:
    """Everything that is not a secret, as text."""
    from pulumi.runtime import rpc

    if rpc.is_rpc_secret(value):
        return ""
    if isinstance(value, dict):
        return " ".join(_plain_text(v, secret) for v in value.values())
    if isinstance(value, list):
        return " ".join(_plain_text(v, secret) for v in value)
    return str(value)


def test_no_secret_appears_in_plain_inputs_or_outputs(ev):
    plain = " ".join(_plain_text(r.raw_inputs, False) for r in ev.resources)
    plain += " " + " ".join(_plain_text(v, False) for v in ev.outputs.values())
    for secret in (CLIENT_SECRET, PROVIDER_TOKEN, "tenant-admin-token-42aa"):
        assert secret not in plain


def test_fallback_command_is_composed_when_the_central_stack_has_none():
    ev = run(outputs=central_outputs(kubectlBindCommand=None))
    assert ev.output("kubectlBindCommand") == (
        f"kubectl bind https://klutch.example.com/export --konnector-image={RELEASE.konnector_image}"
    )


# ------------------------------------------------------------------------------- variants
def test_configured_apis_bind_only_those():
    ev = run({"apis": ["servicebindings", "postgresqlinstances.anynines.com"]})
    assert ev.one(binding.TYPE).get("apis") == [
        {"group": "anynines.com", "resource": "servicebindings"},
        {"group": "anynines.com", "resource": "postgresqlinstances"},
    ]
    assert sorted(b.k8s_name for b in ev.kinds("APIServiceBinding")) == [
        "postgresqlinstances.anynines.com",
        "servicebindings.anynines.com",
    ]
    assert len(ev.kinds("APIServiceExportRequest")) == 2
    assert ev.output("boundApis") == ["servicebindings.anynines.com", "postgresqlinstances.anynines.com"]


def test_protect_guards_what_would_delete_tenant_data():
    ev = run({"protect": True, "namespaces": ["apps"]})
    crds = ev.one("kubernetes:yaml/v2:ConfigGroup")
    assert crds.protect and crds.retain_on_delete
    assert all(b.protect for b in ev.kinds("APIServiceBinding"))
    assert ev.k8s("APIServiceNamespace", "apps").protect
    assert not ev.k8s("Deployment", "konnector").protect


def test_eks_tenant_cluster_authenticates_with_aws_eks_get_token():
    ev = run({"eksClusterName": "acme-dev-eks"}, drop=("kubeconfig",), secret_keys=("oidc",))
    eks = ev.one("aws:eks/cluster:Cluster")
    assert eks.id == "acme-dev-eks"
    p = ev.one("pulumi:providers:kubernetes", "tenant-k8s")
    assert p.is_secret("kubeconfig")
    kubeconfig = json.loads(p.get("kubeconfig"))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://ACME-DEV-EKS.gr7.eu-central-1.eks.amazonaws.com"
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "aws"
    assert kubeconfig["users"][0]["user"]["exec"]["args"][:4] == ["eks", "get-token", "--cluster-name", "acme-dev-eks"]
    assert ev.depends_on(ev.k8s("Namespace", "klutch-bind"), eks)


def test_without_a_tenant_cluster_the_binding_and_central_side_are_prepared():
    ev = run({"namespaces": ["apps"]}, drop=("kubeconfig",), secret_keys=("oidc",))
    assert [w for w in ev.warnings() if w.startswith("no tenant cluster configured")]
    assert ev.by_type("klutch:tenant:TenantCluster") == [] and ev.kinds("APIServiceBinding") == []
    assert [r.name for r in ev.by_type("pulumi:providers:kubernetes")] == ["central-k8s"]
    assert len(ev.kinds("APIServiceExportRequest")) == len(EXPORTED)
    assert ev.output("namespaceMap") == {"apps": f"{CENTRAL_NAMESPACE}-apps"}
    assert ev.output_is_secret("providerKubeconfig")
    assert ev.output("boundApis") == [f"{r}.anynines.com" for r in EXPORTED]


@pytest.mark.parametrize(
    "version",
    sorted({catalog.KUBERNETES_VERSIONS[0], catalog.DEFAULT_KUBERNETES_VERSION, catalog.KUBERNETES_VERSIONS[-1]}),
)
def test_every_manifest_is_valid(ev, version):
    objects = manifests.manifests(ev)
    assert len(objects) == 2 * len(EXPORTED) + 2 + 6  # bindings + export requests, 2 namespaces, 6 tenant objects
    assert manifests.check_all(ev, version) == []


# ------------------------------------------------------------------------------- bad configs
def test_unknown_api_fails_naming_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        run({"apis": ["redisinstances"]})
    assert str(e.value.problems[0]) == (
        f"{NS}:apis[0] = 'redisinstances': is not exported by central stack '{CENTRAL_STACK}'; valid: "
        + ", ".join(f"{r}.anynines.com" for r in EXPORTED)
    )


def test_bad_cluster_id_fails_before_anything_is_declared():
    with pytest.raises(ConfigError, match=f"{NS}:clusterId = 'ACME': must be a DNS label"):
        run({"clusterId": "ACME"})


def test_missing_client_secret_fails():
    oidc = {k: v for k, v in base_raw()["oidc"].items() if k != "clientSecret"}
    with pytest.raises(ConfigError, match=r"oidc.clientSecret = <unset>: required secret"):
        run({"oidc": oidc})


def test_central_stack_without_non_interactive_bind_points_at_the_interactive_command():
    with pytest.raises(
        ConfigError, match="'bindNonInteractiveUrl' is missing: the central backend offers no non-interactive bind"
    ):
        run(outputs=central_outputs(bindNonInteractiveUrl=None))


def test_undeployed_central_stack():
    with pytest.raises(ConfigError, match="has none of the outputs a tenant binds with"):
        run(outputs={})


# ------------------------------------------------------------------------------- the project
def test_example_stack_file_evaluates():
    path = ROOT / "tenant" / "Pulumi.example.yaml"
    config, secret_keys = stackfile.read(path, NS, tenant_config.secret_paths)
    assert secret_keys == [f"{NS}:kubeconfig", f"{NS}:oidc"]
    central = yaml.safe_load(path.read_text())["config"][f"{NS}:centralStack"]
    ev = evaluate(
        tenant_program.main,
        config,
        secret_keys,
        project="klutch-tenant",
        stack="example",
        stack_outputs={central: central_outputs()},
        resource_hook=bind_mock,
    )
    assert ev.output("boundApis") == [
        "postgresqlinstances.anynines.com",
        "servicebindings.anynines.com",
        "backups.anynines.com",
        "restores.anynines.com",
    ]
    assert list(ev.output("namespaceMap")) == ["apps"]
    assert ev.one(binding.TYPE).get("clusterId") == "acme-dev"
    assert ev.one(binding.TYPE).get("clientSecret") == "placeholder-oidc-clientSecret"


def test_example_stack_file_commits_no_secret():
    text = (ROOT / "tenant" / "Pulumi.example.yaml").read_text()
    doc = yaml.safe_load(text)["config"]
    assert "clientSecret" not in doc[f"{NS}:oidc"] and f"{NS}:kubeconfig" not in doc


def test_tenant_main_runs_the_tenant_program():
    raw = {f"{NS}:{k}": v for k, v in base_raw().items()}
    ev = evaluate(
        lambda: runpy.run_path(str(ROOT / "tenant"), run_name="__main__"),
        raw,
        [f"{NS}:{k}" for k in SECRET_KEYS],
        project="klutch-tenant",
        stack="acme-dev",
        stack_outputs={CENTRAL_STACK: central_outputs()},
        resource_hook=bind_mock,
    )
    assert len(ev.kinds("APIServiceBinding")) == len(EXPORTED)


def test_tenant_project_layout():
    project = yaml.safe_load((ROOT / "tenant" / "Pulumi.yaml").read_text())
    assert project["name"] == NS == "klutch-tenant"
    assert project["runtime"]["name"] == "python"
    # every declared key is one the program accepts (a typo there would be an "unknown key" error)
    declared = set(project["config"])
    tenant_config.parse({**base_raw(), **{k: central_value(k) for k in declared}}, set(SECRET_KEYS), stack="s")


def central_value(key: str) -> Any:
    return {
        "konnectorImage": "registry.example.com/konnector:v1",
        "klutchRelease": "v1.0.0",
        "protect": "false",
    }.get(key, base_raw().get(key))


def test_konnector_deployment_spec_without_the_engine():
    spec = konnector_deployment_spec("konnector", "registry.example.com/konnector:v1")
    assert spec["replicas"] == 2 and spec["selector"] == {"matchLabels": {"app": "konnector"}}
    assert spec["template"]["metadata"] == {"labels": {"app": "konnector"}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "konnector"
    [container] = pod["containers"]
    assert container["image"] == "registry.example.com/konnector:v1"
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]} == {
        "POD_NAME": "metadata.name",
        "POD_NAMESPACE": "metadata.namespace",
    }
    assert container["readinessProbe"] == {"httpGet": {"path": "/healthz", "port": 8080}}
