"""kube-bind on the central cluster: CRDs, binder role, export templates, the backend, tenant outputs."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from functools import cache

import pulumi
import pulumi_kubernetes as k8s
import pytest
from pulumi.runtime import rpc

from klutch import catalog
from klutch.central import kubebind
from klutch.central.edge import Edge
from klutch.central.kubebind import KubeBind, KubeBindArgs
from klutch.central.program import edge_args
from klutch.kube import names
from klutch.offline import manifests
from klutch.offline.curated import MOCK_LB_HOSTNAME, PLACEHOLDER_CA_PEM
from klutch.offline.mockengine import Evaluation, Registration, evaluate
from tests import harness

HOST = harness.base_raw()["backend"]["host"]
RELEASE = catalog.RELEASES["v1.0.0"]
NS = RELEASE.backend_namespace
V100_SERVICES = RELEASE.data_services
SERVER = RELEASE.backend()
TEMPLATE = f"kubernetes:{SERVER.export_template_api_version}:APIServiceExportTemplate"


@cache
def run(overrides_json: str = "{}") -> Evaluation:
    return harness.run(json.loads(overrides_json))


def ev_for(overrides: dict | None = None) -> Evaluation:
    return run(json.dumps(overrides or {}, sort_keys=True))


def component(ev: Evaluation) -> Registration:
    return ev.one("klutch:kubebind:KubeBind")


def deployment(ev: Evaluation) -> Registration:
    return ev.k8s("Deployment", RELEASE.backend_name, NS)


def service(ev: Evaluation) -> Registration:
    return ev.k8s("Service", RELEASE.backend_name, NS)


def secret(ev: Evaluation, name: str) -> Registration:
    return ev.k8s("Secret", name, NS)


def container(ev: Evaluation) -> dict:
    [c] = deployment(ev).get("spec.template.spec.containers")
    return c


# ------------------------------------------------------------------------------ CRDs
def test_crds_from_the_pinned_release_url_retained_and_protected_in_prod():
    ev = ev_for()
    crds = ev.one("kubernetes:yaml/v2:ConfigGroup")
    assert crds.get("files") == list(RELEASE.kube_bind_crd_urls)
    assert crds.get("files")[0].startswith("https://") and "/v1.3.0/" in crds.get("files")[0]  # pinned
    assert crds.retain_on_delete is True
    assert crds.protect is False  # dev
    assert crds.parent == component(ev).urn
    assert crds.provider_urn == ev.one("pulumi:providers:kubernetes", "cluster-k8s").urn
    prod = ev_for({"protect": True})
    assert prod.one("kubernetes:yaml/v2:ConfigGroup").protect is True
    assert prod.one("kubernetes:yaml/v2:ConfigGroup").retain_on_delete is True


# ------------------------------------------------------------------------------ RBAC
def test_binder_cluster_role_uses_the_release_group():
    ev = ev_for()
    role = ev.k8s("ClusterRole", "kube-binder")
    assert role.get("metadata.name") == RELEASE.binder_cluster_role
    group = "klutch.anynines.com"
    assert RELEASE.kube_bind_group == group
    rw = ["create", "delete", "patch", "update", "get", "list", "watch"]
    assert role.get("rules") == [
        {"apiGroups": [group], "resources": ["apiserviceexportrequests"], "verbs": rw},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"]},
        {"apiGroups": [group], "resources": ["clusterbindings"], "verbs": ["get", "watch", "list"]},
        {"apiGroups": [group], "resources": ["clusterbindings/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [group], "resources": ["apiserviceexports"], "verbs": ["get", "watch", "list"]},
        {"apiGroups": [group], "resources": ["apiserviceexports/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [group], "resources": ["apiservicenamespaces"], "verbs": rw},
    ]
    assert "kube-bind.io" not in json.dumps(role.inputs)  # the manual procedure's group grants nothing


def test_backend_is_cluster_admin_through_its_service_account():
    ev = ev_for()
    account = ev.k8s("ServiceAccount", RELEASE.backend_name, NS)
    binding = ev.k8s("ClusterRoleBinding", RELEASE.backend_name)
    assert binding.get("roleRef") == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "cluster-admin",
    }
    assert binding.get("subjects") == [
        {"kind": "ServiceAccount", "name": account.get("metadata.name"), "namespace": account.get("metadata.namespace")}
    ]
    assert binding.get("metadata.namespace") is None  # cluster-scoped (the manual procedure set one)
    assert deployment(ev).get("spec.template.spec.serviceAccountName") == account.get("metadata.name")


# ------------------------------------------------------------------------------ export templates
@pytest.mark.parametrize("services", [(), ("postgresql",), V100_SERVICES], ids=["0", "1", "8"])
def test_one_template_per_exported_api(services):
    ev = ev_for({"dataServices": harness.services(*services)})
    templates = {t.get("metadata.name"): t for t in ev.by_type(TEMPLATE)}
    expected = [f"{s}instances" for s in services] + ["servicebindings", "backups", "restores"]
    assert sorted(templates) == sorted(expected)
    assert len(templates) == len(services) + 3
    crds = ev.one("kubernetes:yaml/v2:ConfigGroup")
    for name, t in templates.items():
        assert t.get("apiVersion") == "bind.anynines.com/v1alpha1"
        assert t.get("kind") == "APIServiceExportTemplate"
        assert t.get("metadata.namespace") == "crossplane-system"
        assert t.get("spec.APIServiceSelector") == {"resource": name, "group": "anynines.com"}
        assert ev.depends_on(t, crds)  # CRDs before templates
    for name in set(templates) - {"servicebindings"}:
        assert templates[name].get("spec.permissionClaims") is None
    claims = [
        {"group": "", "resource": r, "version": "v1", "selector": {"owner": "Provider"}}
        for r in ("secrets", "configmaps")
    ]
    assert templates["servicebindings"].get("spec.permissionClaims") == claims


def test_templates_and_binding_apis_are_the_same_list():
    ev = ev_for({"dataServices": harness.services(*V100_SERVICES)})
    apis = ev.output("bindingApis")
    assert {(a["group"], a["resource"]) for a in apis} == {
        (t.get("spec.APIServiceSelector.group"), t.get("spec.APIServiceSelector.resource"))
        for t in ev.by_type(TEMPLATE)
    }
    # the manual procedure's binding.json, exactly
    procedure = [
        "logme2instances",
        "mariadbinstances",
        "messaginginstances",
        "mongodbinstances",
        "postgresqlinstances",
        "prometheusinstances",
        "redisinstances",
        "searchinstances",
        "servicebindings",
        "backups",
        "restores",
    ]
    assert sorted(a["resource"] for a in apis) == sorted(procedure)
    assert {a["group"] for a in apis} == {"anynines.com"}
    assert all(set(a) == {"group", "resource"} for a in apis)


def test_binding_apis_helper_rejects_services_the_release_lacks():
    assert catalog.binding_apis(RELEASE, ["postgresql"])[0] == {
        "group": "anynines.com",
        "resource": "postgresqlinstances",
    }
    with pytest.raises(ValueError, match="keyvalue"):
        catalog.binding_apis(RELEASE, ["keyvalue"])  # v1.5.0's name, not in v1.0.0


def test_templates_can_wait_for_the_crossplane_namespace_object_only():
    """The lead wires the Crossplane layer's Namespace output in: templates then wait for it (not the release)."""
    cfg = harness.parse()

    def program() -> None:
        provider = k8s.Provider("central", kubeconfig="{}")
        namespace = k8s.core.v1.Namespace(
            "xp", metadata={"name": "crossplane-system"}, opts=pulumi.ResourceOptions(provider=provider)
        )
        edge = Edge("edge", edge_args(cfg, provider))
        KubeBind(
            "kube-bind",
            KubeBindArgs(
                provider=provider,
                release=cfg.release,
                server=cfg.server,
                crd_urls=cfg.release.crd_urls(cfg.server),
                data_services=[s.key for s in cfg.data_services],
                protect=cfg.protect,
                backend=cfg.backend,
                oidc=cfg.oidc,
                ingress_namespace="envoy-gateway-system",
                network_policy=cfg.network_policy,
                namespace=edge.namespace,
                host=edge.host,
                api_server_url=pulumi.Output.from_input("https://api.example.com"),
                cluster_ca_pem=pulumi.Output.from_input(PLACEHOLDER_CA_PEM),
                export_namespace=namespace.metadata.apply(lambda m: m.name),
            ),
        )

    ev = evaluate(program, {}, project="klutch-central", stack="test")
    ns = ev.one("kubernetes:core/v1:Namespace", "xp")
    for t in ev.by_type(TEMPLATE):
        assert t.get("metadata.namespace") == "crossplane-system"
        assert ev.depends_on(t, ns)
    assert not ev.depends_on(deployment(ev), ns)


