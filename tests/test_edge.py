"""The edge: cert-manager, the ingress/gateway controller, TLS (ACME or self-signed CA), host and DNS."""

from __future__ import annotations

import json
from functools import cache

import pytest

from klutch import catalog
from klutch.central import edge
from klutch.offline import manifests
from klutch.offline.curated import MOCK_LB_HOSTNAME, PLACEHOLDER_CA_PEM, mock_kubeconfig
from klutch.offline.mockengine import Evaluation
from tests import harness

HOST = harness.base_raw()["backend"]["host"]
ZONE = "Z0123456789ABCDEFGHIJ"
RELEASE = catalog.RELEASES["v1.0.0"]
CERT_MANAGER = "kubernetes:cert-manager.io/v1"
GATEWAY_API = "kubernetes:gateway.networking.k8s.io/v1"

SCENARIOS = {
    "envoy": {},
    "envoy-route53": {"backend": {"route53ZoneId": ZONE}, "exposure": {"acmeServer": "letsencrypt"}},
    "envoy-self-signed": {"backend": {"host": None}},
    "nginx": {"exposure": {"controller": "ingress-nginx"}},
    "nginx-route53": {"exposure": {"controller": "ingress-nginx"}, "backend": {"route53ZoneId": ZONE}},
    "nginx-self-signed": {"exposure": {"controller": "ingress-nginx"}, "backend": {"host": None}},
}


@cache
def scenario(key: str) -> Evaluation:
    return harness.run(json.loads(json.dumps(SCENARIOS[key])))


def release(ev: Evaluation, key: str):
    return ev.one("kubernetes:helm.sh/v3:Release", f"edge-{key}")


def edge_component(ev: Evaluation):
    return ev.one("klutch:edge:Edge")


def issuer(ev: Evaluation):
    return ev.one(f"{CERT_MANAGER}:Issuer")


def gateway(ev: Evaluation):
    return ev.one(f"{GATEWAY_API}:Gateway")


def ingress(ev: Evaluation):
    return ev.one("kubernetes:networking.k8s.io/v1:Ingress")


def backend_service(ev: Evaluation):
    return ev.k8s("Service", RELEASE.backend_name, RELEASE.backend_namespace)


# ------------------------------------------------------------------------------ charts
@pytest.mark.parametrize("key", ["envoy", "nginx"])
def test_charts_are_pinned_from_the_catalog(key):
    ev = scenario(key)
    controller = "envoy-gateway" if key == "envoy" else "ingress-nginx"
    for chart_key in ("cert-manager", controller):
        rel, chart = release(ev, chart_key), catalog.CHARTS[chart_key]
        assert rel.get("name") == chart_key
        assert rel.get("chart") == chart.chart
        assert rel.get("version") == chart.version
        assert rel.get("namespace") == chart.namespace
        assert not rel.get("createNamespace")  # an explicit Namespace object, removed by `pulumi destroy`
        ns = ev.k8s("Namespace", chart.namespace)
        assert ns.urn in rel.property_dependencies["namespace"]
        assert rel.get("timeout") == chart.timeout_seconds
        assert rel.get("repositoryOpts") == ({"repo": chart.repo} if chart.repo else None)
    other = "ingress-nginx" if key == "envoy" else "envoy-gateway"
    assert not [r for r in ev.by_type("kubernetes:helm.sh/v3:Release") if r.name == f"edge-{other}"]


def test_envoy_gateway_chart_is_the_oci_one():
    rel = release(scenario("envoy"), "envoy-gateway")
    assert rel.get("chart") == "oci://docker.io/envoyproxy/gateway-helm"
    assert rel.get("version").startswith("v1.7.")
    assert rel.get("namespace") == "envoy-gateway-system"


def test_cert_manager_installs_its_crds_and_keeps_them():
    values = release(scenario("nginx"), "cert-manager").get("values")
    assert values == {"crds": {"enabled": True, "keep": True}}  # no Gateway API config without a gateway
    assert "installCRDs" not in values


def test_cert_manager_enables_gateway_api_after_the_gateway_api_crds_exist():
    ev = scenario("envoy")
    cert_manager = release(ev, "cert-manager")
    assert cert_manager.get("values.config") == {
        "apiVersion": "controller.config.cert-manager.io/v1alpha1",
        "kind": "ControllerConfiguration",
        "enableGatewayAPI": True,
    }
    assert cert_manager.get("values.crds.enabled") is True
    # the envoy-gateway chart brings the Gateway API CRDs; cert-manager must start after them
    assert ev.depends_on(cert_manager, release(ev, "envoy-gateway"))
    assert not ev.depends_on(release(ev, "envoy-gateway"), cert_manager)


