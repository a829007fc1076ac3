"""Layer 3: Crossplane, provider-anynines, the dataservices Configuration and the ProviderConfigs."""

from __future__ import annotations

from typing import Any

import pytest
from pulumi.runtime import rpc

from klutch import catalog
from klutch.central import crossplane
from klutch.config.reader import ConfigError
from klutch.offline import manifests
from klutch.offline.curated import mock_kubeconfig
from klutch.offline.mockengine import Evaluation, Registration
from tests import harness

NS = harness.NS
PROVIDER = "kubernetes:pkg.crossplane.io/v1:Provider"
CONFIGURATION = "kubernetes:pkg.crossplane.io/v1:Configuration"
FUNCTION = "kubernetes:pkg.crossplane.io/v1:Function"
DRC = "kubernetes:pkg.crossplane.io/v1beta1:DeploymentRuntimeConfig"
RELEASE = "kubernetes:helm.sh/v3:Release"
PROVIDER_CONFIG = "kubernetes:dataservices.anynines.com/v1:ProviderConfig"
V100_SERVICES = ("redis", "messaging", "logme2", "prometheus", "search", "mongodb", "mariadb", "postgresql")
WAIT = {"pulumi.com/waitFor": "condition=Healthy"}
PACKAGE_TIMEOUTS = {"create": "20m", "update": "20m", "delete": "10m"}


# ------------------------------------------------------------------------------- helpers
def layer(ev: Evaluation) -> list[Registration]:
    return ev.descendants(ev.one("klutch:crossplane:Crossplane", "crossplane"))


def layer_manifests(ev: Evaluation) -> list[dict[str, Any]]:
    return [manifests.manifest(r) for r in layer(ev) if manifests.is_manifest(r)]


def release(ev: Evaluation) -> Registration:
    return ev.one(RELEASE, "crossplane")


def node_group(ev: Evaluation) -> Registration:
    return ev.one("aws:eks/nodeGroup:NodeGroup")


def plain_strings(value: Any) -> list[str]:
    """Every string in raw inputs/outputs that is NOT inside a Pulumi secret."""
    if rpc.is_rpc_secret(value):
        return []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *plain_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in plain_strings(v)]
    return [value] if isinstance(value, str) else []


def expected_provider_config(svc: str, endpoint: catalog.ProviderEndpoint, url: str) -> dict[str, Any]:
    ref = {"namespace": "crossplane-system", "name": f"{svc}-{endpoint.suffix}-creds"}
    return {
        "apiVersion": "dataservices.anynines.com/v1",
        "kind": "ProviderConfig",
        "metadata": {"name": f"{svc}-{endpoint.suffix}"},
        "spec": {
            "url": url,
            "providerCredentials": {
                "source": "Secret",
                "username": {"secretRef": {**ref, "key": "username"}},
                "password": {"secretRef": {**ref, "key": "password"}},
            },
        },
    }


@pytest.fixture(scope="module")
def ev() -> Evaluation:
    return harness.run()  # dev, postgresql


@pytest.fixture(scope="module")
def all_eight() -> Evaluation:
    return harness.run({"dataServices": harness.services(*V100_SERVICES), "cluster": {"kubernetesVersion": "1.35"}})


@pytest.fixture(scope="module")
def prod() -> Evaluation:
    return harness.run({"environment": "prod"})


