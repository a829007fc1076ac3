"""Layer 4: the edge — how tenants reach the kube-bind backend over HTTPS.

- cert-manager (Helm, CRDs included) and the ingress/gateway controller `exposure.controller`:
  `envoy-gateway` (default: GatewayClass → EnvoyProxy with the AWS NLB annotations, a Gateway with
  HTTP and HTTPS listeners, an HTTPRoute to the backend Service and an HTTP→HTTPS redirect; cert-manager
  runs with Gateway API support and is installed after the chart that brings the Gateway API CRDs) or
  `ingress-nginx` (the manual procedure's choice: NLB annotations on the controller Service, an Ingress with
  `proxy-buffer-size: 16k` for big OIDC cookies).
- The backend host: `backend.host` (optionally a Route53 CNAME to the controller's load balancer) with
  a Let's Encrypt certificate (ACME HTTP-01 through the controller); without a host, the load balancer's
  own hostname with a certificate from a self-signed CA made here (`ca_pem`), since public CAs refuse
  cloud-provider hostnames.
- The Issuer's name is `ISSUER_NAME`, spelled once: the Issuer, the Ingress/Gateway annotation and the
  self-signed Certificate all use it (the manual procedure's `letsencrypt-prod` vs `letsencrypt` mismatch
  cannot happen).

The backend Service it routes to (name and port) comes from the catalog; `KubeBind` creates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from klutch import catalog
from klutch.central import helm, security
from klutch.central.observability import ChartMonitoring, chart_monitor_values
from klutch.kube.names import api_group

ISSUER_NAME = "klutch-backend"  # the one Issuer the backend certificate comes from
ISSUER_ANNOTATION = "cert-manager.io/issuer"
TLS_SECRET = "anynines-backend-tls"  # the backend's certificate (name kept from the manual procedure)
CA_SECRET = "klutch-backend-ca"  # self-signed mode: the CA key pair the CA Issuer signs with
GATEWAY_CLASS = "klutch"
GATEWAY = "kube-bind"
ENVOY_PROXY = "klutch-edge"  # EnvoyProxy, and the data-plane Service Envoy Gateway creates from it
LISTENERS = {"http": 80, "https": 443}
# Envoy Gateway sets the Gateway's address once the load balancer exists; waiting for it means the
# data-plane Service carries its hostname when the program reads it.
WAIT_FOR_ADDRESS = {"pulumi.com/waitFor": "jsonpath={.status.addresses[0].value}"}
PROXY_BUFFER_SIZE = "16k"  # nginx: the backend's OIDC cookies exceed the default buffer
NGINX_FULLNAME = "ingress-nginx"  # fixes the controller Service's name: <fullname>-controller
DEFAULT_DENY_POLICY = "default-deny"
ACME_SOLVER_POLICY = "acme-http01-solver"


@dataclass(frozen=True)
class EdgeArgs:
    provider: k8s.Provider
    controller: str  # exposure.controller: envoy-gateway | ingress-nginx
    charts: Mapping[str, catalog.Chart]  # cert-manager's and the controller's chart sources (catalog or mirror)
    backend_namespace: str  # created here: the backend, its Issuer, certificate and routes live in it
    backend_name: str  # the backend Service the routes send to
    host: str | None  # backend.host; None: the load balancer's own hostname, with a self-signed CA
    route53_zone_id: str | None  # a CNAME host → load balancer in this zone
    acme_server: str
    acme_email: str | None
    stack: str  # names the self-signed CA
    ca_generation: int = 0  # rotation.backendCa: raising it makes a new self-signed CA
    monitoring: ChartMonitoring | None = None  # observability on: the charts create their own monitors


def load_balancer_address(status: Any) -> str:
    """The first hostname (AWS) or IP (other clouds) in a LoadBalancer Service's status."""
    balancer = status.load_balancer if status is not None else None
    for entry in (balancer.ingress or []) if balancer is not None else []:
        if entry.hostname or entry.ip:
            return entry.hostname or entry.ip
    raise ValueError(
        "the controller's load balancer Service has no address (does the cluster support LoadBalancer Services?)"
    )


def cert_manager_values(gateway_api: bool) -> dict[str, Any]:
    """cert-manager with its CRDs (kept on uninstall), with Gateway API support when the controller needs it."""
    values: dict[str, Any] = {"crds": {"enabled": True, "keep": True}}
    if gateway_api:
        values["config"] = {
            "apiVersion": catalog.CERT_MANAGER_CONFIG_API,
            "kind": "ControllerConfiguration",
            "enableGatewayAPI": True,
        }
    return values