def test_ingress_nginx_values_nlb_and_big_cookie_buffers():
    values = release(scenario("nginx"), "ingress-nginx").get("values")
    assert values["controller"]["service"]["type"] == "LoadBalancer"
    assert values["controller"]["service"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-backend-protocol": "tcp",
        "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled": "true",
    }
    assert values["controller"]["config"]["proxy-buffer-size"] == "16k"
    assert values["controller"]["ingressClassResource"]["name"] == "nginx"
    assert values["fullnameOverride"] == "ingress-nginx"  # fixes the controller Service's name the program reads


def test_ingress_nginx_is_warned_about():
    assert any("ingress-nginx' is retired upstream" in w for w in scenario("nginx").warnings())
    assert not any("retired upstream" in w for w in scenario("envoy").warnings())


# ------------------------------------------------------------------------------ envoy gateway
def test_gateway_class_envoy_proxy_and_nlb_annotations():
    ev = scenario("envoy")
    proxy = ev.one("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy")
    cls = ev.one(f"{GATEWAY_API}:GatewayClass")
    assert cls.get("spec.controllerName") == "gateway.envoyproxy.io/gatewayclass-controller"
    ref = cls.get("spec.parametersRef")
    assert ref == {
        "group": "gateway.envoyproxy.io",
        "kind": "EnvoyProxy",
        "name": proxy.get("metadata.name"),
        "namespace": proxy.get("metadata.namespace"),
    }
    assert proxy.get("metadata.namespace") == "envoy-gateway-system"
    service = proxy.get("spec.provider.kubernetes.envoyService")
    assert proxy.get("spec.provider.type") == "Kubernetes"
    assert service["type"] == "LoadBalancer"
    assert service["annotations"] == dict(catalog.AWS_NLB_SERVICE_ANNOTATIONS)
    assert service["name"] == edge.ENVOY_PROXY
    for r in (proxy, cls, gateway(ev)):
        assert ev.depends_on(r, release(ev, "envoy-gateway"))  # the chart brings their CRDs


def test_gateway_listeners_tls_and_issuer_annotation():
    ev = scenario("envoy")
    gw, iss = gateway(ev), issuer(ev)
    assert gw.get("metadata.namespace") == RELEASE.backend_namespace
    assert gw.get("spec.gatewayClassName") == ev.one(f"{GATEWAY_API}:GatewayClass").get("metadata.name")
    listeners = {listener["name"]: listener for listener in gw.get("spec.listeners")}
    assert listeners["http"] == {
        "name": "http",
        "protocol": "HTTP",
        "port": 80,
        "hostname": HOST,
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }
    https = listeners["https"]
    assert (https["protocol"], https["port"], https["hostname"]) == ("HTTPS", 443, HOST)
    assert https["tls"] == {
        "mode": "Terminate",
        "certificateRefs": [{"group": "", "kind": "Secret", "name": edge.TLS_SECRET}],
    }
    # the annotation names the Issuer that exists (the manual procedure's letsencrypt-prod vs letsencrypt bug)
    assert gw.get("metadata.annotations")["cert-manager.io/issuer"] == iss.get("metadata.name")
    assert iss.get("metadata.namespace") == gw.get("metadata.namespace")  # an Issuer serves its own namespace
    assert gw.get("metadata.annotations")["pulumi.com/waitFor"] == "jsonpath={.status.addresses[0].value}"
    assert gw.custom_timeouts == {"create": "15m", "update": "15m"}


def test_http_route_reaches_the_backend_service_and_http_redirects():
    ev = scenario("envoy")
    gw, svc = gateway(ev), backend_service(ev)
    route = ev.k8s("HTTPRoute", RELEASE.backend_name, RELEASE.backend_namespace)
    parent = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": gw.get("metadata.name"),
        "namespace": gw.get("metadata.namespace"),
    }
    assert route.get("spec.parentRefs") == [{**parent, "sectionName": "https"}]
    assert route.get("spec.hostnames") == [HOST]
    [rule] = route.get("spec.rules")
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    [ref] = rule["backendRefs"]
    assert ref["name"] == svc.get("metadata.name")
    assert ref["port"] in [p["port"] for p in svc.get("spec.ports")]
    assert route.get("metadata.namespace") == svc.get("metadata.namespace")  # no ReferenceGrant needed

    redirect = ev.k8s("HTTPRoute", f"{RELEASE.backend_name}-https-redirect", RELEASE.backend_namespace)
    assert redirect.get("spec.parentRefs") == [{**parent, "sectionName": "http"}]
    assert redirect.get("spec.hostnames") == [HOST]
    assert redirect.get("spec.rules") == [
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
    ]
    listener_names = {listener["name"] for listener in gw.get("spec.listeners")}
    assert {"http", "https"} <= listener_names