# ------------------------------------------------------------------------------- structure
def package(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A Crossplane package object as the program emits it: it waits until the package is healthy."""
    metadata = {"name": name, "annotations": WAIT}
    return {"apiVersion": "pkg.crossplane.io/v1", "kind": kind, "metadata": metadata, "spec": spec}


def test_one_component_with_every_kubernetes_object_as_child_on_the_cluster_provider(ev):
    component = ev.one("klutch:crossplane:Crossplane", "crossplane")
    children = layer(ev)
    assert {r.type for r in children} == {
        "kubernetes:core/v1:Namespace",
        RELEASE,
        DRC,
        PROVIDER,
        CONFIGURATION,
        "kubernetes:core/v1:Secret",
        PROVIDER_CONFIG,
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
    }
    assert all(r.parent == component.urn for r in children)
    cluster_provider = ev.one("pulumi:providers:kubernetes", "cluster-k8s")
    assert {r.provider_urn for r in children} == {cluster_provider.urn}
    # no Kubernetes object anywhere in this layer may fall back to the default provider
    assert not [r for r in ev.by_prefix("kubernetes:") if not r.provider]


def test_namespace_is_explicit_and_enforces_the_charts_pod_security_level(ev):
    ns = ev.k8s("Namespace", "crossplane-system")
    psa = "pod-security.kubernetes.io/"
    labels = {f"{psa}enforce": "baseline", f"{psa}warn": "restricted", f"{psa}audit": "restricted"}
    assert ns.inputs == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "crossplane-system", "labels": labels},
    }


def test_the_provider_reaches_only_dns_the_api_server_and_its_endpoints(ev):
    policy = ev.k8s("NetworkPolicy", "provider-anynines")
    assert policy.inputs["metadata"] == {"name": "provider-anynines", "namespace": "crossplane-system"}
    assert policy.inputs["spec"] == {
        "podSelector": {"matchLabels": {"pkg.crossplane.io/provider": "provider-anynines"}},
        "policyTypes": ["Egress"],  # Crossplane's own pods and the functions pull packages: left open
        "egress": [
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
            # EKS: the API server's private endpoints are in the VPC
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/16"}}], "ports": [tcp(443), tcp(6443)]},
            # brokers named by host: their port, anywhere (NetworkPolicies match addresses, not names)
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [tcp(3000)]},
        ],
    }


def tcp(port: int) -> dict[str, Any]:
    return {"protocol": "TCP", "port": port}


def test_provider_network_policy_of_ip_endpoints_and_configured_cidrs():
    raw = {
        "dataServices": {
            "postgresql": {
                "serviceBroker": {"url": "https://192.0.2.10", "username": "u", "password": "p"},
                "backupManager": {"url": "http://backup.example.com", "username": "u", "password": "p"},
            }
        },
        "networkPolicy": {"apiServerCidrs": ["10.1.0.0/24"], "dataServiceCidrs": ["198.51.100.0/24"]},
    }
    spec = harness.run(raw).k8s("NetworkPolicy", "provider-anynines").inputs["spec"]
    assert spec["egress"][1:] == [
        {"to": [{"ipBlock": {"cidr": "10.1.0.0/24"}}], "ports": [tcp(443), tcp(6443)]},
        {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [tcp(443)]},  # an IP: that host only
        {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [tcp(80)]},  # the scheme's port
    ]


def test_release_pins_the_chart_and_waits(ev):
    r = release(ev)
    assert r.get("name") == "crossplane"
    assert r.get("chart") == "crossplane"
    assert r.get("repositoryOpts") == {"repo": "https://charts.crossplane.io/stable"}
    assert r.get("version") == "1.20.11" == catalog.CHARTS["crossplane"].version
    assert r.get("namespace") == "crossplane-system"
    assert r.get("values") == {"args": ["--enable-ssa-claims"]}
    assert r.get("timeout") == 600
    assert not r.get("skipAwait")  # Pulumi waits until Crossplane's pods are ready
    assert r.get("atomic") is True
    assert not r.get("createNamespace")  # the Namespace is an explicit object
    assert ev.depends_on(r, ev.k8s("Namespace", "crossplane-system"))


@pytest.mark.parametrize(("given", "chart"), [("1.17.3", "1.17.3"), ("v1.15.0", "1.15.0")])
def test_release_version_and_output_follow_config(given, chart):
    ev = harness.run({"crossplaneVersion": given})
    assert release(ev).get("version") == chart
    assert ev.output("crossplaneVersion") == chart


def test_deployment_runtime_config_is_the_manual_procedures(ev):
    drc = ev.one(DRC)
    assert drc.inputs == {
        "apiVersion": "pkg.crossplane.io/v1beta1",
        "kind": "DeploymentRuntimeConfig",
        "metadata": {"name": "provider-anynines"},
        "spec": {
            "deploymentTemplate": {
                "spec": {
                    "selector": {},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "package-runtime",
                                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8081}},
                                }
                            ]
                        }
                    },
                }
            }
        },
    }
    assert ev.depends_on(drc, release(ev))


def test_provider_installs_the_release_package_and_waits_for_healthy(ev):
    p = ev.one(PROVIDER)
    assert p.inputs == package(
        "Provider",
        "provider-anynines",
        {
            "package": "public.ecr.aws/w5n9a2g2/anynines/provider-anynines:v1.2.0",
            "runtimeConfigRef": {"name": "provider-anynines"},
        },
    )
    assert p.custom_timeouts == PACKAGE_TIMEOUTS
    assert ev.depends_on(p, ev.one(DRC))


def test_configuration_installs_dataservices_after_the_provider(ev):
    c = ev.one(CONFIGURATION)
    assert c.inputs == package(
        "Configuration", "anynines-dataservices", {"package": "public.ecr.aws/w5n9a2g2/anynines/dataservices:v1.2.0"}
    )
    assert c.custom_timeouts == PACKAGE_TIMEOUTS
    assert ev.one(PROVIDER).urn in c.dependencies
    assert not ev.depends_on(ev.one(PROVIDER), c)


def test_v1_0_0_needs_no_functions(ev):
    assert ev.by_type(FUNCTION) == []


# ------------------------------------------------------------------------------- data services
@pytest.mark.parametrize(
    "services",
    [(), ("postgresql",), ("mongodb", "mariadb", "search"), V100_SERVICES],
    ids=["none", "one", "several", "all-eight"],
)
def test_secrets_and_provider_configs_per_enabled_service(services, request):
    ev = (
        request.getfixturevalue("all_eight")
        if services == V100_SERVICES
        else harness.run({"dataServices": harness.services(*services) if services else None})
    )
    names = {f"{s}-{e}" for s in services for e in ("service-broker", "backup-manager")}
    assert {r.k8s_name for r in ev.kinds("ProviderConfig")} == names
    assert {r.k8s_name for r in ev.kinds("Secret") if r.get("metadata.namespace") == "crossplane-system"} == {
        f"{n}-creds" for n in names
    }
    assert ev.output("enabledDataServices") == sorted(services)
    for svc in services:
        for endpoint, kind, password in (
            (catalog.SERVICE_BROKER, "broker", harness.BROKER_PASSWORD),
            (catalog.BACKUP_MANAGER, "backup", harness.BACKUP_PASSWORD),
        ):
            pc = ev.k8s("ProviderConfig", f"{svc}-{endpoint.suffix}")
            assert pc.inputs == expected_provider_config(svc, endpoint, f"http://{svc}-{kind}.example.com:3000")
            secret = ev.k8s("Secret", f"{svc}-{endpoint.suffix}-creds", "crossplane-system")
            assert secret.inputs == {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"{svc}-{endpoint.suffix}-creds", "namespace": "crossplane-system"},
                "type": "Opaque",
                "stringData": {"username": f"{svc}-user", "password": password},
            }
            assert secret.is_secret("stringData.password")
            assert secret.is_secret("stringData.username")
            assert ev.depends_on(pc, secret)


def test_no_password_is_plain_anywhere(all_eight):
    for r in all_eight.resources:
        plain = plain_strings(r.raw_inputs)
        assert harness.BROKER_PASSWORD not in plain and harness.BACKUP_PASSWORD not in plain, r.name
    plain_outputs = plain_strings(all_eight.outputs)
    assert harness.BROKER_PASSWORD not in plain_outputs and harness.BACKUP_PASSWORD not in plain_outputs


def test_dependency_chain_from_provider_config_to_the_node_group(ev):
    pc = ev.k8s("ProviderConfig", "postgresql-service-broker")
    provider, rel = ev.one(PROVIDER), release(ev)
    assert provider.urn in pc.dependencies  # its CRD comes from the provider package
    assert ev.depends_on(pc, provider)
    assert ev.depends_on(provider, rel)
    assert ev.depends_on(rel, node_group(ev))  # through the cluster's Kubernetes provider
    assert ev.depends_on(ev.one(CONFIGURATION), provider)


def test_every_provider_config_waits_for_the_provider(all_eight):
    provider = all_eight.one(PROVIDER)
    pcs = all_eight.kinds("ProviderConfig")
    assert len(pcs) == 16
    assert all(provider.urn in pc.dependencies for pc in pcs)


def test_no_dependency_between_crossplane_and_the_edge(ev):
    ours = [ev.one("klutch:crossplane:Crossplane"), *layer(ev)]
    edge_component = ev.one("klutch:edge:Edge")
    theirs = [edge_component, *ev.descendants(edge_component)]
    for a in ours:
        for b in theirs:
            assert not ev.depends_on(a, b), (a.name, b.name)
            assert not ev.depends_on(b, a), (b.name, a.name)


def test_existing_cluster_mode_builds_the_same_layer():
    ev = harness.run(
        {"cluster": {"mode": "existing"}, "network": None, "kubeconfig": mock_kubeconfig("https://k.example.com:6443")},
        secret_keys=(*harness.BASE_SECRET_KEYS, "kubeconfig"),
    )
    assert ev.by_type("aws:eks/nodeGroup:NodeGroup") == []
    assert ev.depends_on(ev.k8s("ProviderConfig", "postgresql-backup-manager"), release(ev))
    assert ev.one(PROVIDER).provider_urn == ev.one("pulumi:providers:kubernetes").urn


# ------------------------------------------------------------------------------- prod safety
# The ProviderConfigs and their Secrets too: deleting one (a service key removed or misspelt) cuts
# existing instances off their broker and cannot be undone once Kubernetes set its deletionTimestamp.
PROTECTED = {
    "kubernetes:core/v1:Namespace",
    RELEASE,
    PROVIDER,
    CONFIGURATION,
    "kubernetes:core/v1:Secret",
    "kubernetes:dataservices.anynines.com/v1:ProviderConfig",
}


def test_prod_protects_what_would_delete_tenants_data(prod):
    protected = {r.type for r in layer(prod) if r.protect}
    assert protected == PROTECTED
    assert all(not r.retain_on_delete for r in layer(prod))


def test_dev_protects_nothing(ev):
    assert [r.name for r in layer(ev) if r.protect] == []


def test_prod_with_protect_off_warns_and_protects_nothing():
    ev = harness.run({"environment": "prod", "protect": False})
    assert [r.name for r in layer(ev) if r.protect] == []
    assert any("protect is false" in w for w in ev.warnings())


def test_committed_prod_stack_protects_and_enables_its_services():
    ev = harness.run_stack_file("prod")
    assert {r.type for r in layer(ev) if r.protect} == PROTECTED
    assert ev.output("enabledDataServices") == ["mongodb", "postgresql"]


# ------------------------------------------------------------------------------- outputs
def test_outputs(ev):
    assert ev.output("crossplaneVersion") == "1.20.11"
    assert ev.output("klutchRelease") == "v1.0.0"
    assert ev.output("enabledDataServices") == ["postgresql"]
    assert ev.output("providerConfigHealthCheck") == "kubectl get providerconfigs.dataservices.anynines.com"
    for name in ("crossplaneVersion", "klutchRelease", "enabledDataServices", "providerConfigHealthCheck"):
        assert not ev.output_is_secret(name)


# ------------------------------------------------------------------------------- manifests
def test_every_manifest_of_the_layer_passes_validation(ev, all_eight):
    for evaluation, version in ((ev, catalog.DEFAULT_KUBERNETES_VERSION), (all_eight, "1.35")):
        objects = layer_manifests(evaluation)
        assert {o["kind"] for o in objects} == {
            "Namespace",
            "NetworkPolicy",
            "DeploymentRuntimeConfig",
            "Provider",
            "Configuration",
            "Secret",
            "ProviderConfig",
        }
        assert [p for o in objects for p in manifests.check(o, version)] == []


def test_validation_would_catch_a_broken_manifest(ev):
    secret = manifests.manifest(ev.k8s("Secret", "postgresql-service-broker-creds"))
    assert manifests.check({**secret, "strinData": {}}, "1.33")  # strict schema: unknown field
    pc = manifests.manifest(ev.k8s("ProviderConfig", "postgresql-service-broker"))
    assert manifests.check({**pc, "metadata": {"name": "Postgresql_Broker"}}, "1.33")


# ------------------------------------------------------------------------------- committed dev stack
def test_committed_dev_stack_shows_the_whole_chain():
    ev = harness.run_stack_file("dev")
    pc = ev.k8s("ProviderConfig", "postgresql-service-broker")
    assert pc.get("spec.url") == "http://postgresql-service-broker.dev.example.com:3000"
    assert ev.depends_on(pc, ev.one(PROVIDER))
    assert ev.depends_on(ev.one(PROVIDER), release(ev))
    assert ev.depends_on(release(ev), node_group(ev))
    secret = ev.k8s("Secret", "postgresql-backup-manager-creds", "crossplane-system")
    assert secret.get("stringData.username") == "admin"
    assert secret.is_secret("stringData.password") and secret.is_secret("stringData.username")
    assert ev.output("enabledDataServices") == ["postgresql"]
    assert [r.name for r in layer(ev) if r.protect] == []


# ------------------------------------------------------------------------------- bad config
def _error(overrides: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as e:
        harness.run(overrides, **kwargs)
    return str(e.value)


def test_bad_config_fails_before_any_resource_with_every_problem():
    message = _error(
        {
            "crossplaneVersion": "2.0.0",
            "dataServices": {
                **harness.services("postgresql"),
                "postgres": harness.services("postgresql")["postgresql"],
            },
        }
    )
    assert f"{NS}:crossplaneVersion = '2.0.0'" in message
    assert f"{NS}:dataServices.postgres" in message and "valid: " + ", ".join(V100_SERVICES) in message
    assert "(2 problems)" in message


# ------------------------------------------------------------------------------- a release with functions
@pytest.fixture
def function_release() -> catalog.KlutchRelease:
    """Klutch v1.5.0: a composition Function, ProviderConfig.spec.serviceType, keyvalue instead of redis."""
    return catalog.RELEASES["v1.5.0"]


def test_release_functions_and_service_type_are_emitted(function_release):
    ev = harness.run({"klutchRelease": function_release.name, "dataServices": harness.services("keyvalue")})
    fn = ev.one(FUNCTION)
    assert fn.inputs == package("Function", "function-patch-and-transform", {"package": function_release.functions[0]})
    assert fn.custom_timeouts == PACKAGE_TIMEOUTS
    assert ev.depends_on(fn, release(ev))
    assert fn.urn in ev.one(CONFIGURATION).dependencies
    assert ev.one(CONFIGURATION).get("spec.package") == function_release.configuration_package
    assert ev.one(PROVIDER).get("spec.package") == function_release.provider_package
    assert ev.k8s("ProviderConfig", "keyvalue-service-broker").get("spec.serviceType") == "servicebroker"
    assert ev.k8s("ProviderConfig", "keyvalue-backup-manager").get("spec.serviceType") == "backupmanager"
    assert ev.output("klutchRelease") == function_release.name
    assert [p for o in layer_manifests(ev) for p in manifests.check(o, "1.33")] == []


def test_v1_0_0_sets_no_service_type(ev):
    assert all(pc.get("spec.serviceType") is None for pc in ev.kinds("ProviderConfig"))


def test_release_decides_the_valid_services_and_crossplane_range(function_release):
    message = _error(
        {
            "klutchRelease": function_release.name,
            "crossplaneVersion": "1.16.0",
            "dataServices": harness.services("redis"),
        }
    )
    assert f"{NS}:dataServices.redis = '{{...}}': is keyvalue in Klutch v1.5.0; valid: keyvalue," in message
    assert f"{NS}:crossplaneVersion = '1.16.0'" in message and "from 1.17.1 to 1.20.x" in message
    assert "1.17.1 to 1.20.x" in _error({"klutchRelease": "v1.5.0", "crossplaneVersion": "1.17.0"})
    harness.parse({"klutchRelease": "v1.5.0", "crossplaneVersion": "1.17.1", "dataServices": None})
    with pytest.raises(ConfigError):
        harness.parse({"dataServices": harness.services("keyvalue")})  # v1.0.0 has no keyvalue


# ------------------------------------------------------------------------------- config of this layer
def _problems(overrides: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
    with pytest.raises(ConfigError) as e:
        harness.parse(overrides, **kwargs)
    return [str(p) for p in e.value.problems]


def test_zero_data_services_is_valid():
    assert harness.parse({"dataServices": None}).data_services == ()
    assert harness.parse({"dataServices": {}}).data_services == ()


def test_data_services_parse_into_endpoints_in_name_order():
    cfg = harness.parse({"dataServices": harness.services("search", "mariadb")})
    assert [s.key for s in cfg.data_services] == ["mariadb", "search"]
    search = cfg.data_services[1]
    assert search.service is catalog.DATA_SERVICES["search"]
    assert search.service_broker.url == "http://search-broker.example.com:3000"
    assert search.backup_manager.password.reveal() == harness.BACKUP_PASSWORD
    assert search.endpoint(catalog.SERVICE_BROKER) is search.service_broker
    assert harness.BROKER_PASSWORD not in repr(cfg)


def test_unknown_service_lists_the_valid_ones():
    assert _problems({"dataServices": harness.services("postgres")}) == [
        f"{NS}:dataServices.postgres = '{{...}}': unknown data service for Klutch v1.0.0; valid: "
        + ", ".join(V100_SERVICES)
    ]


def test_missing_password_says_how_to_set_it():
    services = harness.services("postgresql")
    del services["postgresql"]["backupManager"]["password"]
    assert _problems({"dataServices": services}) == [
        f"{NS}:dataServices.postgresql.backupManager.password = <unset>: required secret; set it with "
        "`pulumi config set --secret --path 'dataServices.postgresql.backupManager.password' <value>`"
    ]


def test_plain_text_passwords_are_rejected():
    problems = _problems(secret_keys=("oidc",))
    assert len(problems) == 2
    for kind in ("serviceBroker", "backupManager"):
        assert any(
            p.startswith(f"{NS}:dataServices.postgresql.{kind}.password = '[not shown]': is stored in plain text")
            for p in problems
        )
    assert not any(harness.BROKER_PASSWORD in p or harness.BACKUP_PASSWORD in p for p in problems)


@pytest.mark.parametrize("url", ["ftp://broker.example.com", "broker.example.com:3000", "http://", ""])
def test_bad_url(url):
    services = harness.services("postgresql")
    services["postgresql"]["serviceBroker"]["url"] = url
    problems = _problems({"dataServices": services})
    assert len(problems) == 1
    assert problems[0].startswith(f"{NS}:dataServices.postgresql.serviceBroker.url")
    assert problems[0].endswith(f"= {url!r}: must be an absolute http or https URL")


def test_missing_endpoint_block_is_one_problem():
    services = harness.services("mongodb")
    del services["mongodb"]["serviceBroker"]
    assert _problems({"dataServices": services}) == [
        f"{NS}:dataServices.mongodb.serviceBroker = <unset>: "
        "required: an object with url, username and password (secret)"
    ]


def test_unknown_keys_and_empty_username_inside_an_endpoint():
    services = harness.services("mongodb")
    services["mongodb"]["backupManager"]["user"] = "x"
    services["mongodb"]["serviceBroker"]["username"] = " "
    problems = _problems({"dataServices": services})
    assert len(problems) == 2
    assert any(p.startswith(f"{NS}:dataServices.mongodb.backupManager.user") and "unknown key" in p for p in problems)
    assert any(p.startswith(f"{NS}:dataServices.mongodb.serviceBroker.username") for p in problems)


@pytest.mark.parametrize("version", ["2.0.0", "1.14.0", "1.21.0", "latest", "1.20"])
def test_unsupported_crossplane_versions(version):
    problems = _problems({"crossplaneVersion": version})
    assert len(problems) == 1
    assert problems[0].startswith(f"{NS}:crossplaneVersion = '{version}'")
    assert "from 1.15 to 1.20.x" in problems[0] and "Crossplane 2 is not supported" in problems[0]


@pytest.mark.parametrize(("version", "parsed"), [("1.15.0", "1.15.0"), ("1.20.11", "1.20.11"), ("v1.19.2", "1.19.2")])
def test_supported_crossplane_versions(version, parsed):
    assert harness.parse({"crossplaneVersion": version}).crossplane_version == parsed


# ------------------------------------------------------------------------------ pure builders (no engine)
def test_provider_config_spec_without_the_engine():
    spec = crossplane.provider_config_spec("http://pg-broker.example.com:3000", "pg-broker-creds", None)
    namespace = catalog.CHARTS["crossplane"].namespace
    assert spec == {
        "url": "http://pg-broker.example.com:3000",
        "providerCredentials": {
            "source": "Secret",
            "username": {"secretRef": {"namespace": namespace, "name": "pg-broker-creds", "key": "username"}},
            "password": {"secretRef": {"namespace": namespace, "name": "pg-broker-creds", "key": "password"}},
        },
    }
    assert crossplane.provider_config_spec("u", "s", "broker")["serviceType"] == "broker"


def test_runtime_config_probes_the_provider_health_endpoint():
    [container] = crossplane.runtime_config_spec()["deploymentTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == catalog.PACKAGE_RUNTIME_CONTAINER
    assert container["readinessProbe"]["httpGet"] == {
        "path": catalog.PROVIDER_HEALTH_PATH,
        "port": catalog.PROVIDER_HEALTH_PORT,
    }