def acme_issuer_spec(server: str, email: str | None, solver: dict[str, Any]) -> dict[str, Any]:
    """An ACME Issuer answering HTTP-01 challenges through `solver`."""
    return {
        "acme": {
            "server": server,
            "email": email,
            "privateKeySecretRef": {"name": f"{ISSUER_NAME}-acme-account"},
            "solvers": [{"http01": solver}],
        }
    }


class Controller(Protocol):
    """What differs between the ingress/gateway controllers: one implementation each, `Edge` picks one."""

    key: str  # the controller's chart (catalog)
    gateway_api: bool  # it brings the Gateway API CRDs: cert-manager then runs with Gateway API support

    def chart_values(self) -> dict[str, Any]: ...

    def front(self, edge: Edge) -> pulumi.Resource:
        """The objects in front of the backend's load balancer; returns the one to wait for before reading it."""
        ...

    def load_balancer_service(self) -> str:
        """`<namespace>/<name>` of the controller's LoadBalancer Service."""
        ...

    def acme_solver(self) -> dict[str, Any]:
        """The HTTP-01 solver of the ACME Issuer."""
        ...

    def routes(self, edge: Edge) -> pulumi.Resource:
        """The objects that route the backend host to the backend Service; returns the main one."""
        ...


class EnvoyGateway:
    """Envoy Gateway: GatewayClass → EnvoyProxy (AWS NLB annotations), a Gateway with HTTP and HTTPS
    listeners, an HTTPRoute to the backend and an HTTP→HTTPS redirect."""

    key = "envoy-gateway"
    gateway_api = True

    def __init__(self, args: EdgeArgs) -> None:
        self._args = args

    def chart_values(self) -> dict[str, Any]:
        return {}

    def load_balancer_service(self) -> str:
        return f"{catalog.CHARTS[self.key].namespace}/{ENVOY_PROXY}"

    def acme_solver(self) -> dict[str, Any]:
        return {"gatewayHTTPRoute": {"parentRefs": [self._parent_ref("http")]}}

    def _parent_ref(self, listener: str) -> dict[str, Any]:
        return {
            "group": api_group(catalog.GATEWAY_API),
            "kind": "Gateway",
            "name": GATEWAY,
            "namespace": self._args.backend_namespace,
            "sectionName": listener,
        }

    def front(self, edge: Edge) -> pulumi.Resource:
        controller_ns = catalog.CHARTS[self.key].namespace
        proxy = k8s.apiextensions.CustomResource(
            f"{edge.prefix}-envoy-proxy",
            api_version=catalog.ENVOY_GATEWAY_API,
            kind="EnvoyProxy",
            metadata={"name": ENVOY_PROXY, "namespace": controller_ns},
            spec=envoy_proxy_spec(),
            opts=edge.child_opts(depends_on=[edge.controller]),
        )
        gateway_class = k8s.apiextensions.CustomResource(
            f"{edge.prefix}-gateway-class",
            api_version=catalog.GATEWAY_API,
            kind="GatewayClass",
            metadata={"name": GATEWAY_CLASS},
            spec={
                "controllerName": catalog.ENVOY_GATEWAY_CONTROLLER,
                "parametersRef": {
                    "group": api_group(catalog.ENVOY_GATEWAY_API),
                    "kind": "EnvoyProxy",
                    "name": ENVOY_PROXY,
                    "namespace": controller_ns,
                },
            },
            opts=edge.child_opts(depends_on=[edge.controller, proxy]),
        )
        annotations = dict(WAIT_FOR_ADDRESS)
        if not edge.self_signed:
            annotations[ISSUER_ANNOTATION] = ISSUER_NAME  # cert-manager's gateway-shim requests the certificate
        return k8s.apiextensions.CustomResource(
            f"{edge.prefix}-gateway",
            api_version=catalog.GATEWAY_API,
            kind="Gateway",
            metadata={"name": GATEWAY, "namespace": edge.namespace, "annotations": annotations},
            spec={"gatewayClassName": GATEWAY_CLASS, "listeners": gateway_listeners(self._args.host)},
            opts=edge.child_opts(
                depends_on=[edge.controller, gateway_class],
                custom_timeouts=pulumi.CustomTimeouts(create="15m", update="15m"),
            ),
        )

    def routes(self, edge: Edge) -> pulumi.Resource:
        backend = self._args.backend_name
        hostnames = {"hostnames": [self._args.host]} if self._args.host else {}
        route = self._route(
            edge,
            "route",
            backend,
            "https",
            hostnames,
            [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": backend, "port": catalog.BACKEND_SERVICE_PORT}],
                }
            ],
        )
        # cert-manager's HTTP-01 challenge routes match an Exact path and so take precedence.
        redirect = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
        self._route(edge, "https-redirect", f"{backend}-https-redirect", "http", hostnames, [{"filters": [redirect]}])
        return route

    def _route(
        self,
        edge: Edge,
        suffix: str,
        name: str,
        listener: str,
        hostnames: dict[str, Any],
        rules: list[dict[str, Any]],
    ) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{edge.prefix}-{suffix}",
            api_version=catalog.GATEWAY_API,
            kind="HTTPRoute",
            metadata={"name": name, "namespace": edge.namespace},
            spec={"parentRefs": [self._parent_ref(listener)], **hostnames, "rules": rules},
            opts=edge.child_opts(depends_on=[edge.controller]),
        )