def test_acme_issuer_solves_http01_through_the_gateway():
    ev = scenario("envoy")
    gw = gateway(ev)
    acme = issuer(ev).get("spec.acme")
    assert acme["server"] == catalog.ACME_SERVERS["letsencrypt-staging"]  # the default
    assert acme["email"] == "ops@example.com"
    assert acme["privateKeySecretRef"] == {"name": f"{edge.ISSUER_NAME}-acme-account"}
    [solver] = acme["solvers"]
    [ref] = solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert (ref["name"], ref["namespace"], ref["kind"], ref["sectionName"]) == (
        gw.get("metadata.name"),
        gw.get("metadata.namespace"),
        "Gateway",
        "http",
    )


def test_acme_server_per_stack():
    assert issuer(scenario("envoy-route53")).get("spec.acme.server") == "https://acme-v02.api.letsencrypt.org/directory"
    custom = "https://acme.example.com/directory"
    ev = harness.run({"exposure": {"acmeServer": custom}})
    assert issuer(ev).get("spec.acme.server") == custom


def test_staging_certificates_are_warned_about():
    assert any("Let's Encrypt staging" in w for w in scenario("envoy").warnings())
    assert not any("Let's Encrypt staging" in w for w in scenario("envoy-route53").warnings())


# ------------------------------------------------------------------------------ ingress-nginx
def test_ingress_class_tls_host_backend_and_annotations():
    ev = scenario("nginx")
    ing, svc, iss = ingress(ev), backend_service(ev), issuer(ev)
    assert ing.get("metadata.name") == RELEASE.backend_name
    assert ing.get("metadata.namespace") == svc.get("metadata.namespace") == iss.get("metadata.namespace")
    assert ing.get("spec.ingressClassName") == "nginx"
    assert ing.get("spec.tls") == [{"hosts": [HOST], "secretName": edge.TLS_SECRET}]
    [rule] = ing.get("spec.rules")
    assert rule["host"] == HOST
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    assert path["backend"]["service"]["name"] == svc.get("metadata.name")
    assert path["backend"]["service"]["port"]["number"] in [p["port"] for p in svc.get("spec.ports")]
    annotations = ing.get("metadata.annotations")
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffer-size"] == "16k"
    assert annotations["cert-manager.io/issuer"] == iss.get("metadata.name")
    assert ev.depends_on(ing, release(ev, "ingress-nginx"))  # admission webhook first


def test_acme_issuer_solves_http01_through_nginx():
    ev = scenario("nginx")
    [solver] = issuer(ev).get("spec.acme.solvers")
    assert solver == {"http01": {"ingress": {"ingressClassName": ingress(ev).get("spec.ingressClassName")}}}
    assert not ev.by_type(f"{GATEWAY_API}:Gateway")
    assert not ev.by_type(f"{GATEWAY_API}:HTTPRoute")


# ------------------------------------------------------------------------------ issuer, host, DNS
@pytest.mark.parametrize("key", sorted(SCENARIOS))
def test_issuer_after_cert_manager_and_one_issuer_name(key):
    ev = scenario(key)
    iss = issuer(ev)
    assert iss.get("metadata.name") == edge.ISSUER_NAME
    assert iss.get("metadata.namespace") == RELEASE.backend_namespace
    assert ev.depends_on(iss, release(ev, "cert-manager"))
    # every issuer reference in the stack names the one Issuer
    refs = [r.get("metadata.annotations", {}).get("cert-manager.io/issuer") for r in ev.by_prefix("kubernetes:")]
    refs += [r.get("spec.issuerRef.name") for r in ev.by_type(f"{CERT_MANAGER}:Certificate")]
    assert {ref for ref in refs if ref} == {iss.get("metadata.name")}