# ------------------------------------------------------------------------------ backend
def test_backend_secrets_cookie_keys():
    ev = ev_for()
    cookies = secret(ev, "cookie-config")
    data = cookies.get("stringData")
    assert set(data) == {"signing-key", "encryption-key"}
    for key in data:
        assert len(base64.b64decode(data[key], validate=True)) == 32
        assert cookies.is_secret(f"stringData.{key}")
    generators = ev.by_type("random:index/randomBytes:RandomBytes")
    assert sorted(g.name for g in generators) == ["kube-bind-cookie-encryption-key", "kube-bind-cookie-signing-key"]
    for g in generators:
        assert g.get("length") == 32
        assert g.get("keepers") is None  # stable across updates
        assert g.parent == component(ev).urn


def test_k8sca_holds_the_cluster_ca_as_pem():
    ev = ev_for()
    ca = secret(ev, "k8sca").get("stringData.ca")
    assert ca == PLACEHOLDER_CA_PEM == ev.output("clusterCaPem")
    assert ca.startswith("-----BEGIN CERTIFICATE-----")
    assert secret(ev, "k8sca").get("data") is None  # stringData: written once, never base64-of-base64


@pytest.mark.parametrize("overrides,host", [({}, HOST), ({"backend": {"host": None}}, MOCK_LB_HOSTNAME)])
def test_oidc_config(overrides, host):
    ev = ev_for(overrides)
    oidc = secret(ev, "oidc-config")
    data = oidc.get("stringData")
    assert data == {
        "oidc-issuer-client-id": "kube-bind",
        "oidc-issuer-client-secret": harness.OIDC_SECRET,
        "oidc-issuer-url": "https://idp.example.com/realms/klutch",
        "oidc-callback-url": f"https://{host}/callback",
    }
    assert oidc.is_secret("stringData.oidc-issuer-client-secret")