def envoy_proxy_spec() -> dict[str, Any]:
    """The EnvoyProxy: its data-plane Service is an AWS NLB named `ENVOY_PROXY`."""
    service = {
        "name": ENVOY_PROXY,
        "type": "LoadBalancer",
        "annotations": dict(catalog.AWS_NLB_SERVICE_ANNOTATIONS),
    }
    return {"provider": {"type": "Kubernetes", "kubernetes": {"envoyService": service}}}


def self_signed_certificate_spec(host: pulumi.Input[str], ca_generation: int) -> dict[str, Any]:
    """The backend's certificate from the self-signed CA. cert-manager re-issues a certificate when its
    spec changes, not when its CA does: a new CA generation names itself in the subject, so the next
    `pulumi up` re-issues the certificate from the new CA (none for the first generation, as every
    stack started)."""
    spec: dict[str, Any] = {
        "secretName": TLS_SECRET,
        "dnsNames": [host],
        "issuerRef": {"name": ISSUER_NAME, "kind": "Issuer", "group": api_group(catalog.CERT_MANAGER_API)},
    }
    if ca_generation:
        spec["subject"] = {"organizationalUnits": [f"backend CA generation {ca_generation}"]}
    return spec


def gateway_listeners(host: str | None) -> list[dict[str, Any]]:
    """The Gateway's HTTP and HTTPS listeners (for `host`, or any host); HTTPS terminates with the
    backend's certificate."""
    hostname = {"hostname": host} if host else {}
    same = {"allowedRoutes": {"namespaces": {"from": "Same"}}}
    tls_ = {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": TLS_SECRET}]}
    return [
        {"name": "http", "protocol": "HTTP", "port": LISTENERS["http"], **hostname, **same},
        {"name": "https", "protocol": "HTTPS", "port": LISTENERS["https"], **hostname, **same, "tls": tls_},
    ]


class IngressNginx:
    """ingress-nginx: AWS NLB annotations on the controller Service, one Ingress with a proxy buffer
    big enough for the backend's OIDC cookies."""

    key = "ingress-nginx"
    gateway_api = False

    def __init__(self, args: EdgeArgs) -> None:
        self._args = args

    def chart_values(self) -> dict[str, Any]:
        return {
            "fullnameOverride": NGINX_FULLNAME,
            "controller": {
                "ingressClassResource": {"name": catalog.INGRESS_NGINX_CLASS, "enabled": True, "default": False},
                "ingressClass": catalog.INGRESS_NGINX_CLASS,
                "config": {"proxy-buffer-size": PROXY_BUFFER_SIZE},
                "service": {
                    "type": "LoadBalancer",
                    "externalTrafficPolicy": "Local",
                    "annotations": dict(catalog.AWS_NLB_SERVICE_ANNOTATIONS),
                },
            },
        }

    def front(self, edge: Edge) -> pulumi.Resource:
        return edge.controller  # the chart's controller Service is the load balancer

    def load_balancer_service(self) -> str:
        return f"{catalog.CHARTS[self.key].namespace}/{NGINX_FULLNAME}-controller"

    def acme_solver(self) -> dict[str, Any]:
        return {"ingress": {"ingressClassName": catalog.INGRESS_NGINX_CLASS}}

    def routes(self, edge: Edge) -> pulumi.Resource:
        annotations = {"nginx.ingress.kubernetes.io/proxy-buffer-size": PROXY_BUFFER_SIZE}
        if not edge.self_signed:
            annotations[ISSUER_ANNOTATION] = ISSUER_NAME  # cert-manager's ingress-shim requests the certificate
        backend = self._args.backend_name
        return k8s.networking.v1.Ingress(
            f"{edge.prefix}-ingress",
            metadata={"name": backend, "namespace": edge.namespace, "annotations": annotations},
            spec=ingress_spec(edge.host, backend),
            # the controller's admission webhook must be up before an Ingress is accepted
            opts=edge.child_opts(depends_on=[edge.controller]),
        )


def ingress_spec(host: pulumi.Input[str], backend: str) -> dict[str, Any]:
    """The backend's Ingress: TLS with the backend certificate, every path of `host` to Service `backend`."""
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": backend, "port": {"number": catalog.BACKEND_SERVICE_PORT}}},
    }
    return {
        "ingressClassName": catalog.INGRESS_NGINX_CLASS,
        "tls": [{"hosts": [host], "secretName": TLS_SECRET}],
        "rules": [{"host": host, "http": {"paths": [path]}}],
    }