@pytest.mark.parametrize(
    "key,service", [("envoy", "envoy-gateway-system/klutch-edge"), ("nginx", "ingress-nginx/ingress-nginx-controller")]
)
def test_load_balancer_hostname_is_read_after_the_controller(key, service):
    ev = scenario(key)
    [read] = [r for r in ev.by_type("kubernetes:core/v1:Service") if r.name == "edge-load-balancer"]
    assert read.id == service
    waited = gateway(ev) if key == "envoy" else release(ev, "ingress-nginx")
    assert waited.urn in read.dependencies
    assert ev.output("loadBalancerHostname") == MOCK_LB_HOSTNAME


@pytest.mark.parametrize("key", ["envoy-route53", "nginx-route53"])
def test_route53_record_points_the_host_at_the_load_balancer(key):
    ev = scenario(key)
    record = ev.one("aws:route53/record:Record")
    assert record.get("zoneId") == ZONE
    assert record.get("name") == HOST
    assert record.get("type") == "CNAME"
    assert record.get("records") == [MOCK_LB_HOSTNAME]
    assert record.get("ttl") == 300
    assert record.parent == edge_component(ev).urn
    assert ev.output("backendHost") == HOST


@pytest.mark.parametrize("key", ["envoy", "nginx"])
def test_host_without_route53_creates_no_record_and_no_ca(key):
    ev = scenario(key)
    assert not ev.by_type("aws:route53/record:Record")
    assert not ev.by_prefix("tls:")
    assert not ev.by_type(f"{CERT_MANAGER}:Certificate")  # the annotation shim requests it
    assert "tlsCaPem" not in ev.outputs
    assert ev.output("backendHost") == HOST
    assert ev.output("backendUrl") == f"https://{HOST}"
    assert not any("backend.host is not set" in w for w in ev.warnings())