def test_custom_oidc_client_id():
    assert (
        secret(ev_for({"oidc": {"clientId": "klutch-central"}}), "oidc-config").get("stringData.oidc-issuer-client-id")
        == "klutch-central"
    )


def test_deployment_spec():
    ev = ev_for()
    dep = deployment(ev)
    labels = {"app": RELEASE.backend_name}
    assert dep.get("spec.replicas") == 1
    assert dep.get("spec.strategy") == {"type": "Recreate"}
    assert dep.get("spec.selector.matchLabels") == labels
    assert dep.get("spec.template.metadata.labels") == labels
    c = container(ev)
    assert c["name"] == RELEASE.backend_name
    assert c["image"] == "public.ecr.aws/w5n9a2g2/anynines/kubebind-backend:v1.3.0" == SERVER.image
    assert c["resources"] == {"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}
    assert c["ports"] == [{"name": "http", "containerPort": 9443, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/export", "port": 9443}
    assert dep.custom_timeouts == {"create": "10m", "update": "10m"}


def test_deployment_args_are_the_manual_procedures():
    ev = ev_for()
    assert container(ev)["args"] == [
        "--namespace-prefix=cluster",
        "--pretty-name=anynines",
        "--consumer-scope=Namespaced",
        "--oidc-issuer-client-id=$(OIDC-ISSUER-CLIENT-ID)",
        "--oidc-issuer-client-secret=$(OIDC-ISSUER-CLIENT-SECRET)",
        "--oidc-issuer-url=$(OIDC-ISSUER-URL)",
        "--oidc-callback-url=$(OIDC-CALLBACK-URL)",
        "--listen-address=0.0.0.0:9443",
        "--cookie-signing-key=$(COOKIE-SIGNING-KEY)",
        "--cookie-encryption-key=$(COOKIE-ENCRYPTION-KEY)",
        f"--external-address={ev.output('clusterEndpoint')}",
        "--external-ca-file=/certa/ca",
    ]
    custom = ev_for({"backend": {"namespacePrefix": "tenant", "prettyName": "Acme Data", "consumerScope": "Cluster"}})
    assert container(custom)["args"][:3] == [
        "--namespace-prefix=tenant",
        "--pretty-name=Acme Data",
        "--consumer-scope=Cluster",
    ]


def test_external_address_follows_cluster_api_server_url():
    ev = ev_for({"cluster": {"mode": "eks", "apiServerUrl": "https://api.klutch.example.com"}})
    assert "--external-address=https://api.klutch.example.com" in container(ev)["args"]


def test_oidc_authorize_url_only_for_releases_that_have_the_flag():
    backend = harness.parse().backend
    plain = kubebind.backend_args(backend, RELEASE, SERVER, HOST, "https://api")
    assert not any(a.startswith("--oidc-authorize-url") for a in plain)
    newer = dataclasses.replace(SERVER, optional_flags=frozenset({"--oidc-authorize-url"}))
    args = kubebind.backend_args(backend, RELEASE, newer, HOST, "https://api")
    assert args[-1] == f"--oidc-authorize-url=https://{HOST}/authorize"
    assert args[:-1] == plain


def test_env_comes_from_the_right_secret_keys():
    ev = ev_for()
    c = container(ev)
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"]}
    assert env == {
        "OIDC-ISSUER-CLIENT-ID": {"name": "oidc-config", "key": "oidc-issuer-client-id"},
        "OIDC-ISSUER-CLIENT-SECRET": {"name": "oidc-config", "key": "oidc-issuer-client-secret"},
        "OIDC-ISSUER-URL": {"name": "oidc-config", "key": "oidc-issuer-url"},
        "OIDC-CALLBACK-URL": {"name": "oidc-config", "key": "oidc-callback-url"},
        "COOKIE-SIGNING-KEY": {"name": "cookie-config", "key": "signing-key"},
        "COOKIE-ENCRYPTION-KEY": {"name": "cookie-config", "key": "encryption-key"},
    }
    for ref in env.values():  # every referenced key exists in the Secret the program creates
        assert ref["key"] in secret(ev, ref["name"]).get("stringData")
    used = set(re.findall(r"\$\(([^)]+)\)", " ".join(c["args"])))
    assert used == set(env)  # every $(VAR) in the args is defined, and nothing else
    for name in {ref["name"] for ref in env.values()}:
        assert ev.depends_on(deployment(ev), secret(ev, name))


def test_ca_volume_holds_the_file_the_args_name():
    ev = ev_for()
    c = container(ev)
    volume, _ = deployment(ev).get("spec.template.spec.volumes")
    assert volume == {"name": "ca", "secret": {"secretName": "k8sca", "items": [{"key": "ca", "path": "ca"}]}}
    mount, _ = c["volumeMounts"]
    assert mount == {"name": "ca", "mountPath": "/certa/", "readOnly": True}
    ca_file = next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--external-ca-file="))
    assert ca_file == mount["mountPath"] + volume["secret"]["items"][0]["path"]
    assert "ca" in secret(ev, volume["secret"]["secretName"]).get("stringData")


def test_service_selects_the_pods_and_targets_the_listen_port():
    ev = ev_for()
    svc, dep = service(ev), deployment(ev)
    assert svc.get("spec.type") == "ClusterIP"  # the controller's load balancer fronts it
    assert svc.get("spec.selector") == dep.get("spec.template.metadata.labels")
    [port] = svc.get("spec.ports")
    assert (port["port"], port["targetPort"], port["protocol"]) == (443, 9443, "TCP")
    assert port["targetPort"] in [p["containerPort"] for p in container(ev)["ports"]]
    assert f"--listen-address=0.0.0.0:{int(port['targetPort'])}" in container(ev)["args"]


# ------------------------------------------------------------------------------ ordering
def test_backend_does_not_wait_on_crossplane_and_crossplane_not_on_the_backend():
    ev = ev_for()
    crossplane = ev.one("klutch:crossplane:Crossplane")
    crossplane_all = [crossplane, *ev.descendants(crossplane)]
    kube_bind = component(ev)
    backend = [r for r in ev.descendants(kube_bind) if r.type != TEMPLATE] + ev.descendants(ev.one("klutch:edge:Edge"))
    assert deployment(ev) in backend and service(ev) in backend
    for r in backend:
        for x in crossplane_all:
            assert not ev.depends_on(r, x), f"{r.name} waits on {x.name}"
    for x in crossplane_all:
        assert not ev.depends_on(x, kube_bind)
        assert not ev.depends_on(x, deployment(ev))
        assert not ev.depends_on(x, ev.one("klutch:edge:Edge"))


def test_backend_namespace_comes_from_the_edge():
    ev = ev_for()
    ns = ev.k8s("Namespace", NS)
    for r in ev.descendants(component(ev)):
        if r.get("metadata.namespace") == NS:
            assert ev.depends_on(r, ns), r.name


# ------------------------------------------------------------------------------ outputs
def test_tenant_outputs():
    ev = ev_for()
    assert ev.output("backendHost") == HOST
    assert ev.output("backendUrl") == f"https://{HOST}"
    assert ev.output("exportUrl") == f"https://{HOST}/export"
    assert ev.output("bindNonInteractiveUrl") == f"https://{HOST}/bind-noninteractive"
    assert ev.output("konnectorImage") == "public.ecr.aws/w5n9a2g2/anynines/konnector:v1.3.0"
    assert ev.output("kubectlBindCommand") == (
        f"kubectl bind https://{HOST}/export --konnector-image=public.ecr.aws/w5n9a2g2/anynines/konnector:v1.3.0"
    )
    assert ev.output("bindingApis") == [
        {"group": "anynines.com", "resource": r}
        for r in ("postgresqlinstances", "servicebindings", "backups", "restores")
    ]
    assert ev.output("kubeBindCrdUrls") == list(RELEASE.kube_bind_crd_urls)
    assert ev.output("loadBalancerHostname") == MOCK_LB_HOSTNAME
    for name in ("backendHost", "exportUrl", "kubectlBindCommand", "bindingApis", "konnectorImage"):
        assert not ev.output_is_secret(name)


def _plain_strings(value, secret: bool = False):
    """(string, is it inside a Pulumi secret) for every string in raw inputs/outputs."""
    if rpc.is_rpc_secret(value):
        yield from _plain_strings(rpc.unwrap_rpc_secret(value), True)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _plain_strings(v, secret)
    elif isinstance(value, list):
        for v in value:
            yield from _plain_strings(v, secret)
    elif isinstance(value, str):
        yield value, secret


@pytest.mark.parametrize("overrides", [{}, {"backend": {"host": None}, "exposure": {"controller": "ingress-nginx"}}])
def test_secrets_never_plain_in_inputs_or_outputs(overrides):
    ev = ev_for(overrides)
    cookie_keys = list(secret(ev, "cookie-config").get("stringData").values())
    ca_key = [
        r.get("stringData")["tls.key"] for r in ev.kinds("Secret") if r.get("metadata.name") == "klutch-backend-ca"
    ]
    sensitive = [harness.OIDC_SECRET, *cookie_keys, *ca_key]
    for r in ev.resources:
        for text, is_secret in _plain_strings(r.raw_inputs):
            if any(s in text for s in sensitive):
                assert is_secret, f"{r.type} {r.name} has a secret in plain text"
    for name, value in ev.outputs.items():
        for text, is_secret in _plain_strings(value):
            if any(s in text for s in sensitive):
                assert is_secret, f"output {name} has a secret in plain text"
    assert ev.output_is_secret("kubeconfig")
    assert not any(harness.OIDC_SECRET in m for _, m in ev.logs)


# ------------------------------------------------------------------------------ validation
@pytest.mark.parametrize("services", [(), V100_SERVICES], ids=["0", "8"])
@pytest.mark.parametrize("version", ["1.30", "1.33", "1.35"])
def test_kube_bind_manifests_are_valid(services, version):
    ev = ev_for({"dataServices": harness.services(*services), "cluster": {"mode": "eks", "kubernetesVersion": version}})
    objs = [manifests.manifest(r) for r in ev.descendants(component(ev)) if manifests.is_manifest(r)]
    kinds = {o["kind"] for o in objs}
    assert kinds == {
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
        "Secret",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "APIServiceExportTemplate",
    }
    assert [p for o in objs for p in manifests.check(o, version)] == []


def test_manifest_check_catches_a_broken_deployment():
    obj = manifests.manifest(deployment(ev_for()))
    obj["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] = 7
    assert manifests.check(obj, "1.33")


# ------------------------------------------------------------------------------ stack files and config
def test_prod_stack_protects_crds_uses_production_acme_and_route53():
    ev = harness.run_stack_file("prod")
    assert ev.one("kubernetes:yaml/v2:ConfigGroup").protect is True
    assert ev.one("kubernetes:cert-manager.io/v1:Issuer").get("spec.acme.server") == catalog.ACME_SERVERS["letsencrypt"]
    assert ev.one("aws:route53/record:Record").get("name") == "klutch.example.com"
    assert {t.get("metadata.name") for t in ev.by_type(TEMPLATE)} == {
        "postgresqlinstances",
        "mongodbinstances",
        "servicebindings",
        "backups",
        "restores",
    }


def test_dev_stack_uses_staging_acme_and_no_protection():
    ev = harness.run_stack_file("dev")
    assert ev.one("kubernetes:yaml/v2:ConfigGroup").protect is False
    assert (
        ev.one("kubernetes:cert-manager.io/v1:Issuer").get("spec.acme.server")
        == catalog.ACME_SERVERS["letsencrypt-staging"]
    )
    assert not ev.by_type("aws:route53/record:Record")
    assert ev.output("exportUrl") == "https://klutch.dev.example.com/export"


def test_oidc_issuer_must_be_https():
    msg = harness.problems_of({"oidc": {"issuerUrl": "http://idp.example.com/realms/klutch"}})
    assert (
        "klutch-central:oidc.issuerUrl = 'http://idp.example.com/realms/klutch': must be an absolute https URL" in msg
    )


def test_oidc_client_secret_required_and_secret():
    assert (
        "oidc.clientSecret = <unset>: required secret; "
        "set it with `pulumi config set --secret --path 'oidc.clientSecret'"
        in harness.problems_of({"oidc": {"clientSecret": None}})
    )
    msg = harness.problems_of({}, secret_keys=("dataServices",))  # oidc stored in plain text
    assert "oidc.clientSecret = '[not shown]': is stored in plain text" in msg
    assert harness.OIDC_SECRET not in msg


def test_oidc_issuer_required():
    assert "klutch-central:oidc.issuerUrl = <unset>: required" in harness.problems_of({"oidc": {"issuerUrl": None}})


def test_a_changed_secret_rolls_the_backend_pod():
    """The backend reads its Secrets into env at start: the pod template carries their checksum."""
    assert kubebind.CHECKSUM_ANNOTATION == "klutch.anynines.com/secrets-checksum"

    def checksum_of(ev: Evaluation) -> str:
        annotations = deployment(ev).get("spec.template.metadata.annotations")
        assert not deployment(ev).is_secret("spec.template.metadata.annotations")
        return annotations["klutch.anynines.com/secrets-checksum"]

    base = checksum_of(ev_for())
    assert len(base) == 64 and int(base, 16) >= 0
    assert checksum_of(ev_for()) == base  # stable: no roll without a change
    assert checksum_of(ev_for({"oidc": {"clientSecret": "rotated-secret"}})) != base
    assert checksum_of(ev_for({"oidc": {"issuerUrl": "https://other-idp.example.com/realms/k"}})) != base
    assert checksum_of(ev_for({"backend": {"host": "other.example.com"}})) != base  # the callback URL


# ------------------------------------------------------------------------------ pure builders (no engine)
def test_backend_deployment_spec_without_the_engine():
    spec = kubebind.backend_deployment_spec(RELEASE, SERVER, ["--a", "--b"], "sum-1")
    labels = {"app": RELEASE.backend_name}
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"] == {"matchLabels": labels}
    assert spec["template"]["metadata"] == {"labels": labels, "annotations": {kubebind.CHECKSUM_ANNOTATION: "sum-1"}}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == RELEASE.backend_name
    assert pod["volumes"] == [
        {"name": "ca", "secret": {"secretName": kubebind.CA_SECRET, "items": [{"key": "ca", "path": "ca"}]}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
    ]
    [container] = pod["containers"]
    assert container["image"] == SERVER.image and container["args"] == ["--a", "--b"]
    assert {e["name"] for e in container["env"]} == set(kubebind.ENV_FROM_SECRETS)
    port = RELEASE.backend_listen_port
    assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/export", "port": port}
    assert container["volumeMounts"] == [
        {"name": "ca", "mountPath": kubebind.CA_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]


def test_backend_pod_is_restricted_and_mounts_its_token_explicitly():
    pod = kubebind.backend_deployment_spec(RELEASE, SERVER, [], "sum")["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,  # /tmp is an emptyDir
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["automountServiceAccountToken"] is True
    assert container["image"] == SERVER.image and container["imagePullPolicy"] == "Always"  # a tag: pull it again


def test_backend_service_account_mounts_no_token_by_default():
    account = ev_for().k8s("ServiceAccount", RELEASE.backend_name)
    assert account.get("automountServiceAccountToken") is False


def test_a_catalog_digest_pins_the_image_under_any_mirror():
    digest = "sha256:" + "ab" * 32
    server = dataclasses.replace(SERVER, image="registry.internal/klutch/kubebind-backend:v1.3.0", digest=digest)
    [container] = kubebind.backend_deployment_spec(RELEASE, server, [], "sum")["template"]["spec"]["containers"]
    assert container["image"] == f"registry.internal/klutch/kubebind-backend:v1.3.0@{digest}"
    assert container["imagePullPolicy"] == "IfNotPresent"  # a digest names one image
    assert "CKV_K8S_43" not in " ".join(kubebind.scanner_skips(server).values())


def test_scanner_skips_name_the_check_and_the_reason():
    assert deployment(ev_for()).get("metadata.annotations") == {
        "checkov.io/skip1": "CKV_K8S_35=the backend takes its OIDC client and cookie keys only as flags; "
        "args expand them from env",
        "checkov.io/skip2": "CKV_K8S_38=the backend manages tenants through the API with its ServiceAccount's token",
        "checkov.io/skip3": "CKV_K8S_43=the catalog has no digest for "
        "public.ecr.aws/w5n9a2g2/anynines/kubebind-backend:v1.3.0 (not resolvable offline); the tag is pinned",
    }


def tcp(port: int) -> dict:
    return {"protocol": "TCP", "port": port}


DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def test_backend_network_policy_in_from_the_controller_out_to_dns_api_server_and_issuer():
    policy = ev_for().k8s("NetworkPolicy", RELEASE.backend_name)
    assert policy.get("metadata.namespace") == NS
    assert policy.get("spec") == {
        "podSelector": {"matchLabels": {"app": RELEASE.backend_name}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}}}
                ],
                "ports": [tcp(9443)],
            }
        ],
        "egress": [
            DNS,
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/16"}}], "ports": [tcp(443), tcp(6443)]},  # EKS: the VPC
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [tcp(443)]},  # the issuer's port
        ],
    }


def test_backend_network_policy_for_an_in_cluster_idp_and_ingress_nginx():
    cfg = harness.parse(
        {
            "oidc": {"issuerUrl": "https://keycloak.example.com:8443/realms/klutch"},
            "networkPolicy": {
                "oidcIssuerNamespace": "keycloak",
                "oidcIssuerPort": 8080,
                "apiServerCidrs": ["10.2.0.0/28"],
            },
        }
    )
    spec = kubebind.backend_network_policy_spec(RELEASE, "ingress-nginx", cfg.network_policy)
    assert spec["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert spec["egress"][1:] == [
        {"to": [{"ipBlock": {"cidr": "10.2.0.0/28"}}], "ports": [tcp(443), tcp(6443)]},
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keycloak"}}}],
            "ports": [tcp(8080)],  # the IdP pod's port, not the issuer URL's
        },
    ]


def test_backend_service_spec_targets_the_listen_port():
    spec = kubebind.backend_service_spec(RELEASE)
    assert spec["type"] == "ClusterIP" and spec["selector"] == {"app": RELEASE.backend_name}
    assert spec["ports"] == [
        {
            "name": RELEASE.backend_name,
            "protocol": "TCP",
            "port": catalog.BACKEND_SERVICE_PORT,
            "targetPort": RELEASE.backend_listen_port,
        }
    ]


def test_kubernetes_names_are_spelled_once():
    assert names.api_group("gateway.networking.k8s.io/v1") == "gateway.networking.k8s.io"
    assert names.api_version("klutch.anynines.com", "v1alpha1") == "klutch.anynines.com/v1alpha1"
    assert names.qualified_resource("postgresqlinstances", "anynines.com") == "postgresqlinstances.anynines.com"
    assert names.qualified_resource("secrets", "") == "secrets"
    assert names.cluster_role_ref("x") == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "x"}