CONTROLLERS: dict[str, type[EnvoyGateway] | type[IngressNginx]] = {
    EnvoyGateway.key: EnvoyGateway,
    IngressNginx.key: IngressNginx,
}


class Edge(pulumi.ComponentResource):
    namespace: pulumi.Output[str]  # the backend namespace (created here: Issuer, TLS and routes live in it)
    host: pulumi.Output[str]  # the backend host tenants use
    load_balancer_hostname: pulumi.Output[str]
    issuer_name: str
    self_signed: bool
    ca_pem: pulumi.Output[str] | None  # the CA tenants must trust (self-signed mode only)
    cert_manager: k8s.helm.v3.Release
    controller: k8s.helm.v3.Release

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:edge:Edge", name, None, opts)
        self.prefix, self._provider, self._args = name, args.provider, args
        controller: Controller = CONTROLLERS[args.controller](args)
        self.issuer_name = ISSUER_NAME
        self.self_signed = args.host is None
        self.ca_pem = None

        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.backend_namespace, "labels": security.pod_security_labels(security.RESTRICTED)},
            opts=self.child_opts(),
        )
        self.namespace = ns.metadata.apply(lambda m: m.name)
        self._network_policies(catalog.CHARTS[controller.key].namespace)
        self.controller = self._chart(controller.key, controller.chart_values())
        # With Gateway API support cert-manager must start after the Gateway API CRDs (the controller's chart) exist.
        self.cert_manager = self._chart(
            "cert-manager",
            cert_manager_values(controller.gateway_api),
            depends_on=[self.controller] if controller.gateway_api else [],
        )
        self.load_balancer_hostname = self._load_balancer(controller)
        self.host = pulumi.Output.from_input(args.host) if args.host else self.load_balancer_hostname
        self.issuer = self._issuer(controller)
        if self.self_signed:
            self._certificate()
        self.route = controller.routes(self)
        if args.route53_zone_id:
            self.dns_record = self._dns_record(args.route53_zone_id)

        self.register_outputs(
            {
                "namespace": self.namespace,
                "host": self.host,
                "loadBalancerHostname": self.load_balancer_hostname,
                "issuerName": self.issuer_name,
                **({"caPem": self.ca_pem} if self.ca_pem is not None else {}),
            }
        )

    def child_opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options of a Kubernetes child: this component's parent and the cluster's provider."""
        return pulumi.ResourceOptions(parent=self, provider=self._provider, **kwargs)

    def _network_policies(self, controller_namespace: str) -> None:
        """The backend namespace denies all traffic by default (the backend's own policy lets its traffic
        through); with an ACME certificate, the controller reaches cert-manager's HTTP-01 solver pods."""
        k8s.networking.v1.NetworkPolicy(
            f"{self.prefix}-default-deny",
            metadata={"name": DEFAULT_DENY_POLICY, "namespace": self.namespace},
            spec=security.default_deny_spec(),
            opts=self.child_opts(),
        )
        if not self.self_signed:
            k8s.networking.v1.NetworkPolicy(
                f"{self.prefix}-acme-solver",
                metadata={"name": ACME_SOLVER_POLICY, "namespace": self.namespace},
                spec=security.policy_spec(
                    {security.ACME_SOLVER_LABEL: "true"},
                    [security.ingress_from_namespace(controller_namespace, security.ACME_SOLVER_PORT)],
                    None,
                ),
                opts=self.child_opts(),
            )

    def _chart(
        self, key: str, values: dict[str, Any], depends_on: list[pulumi.Resource] | None = None
    ) -> k8s.helm.v3.Release:
        namespace = helm.namespace(f"{self.prefix}-{key}-namespace", key, self.child_opts())
        monitoring = self._args.monitoring
        monitor = chart_monitor_values(key, monitoring)
        # a chart's monitor needs the monitor CRDs: in install mode, kube-prometheus-stack brings them
        after = [*(depends_on or []), *(monitoring.after if monitoring and monitor else ())]
        values = helm.merge(values, monitor)
        opts = self.child_opts(depends_on=after)
        return helm.release(f"{self.prefix}-{key}", key, self._args.charts[key], values, opts, namespace=namespace)

    def _load_balancer(self, controller: Controller) -> pulumi.Output[str]:
        """The hostname of the controller's LoadBalancer Service, read once it has an address."""
        waited_for = controller.front(self)
        lb_service = controller.load_balancer_service()
        # The id derives from an id that is unknown while the Gateway/Release is still to be created, so
        # `pulumi preview` of a new stack skips the read instead of failing on a Service that does not exist yet.
        service = k8s.core.v1.Service.get(
            f"{self.prefix}-load-balancer",
            waited_for.id.apply(lambda _: lb_service),
            opts=self.child_opts(depends_on=[waited_for]),
        )
        return service.status.apply(load_balancer_address)

    def _issuer(self, controller: Controller) -> k8s.apiextensions.CustomResource:
        """The backend's Issuer: a CA Issuer over the self-signed CA, or ACME (HTTP-01 through the controller)."""
        depends_on: list[pulumi.Resource] = [self.cert_manager]
        if self.self_signed:
            depends_on.append(self._self_signed_ca())
            spec: dict[str, Any] = {"ca": {"secretName": CA_SECRET}}
        else:
            spec = acme_issuer_spec(self._args.acme_server, self._args.acme_email, controller.acme_solver())
        return k8s.apiextensions.CustomResource(
            f"{self.prefix}-issuer",
            api_version=catalog.CERT_MANAGER_API,
            kind="Issuer",
            metadata={"name": ISSUER_NAME, "namespace": self.namespace},
            spec=spec,
            opts=self.child_opts(depends_on=depends_on),
        )

    def _certificate(self) -> None:
        # cert-manager's annotation shims need a hostname on the listener/Ingress; the load
        # balancer's name is only known afterwards, so the certificate is requested explicitly.
        k8s.apiextensions.CustomResource(
            f"{self.prefix}-certificate",
            api_version=catalog.CERT_MANAGER_API,
            kind="Certificate",
            metadata={"name": TLS_SECRET, "namespace": self.namespace},
            spec=self_signed_certificate_spec(self.host, self._args.ca_generation),
            opts=self.child_opts(depends_on=[self.issuer]),
        )

    def _dns_record(self, zone_id: str) -> aws.route53.Record:
        return aws.route53.Record(
            f"{self.prefix}-dns",
            zone_id=zone_id,
            name=self._args.host,
            type="CNAME",
            ttl=300,
            records=[self.load_balancer_hostname],
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _self_signed_ca(self) -> k8s.core.v1.Secret:
        name = self.prefix
        # A new generation replaces the key and the certificate; the Secret holding them is updated in place.
        # The engine compares the trigger with the recorded one: a stack that recorded none takes 0 over
        # without a change, and every later generation differs.
        renew = pulumi.ResourceOptions(parent=self, replacement_trigger=self._args.ca_generation)
        key = tls.PrivateKey(f"{name}-ca", algorithm="ECDSA", ecdsa_curve="P256", opts=renew)
        cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"klutch-central {self._args.stack} backend CA", organization="klutch-central"
            ),
            validity_period_hours=10 * 365 * 24,
            early_renewal_hours=365 * 24,  # a `pulumi up` in the CA's last year replaces it (tenants re-trust)
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=renew,
        )
        self.ca_pem = cert.cert_pem
        return k8s.core.v1.Secret(
            f"{name}-ca",
            metadata={"name": CA_SECRET, "namespace": self.namespace},
            type="kubernetes.io/tls",
            string_data={"tls.crt": cert.cert_pem, "tls.key": pulumi.Output.secret(key.private_key_pem)},
            opts=self.child_opts(),
        )