@pytest.mark.parametrize("key", ["envoy-self-signed", "nginx-self-signed"])
def test_no_host_uses_the_load_balancer_name_and_a_self_signed_ca(key):
    ev = scenario(key)
    assert ev.output("backendHost") == MOCK_LB_HOSTNAME
    assert ev.output("exportUrl") == f"https://{MOCK_LB_HOSTNAME}/export"
    assert not ev.by_type("aws:route53/record:Record")
    assert any("backend.host is not set" in w for w in ev.warnings())

    ca = ev.one("tls:index/selfSignedCert:SelfSignedCert")
    assert ca.get("isCaCertificate") is True
    assert set(ca.get("allowedUses")) == {"cert_signing", "crl_signing", "digital_signature"}
    assert ev.one("tls:index/privateKey:PrivateKey").get("algorithm") == "ECDSA"
    ca_secret = ev.k8s("Secret", edge.CA_SECRET, RELEASE.backend_namespace)
    assert ca_secret.get("type") == "kubernetes.io/tls"
    data = ca_secret.get("stringData")
    assert data["tls.crt"] == PLACEHOLDER_CA_PEM
    assert data["tls.key"].startswith("-----BEGIN")
    assert ca_secret.is_secret("stringData.tls.key")

    iss = issuer(ev)
    assert iss.get("spec") == {"ca": {"secretName": ca_secret.get("metadata.name")}}
    assert ev.depends_on(iss, ca_secret)
    cert = ev.one(f"{CERT_MANAGER}:Certificate")
    assert cert.get("spec.dnsNames") == [MOCK_LB_HOSTNAME]
    assert cert.get("spec.secretName") == edge.TLS_SECRET
    assert cert.get("spec.issuerRef") == {
        "name": iss.get("metadata.name"),
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    assert cert.get("metadata.namespace") == iss.get("metadata.namespace")
    assert ev.depends_on(cert, iss)

    assert ev.output("tlsCaPem") == PLACEHOLDER_CA_PEM
    assert ev.output("tlsCaPem").startswith("-----BEGIN CERTIFICATE-----")
    assert not ev.output_is_secret("tlsCaPem")


def test_self_signed_gateway_has_no_hostnames_and_no_shim_annotation():
    ev = scenario("envoy-self-signed")
    gw = gateway(ev)
    assert all("hostname" not in listener for listener in gw.get("spec.listeners"))
    assert "cert-manager.io/issuer" not in gw.get("metadata.annotations")
    assert ev.k8s("HTTPRoute", RELEASE.backend_name).get("spec.hostnames") is None


def test_self_signed_ingress_serves_the_load_balancer_name():
    ing = ingress(scenario("nginx-self-signed"))
    assert ing.get("spec.tls") == [{"hosts": [MOCK_LB_HOSTNAME], "secretName": edge.TLS_SECRET}]
    assert ing.get("spec.rules.0.host") == MOCK_LB_HOSTNAME
    assert "cert-manager.io/issuer" not in ing.get("metadata.annotations")


def test_load_balancer_address_prefers_hostname_then_ip():
    from types import SimpleNamespace as NS

    def status(*entries):
        return NS(load_balancer=NS(ingress=[NS(hostname=h, ip=i) for h, i in entries]))

    assert edge.load_balancer_address(status(("lb.example.com", None))) == "lb.example.com"
    assert edge.load_balancer_address(status((None, "203.0.113.7"))) == "203.0.113.7"
    with pytest.raises(ValueError, match="has no address"):
        edge.load_balancer_address(status())
    with pytest.raises(ValueError, match="has no address"):
        edge.load_balancer_address(None)


# ------------------------------------------------------------------------------ whole layer
@pytest.mark.parametrize("key", sorted(SCENARIOS))
def test_every_edge_object_uses_the_cluster_provider_and_is_a_child(key):
    ev = scenario(key)
    comp = edge_component(ev)
    provider = ev.one("pulumi:providers:kubernetes", "cluster-k8s")
    kids = ev.descendants(comp)
    assert {r.type for r in kids} >= {"kubernetes:core/v1:Namespace", "kubernetes:helm.sh/v3:Release"}
    for r in kids:
        if r.type.startswith("kubernetes:"):
            assert r.provider_urn == provider.urn, r.name
    assert ev.k8s("Namespace", RELEASE.backend_namespace).parent == comp.urn


@pytest.mark.parametrize("key", sorted(SCENARIOS))
@pytest.mark.parametrize("version", ["1.30", "1.35"])
def test_edge_manifests_are_valid(key, version):
    ev = harness.run(
        {**json.loads(json.dumps(SCENARIOS[key])), "cluster": {"mode": "eks", "kubernetesVersion": version}}
    )
    emitted = [(r, manifests.manifest(r)) for r in ev.descendants(edge_component(ev)) if manifests.is_manifest(r)]
    # `Service.get` (the load balancer read) registers no manifest: it only reads
    assert "edge-load-balancer" not in [r.name for r, _ in emitted]
    kinds = {obj["kind"] for _, obj in emitted}
    assert {"Namespace", "Issuer", "Gateway" if key.startswith("envoy") else "Ingress"} <= kinds
    problems = [p for _, obj in emitted for p in manifests.check(obj, version)]
    assert problems == []


def test_manifest_check_catches_a_broken_ingress():
    obj = manifests.manifest(ingress(scenario("nginx")))
    obj["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = None
    obj["spec"]["ingressClass"] = "nginx"  # unknown field
    assert manifests.check(obj, "1.33")


# ------------------------------------------------------------------------------ configuration
def test_unknown_controller():
    msg = harness.problems_of({"exposure": {"controller": "traefik"}})
    assert "klutch-central:exposure.controller = 'traefik': must be one of 'envoy-gateway', 'ingress-nginx'" in msg


def test_invalid_host():
    for bad in ("https://klutch.example.com", "klutch", "Klutch.Example.com", "klutch.example.com:443"):
        msg = harness.problems_of({"backend": {"host": bad}})
        assert f"klutch-central:backend.host = '{bad}': must be a fully qualified DNS name you control" in msg


def test_host_needs_acme_email():
    msg = harness.problems_of({"exposure": {"acmeEmail": None}})
    assert (
        "klutch-central:backend.host = 'klutch.example.com': needs exposure.acmeEmail: "
        "the ACME account e-mail for the host's certificate"
    ) in msg
    # no host, no ACME: no e-mail needed
    assert harness.parse({"exposure": {"acmeEmail": None}, "backend": {"host": None}}).backend.host is None


def test_bad_acme_email_and_server():
    msg = harness.problems_of({"exposure": {"acmeEmail": "ops-at-example", "acmeServer": "http://acme.example.com"}})
    assert "klutch-central:exposure.acmeEmail = 'ops-at-example': must be an e-mail address" in msg
    assert (
        "exposure.acmeServer = 'http://acme.example.com': must be one of letsencrypt-staging, letsencrypt or an https"
        in msg
    )


def test_acme_refused_cloud_hostname():
    msg = harness.problems_of({"backend": {"host": "a1b2.elb.eu-central-1.amazonaws.com"}})
    assert "public ACME CAs refuse cloud-provider hostnames" in msg


def test_route53_needs_a_host_and_an_eks_cluster():
    assert "backend.route53ZoneId = 'Z0123456789ABCDEFGHIJ': requires backend.host" in harness.problems_of(
        {"backend": {"host": None, "route53ZoneId": ZONE}}
    )
    existing = {
        "network": None,
        "cluster": {"mode": "existing"},
        "kubeconfig": mock_kubeconfig("https://kubernetes.example.com:6443", "kind"),
        "backend": {"route53ZoneId": ZONE},
    }
    msg = harness.problems_of(existing, secret_keys=(*harness.BASE_SECRET_KEYS, "kubeconfig"))
    assert "backend.route53ZoneId = 'Z0123456789ABCDEFGHIJ': applies to cluster.mode 'eks' only" in msg
    assert "bad-zone" in harness.problems_of({"backend": {"route53ZoneId": "bad-zone"}})


def test_existing_cluster_end_to_end_creates_no_aws_resource():
    ev = harness.run(
        {
            "network": None,
            "cluster": {"mode": "existing"},
            "kubeconfig": mock_kubeconfig("https://kubernetes.example.com:6443", "kind"),
        },
        secret_keys=(*harness.BASE_SECRET_KEYS, "kubeconfig"),
    )
    assert not ev.by_prefix("aws:")
    assert ev.output("backendHost") == HOST
    assert gateway(ev).get("spec.listeners.1.hostname") == HOST


def test_all_problems_reported_together():
    msg = harness.problems_of(
        {
            "exposure": {"controller": "haproxy", "acmeEmail": "nope"},
            "backend": {"host": "not a host"},
            "oidc": {"issuerUrl": "http://idp.example.com"},
        }
    )
    assert "(4 problems)" in msg
    for key in ("exposure.controller", "exposure.acmeEmail", "backend.host", "oidc.issuerUrl"):
        assert f"klutch-central:{key} = " in msg


# ------------------------------------------------------------------------------ controller strategies
def test_every_configurable_controller_has_one_strategy():
    assert set(edge.CONTROLLERS) == set(catalog.CONTROLLERS)
    for key, strategy in edge.CONTROLLERS.items():
        assert strategy.key == key
        assert strategy.gateway_api == (key == "envoy-gateway")


def test_gateway_listeners_without_the_engine():
    http, https = edge.gateway_listeners(HOST)
    assert (http["name"], http["protocol"], http["port"], http["hostname"]) == ("http", "HTTP", 80, HOST)
    assert (https["name"], https["protocol"], https["port"], https["hostname"]) == ("https", "HTTPS", 443, HOST)
    assert https["tls"]["certificateRefs"] == [{"group": "", "kind": "Secret", "name": edge.TLS_SECRET}]
    assert all("hostname" not in listener for listener in edge.gateway_listeners(None))


def test_cert_manager_values_enable_gateway_api_only_for_gateway_controllers():
    assert edge.cert_manager_values(False) == {"crds": {"enabled": True, "keep": True}}
    assert edge.cert_manager_values(True)["config"]["enableGatewayAPI"] is True


# ------------------------------------------------------------------------------- workload security
PSA = "pod-security.kubernetes.io/"


@pytest.mark.parametrize(
    ("key", "namespaces"),
    [
        ("envoy", {"bind": "restricted", "cert-manager": "restricted", "envoy-gateway-system": "restricted"}),
        ("nginx", {"bind": "restricted", "cert-manager": "restricted", "ingress-nginx": "restricted"}),
    ],
)
def test_every_edge_namespace_enforces_pod_security_and_warns_and_audits_restricted(key, namespaces):
    ev = scenario(key)
    found = {r.get("metadata.name"): r.get("metadata.labels") for r in ev.by_type("kubernetes:core/v1:Namespace")}
    for name, level in namespaces.items():
        assert found[name] == {f"{PSA}enforce": level, f"{PSA}warn": "restricted", f"{PSA}audit": "restricted"}


def test_backend_namespace_denies_by_default_and_lets_the_controller_reach_acme_solvers():
    ev = scenario("nginx")  # a host: an ACME certificate through HTTP-01
    policies = {r.get("metadata.name"): r for r in ev.by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")}
    assert policies["default-deny"].get("metadata.namespace") == "bind"
    assert policies["default-deny"].get("spec") == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert policies["acme-http01-solver"].get("spec") == {
        "podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
                "ports": [{"protocol": "TCP", "port": 8089}],
            }
        ],
    }
    # self-signed: no ACME solver, no policy for it
    names = {
        r.get("metadata.name")
        for r in scenario("nginx-self-signed").by_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }
    assert "default-deny" in names and "acme-http01-solver" not in names
