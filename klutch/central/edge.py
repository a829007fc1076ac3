"""Layer 4: the edge — how tenants reach the kube-bind backend over HTTPS.

- cert-manager (Helm, CRDs included) and the ingress/gateway controller `exposure.controller`:
  `envoy-gateway` (default: GatewayClass → EnvoyProxy with the AWS NLB annotations, a Gateway with
  HTTP and HTTPS listeners, an HTTPRoute to the backend Service and an HTTP→HTTPS redirect; cert-manager
  runs with Gateway API support and is installed after the chart that brings the Gateway API CRDs) or
  `ingress-nginx` (the seed's choice: NLB annotations on the controller Service, an Ingress with
  `proxy-buffer-size: 16k` for big OIDC cookies).
- The backend host: `backend.host` (optionally a Route53 CNAME to the controller's load balancer) with
  a Let's Encrypt certificate (ACME HTTP-01 through the controller); without a host, the load balancer's
  own hostname with a certificate from a self-signed CA made here (`ca_pem`), since public CAs refuse
  cloud-provider hostnames.
- The Issuer's name is `ISSUER_NAME`, spelled once: the Issuer, the Ingress/Gateway annotation and the
  self-signed Certificate all use it (the seed's `letsencrypt-prod` vs `letsencrypt` mismatch cannot happen).

The backend Service it routes to (name and port) comes from the catalog; `KubeBind` creates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from klutch import catalog
from klutch.central import helm
from klutch.config.central import CentralConfig

ISSUER_NAME = "klutch-backend"  # the one Issuer the backend certificate comes from
ISSUER_ANNOTATION = "cert-manager.io/issuer"
TLS_SECRET = "anynines-backend-tls"  # the backend's certificate (seed name)
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


@dataclass(frozen=True)
class EdgeArgs:
    config: CentralConfig
    provider: k8s.Provider


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0]


def load_balancer_address(status: Any) -> str:
    """The first hostname (AWS) or IP (other clouds) in a LoadBalancer Service's status."""
    balancer = status.load_balancer if status is not None else None
    for entry in (balancer.ingress or []) if balancer is not None else []:
        if entry.hostname or entry.ip:
            return entry.hostname or entry.ip
    raise ValueError(
        "the controller's load balancer Service has no address (does the cluster support LoadBalancer Services?)"
    )


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
        cfg = args.config
        self._name, self._provider, self._cfg = name, args.provider, cfg
        release = cfg.release
        envoy = cfg.exposure.controller == "envoy-gateway"
        self.issuer_name = ISSUER_NAME
        self.self_signed = cfg.backend.host is None

        ns = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": release.backend_namespace}, opts=self._opts())
        self.namespace = ns.metadata.apply(lambda m: m.name)

        if envoy:
            self.controller = self._chart("envoy-gateway", {})
        else:
            self.controller = self._chart(
                "ingress-nginx",
                {
                    "fullnameOverride": NGINX_FULLNAME,
                    "controller": {
                        "ingressClassResource": {
                            "name": catalog.INGRESS_NGINX_CLASS,
                            "enabled": True,
                            "default": False,
                        },
                        "ingressClass": catalog.INGRESS_NGINX_CLASS,
                        "config": {"proxy-buffer-size": PROXY_BUFFER_SIZE},
                        "service": {
                            "type": "LoadBalancer",
                            "externalTrafficPolicy": "Local",
                            "annotations": dict(catalog.AWS_NLB_SERVICE_ANNOTATIONS),
                        },
                    },
                },
            )
        cert_manager_values: dict[str, Any] = {"crds": {"enabled": True, "keep": True}}
        if envoy:
            cert_manager_values["config"] = {
                "apiVersion": catalog.CERT_MANAGER_CONFIG_API,
                "kind": "ControllerConfiguration",
                "enableGatewayAPI": True,
            }
        # With Gateway API support cert-manager must start after the Gateway API CRDs (the envoy chart) exist.
        self.cert_manager = self._chart(
            "cert-manager", cert_manager_values, depends_on=[self.controller] if envoy else []
        )

        gateway = self._gateway() if envoy else None
        lb_service = (
            catalog.CHARTS[cfg.exposure.controller].namespace
            + "/"
            + (ENVOY_PROXY if envoy else f"{NGINX_FULLNAME}-controller")
        )
        # Read the controller's LoadBalancer Service once it has an address. The id derives from an id
        # that is unknown while the Gateway/Release is still to be created, so `pulumi preview` of a new
        # stack skips the read instead of failing on a Service that does not exist yet.
        waited_for = gateway or self.controller
        service = k8s.core.v1.Service.get(
            f"{name}-load-balancer",
            waited_for.id.apply(lambda _: lb_service),
            opts=self._opts(depends_on=[waited_for]),
        )
        self.load_balancer_hostname = service.status.apply(load_balancer_address)
        self.host = pulumi.Output.from_input(cfg.backend.host) if cfg.backend.host else self.load_balancer_hostname

        self.ca_pem = None
        issuer_deps: list[pulumi.Resource] = [self.cert_manager]
        if self.self_signed:
            ca_secret = self._self_signed_ca()
            issuer_spec: dict[str, Any] = {"ca": {"secretName": CA_SECRET}}
            issuer_deps.append(ca_secret)
        else:
            solver = (
                {"gatewayHTTPRoute": {"parentRefs": [self._parent_ref("http")]}}
                if envoy
                else {"ingress": {"ingressClassName": catalog.INGRESS_NGINX_CLASS}}
            )
            issuer_spec = {
                "acme": {
                    "server": cfg.exposure.acme_server,
                    "email": cfg.exposure.acme_email,
                    "privateKeySecretRef": {"name": f"{ISSUER_NAME}-acme-account"},
                    "solvers": [{"http01": solver}],
                }
            }
        self.issuer = k8s.apiextensions.CustomResource(
            f"{name}-issuer",
            api_version=catalog.CERT_MANAGER_API,
            kind="Issuer",
            metadata={"name": ISSUER_NAME, "namespace": self.namespace},
            spec=issuer_spec,
            opts=self._opts(depends_on=issuer_deps),
        )
        if self.self_signed:
            # cert-manager's annotation shims need a hostname on the listener/Ingress; the load
            # balancer's name is only known afterwards, so the certificate is requested explicitly.
            k8s.apiextensions.CustomResource(
                f"{name}-certificate",
                api_version=catalog.CERT_MANAGER_API,
                kind="Certificate",
                metadata={"name": TLS_SECRET, "namespace": self.namespace},
                spec={
                    "secretName": TLS_SECRET,
                    "dnsNames": [self.host],
                    "issuerRef": {"name": ISSUER_NAME, "kind": "Issuer", "group": _group(catalog.CERT_MANAGER_API)},
                },
                opts=self._opts(depends_on=[self.issuer]),
            )

        if envoy:
            self._routes()
        else:
            self._ingress()

        if cfg.backend.route53_zone_id:
            self.dns_record = aws.route53.Record(
                f"{name}-dns",
                zone_id=cfg.backend.route53_zone_id,
                name=cfg.backend.host,
                type="CNAME",
                ttl=300,
                records=[self.load_balancer_hostname],
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.register_outputs(
            {
                "namespace": self.namespace,
                "host": self.host,
                "loadBalancerHostname": self.load_balancer_hostname,
                "issuerName": self.issuer_name,
                **({"caPem": self.ca_pem} if self.ca_pem is not None else {}),
            }
        )

    # ------------------------------------------------------------------ helpers
    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._provider, **kwargs)

    def _chart(
        self, key: str, values: dict[str, Any], depends_on: list[pulumi.Resource] | None = None
    ) -> k8s.helm.v3.Release:
        namespace = helm.namespace(f"{self._name}-{key}-namespace", key, self._opts())
        return helm.release(
            f"{self._name}-{key}", key, values, self._opts(depends_on=depends_on or []), namespace=namespace
        )

    def _parent_ref(self, listener: str) -> dict[str, Any]:
        return {
            "group": _group(catalog.GATEWAY_API),
            "kind": "Gateway",
            "name": GATEWAY,
            "namespace": self._cfg.release.backend_namespace,
            "sectionName": listener,
        }

    def _hostnames(self) -> dict[str, Any]:
        return {"hostname": self._cfg.backend.host} if self._cfg.backend.host else {}

    def _gateway(self) -> k8s.apiextensions.CustomResource:
        name, controller_ns = self._name, catalog.CHARTS["envoy-gateway"].namespace
        proxy = k8s.apiextensions.CustomResource(
            f"{name}-envoy-proxy",
            api_version=catalog.ENVOY_GATEWAY_API,
            kind="EnvoyProxy",
            metadata={"name": ENVOY_PROXY, "namespace": controller_ns},
            spec={
                "provider": {
                    "type": "Kubernetes",
                    "kubernetes": {
                        "envoyService": {
                            "name": ENVOY_PROXY,
                            "type": "LoadBalancer",
                            "annotations": dict(catalog.AWS_NLB_SERVICE_ANNOTATIONS),
                        }
                    },
                }
            },
            opts=self._opts(depends_on=[self.controller]),
        )
        gateway_class = k8s.apiextensions.CustomResource(
            f"{name}-gateway-class",
            api_version=catalog.GATEWAY_API,
            kind="GatewayClass",
            metadata={"name": GATEWAY_CLASS},
            spec={
                "controllerName": catalog.ENVOY_GATEWAY_CONTROLLER,
                "parametersRef": {
                    "group": _group(catalog.ENVOY_GATEWAY_API),
                    "kind": "EnvoyProxy",
                    "name": ENVOY_PROXY,
                    "namespace": controller_ns,
                },
            },
            opts=self._opts(depends_on=[self.controller, proxy]),
        )
        annotations = dict(WAIT_FOR_ADDRESS)
        if not self.self_signed:
            annotations[ISSUER_ANNOTATION] = ISSUER_NAME  # cert-manager's gateway-shim requests the certificate
        return k8s.apiextensions.CustomResource(
            f"{name}-gateway",
            api_version=catalog.GATEWAY_API,
            kind="Gateway",
            metadata={"name": GATEWAY, "namespace": self.namespace, "annotations": annotations},
            spec={
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": "http",
                        "protocol": "HTTP",
                        "port": LISTENERS["http"],
                        **self._hostnames(),
                        "allowedRoutes": {"namespaces": {"from": "Same"}},
                    },
                    {
                        "name": "https",
                        "protocol": "HTTPS",
                        "port": LISTENERS["https"],
                        **self._hostnames(),
                        "allowedRoutes": {"namespaces": {"from": "Same"}},
                        "tls": {
                            "mode": "Terminate",
                            "certificateRefs": [{"group": "", "kind": "Secret", "name": TLS_SECRET}],
                        },
                    },
                ],
            },
            opts=self._opts(
                depends_on=[self.controller, gateway_class],
                custom_timeouts=pulumi.CustomTimeouts(create="15m", update="15m"),
            ),
        )

    def _routes(self) -> None:
        release = self._cfg.release
        hostnames = {"hostnames": [self._cfg.backend.host]} if self._cfg.backend.host else {}
        namespace = self.namespace
        self.route = k8s.apiextensions.CustomResource(
            f"{self._name}-route",
            api_version=catalog.GATEWAY_API,
            kind="HTTPRoute",
            metadata={"name": release.backend_name, "namespace": namespace},
            spec={
                "parentRefs": [self._parent_ref("https")],
                **hostnames,
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": release.backend_name, "port": catalog.BACKEND_SERVICE_PORT}],
                    }
                ],
            },
            opts=self._opts(depends_on=[self.controller]),
        )
        k8s.apiextensions.CustomResource(
            f"{self._name}-https-redirect",
            api_version=catalog.GATEWAY_API,
            kind="HTTPRoute",
            metadata={"name": f"{release.backend_name}-https-redirect", "namespace": namespace},
            spec={
                "parentRefs": [self._parent_ref("http")],
                **hostnames,
                # cert-manager's HTTP-01 challenge routes match an Exact path and so take precedence.
                "rules": [
                    {
                        "filters": [
                            {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
                        ]
                    }
                ],
            },
            opts=self._opts(depends_on=[self.controller]),
        )

    def _ingress(self) -> None:
        release = self._cfg.release
        annotations = {"nginx.ingress.kubernetes.io/proxy-buffer-size": PROXY_BUFFER_SIZE}
        if not self.self_signed:
            annotations[ISSUER_ANNOTATION] = ISSUER_NAME  # cert-manager's ingress-shim requests the certificate
        self.route = k8s.networking.v1.Ingress(
            f"{self._name}-ingress",
            metadata={"name": release.backend_name, "namespace": self.namespace, "annotations": annotations},
            spec={
                "ingressClassName": catalog.INGRESS_NGINX_CLASS,
                "tls": [{"hosts": [self.host], "secretName": TLS_SECRET}],
                "rules": [
                    {
                        "host": self.host,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": release.backend_name,
                                            "port": {"number": catalog.BACKEND_SERVICE_PORT},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ],
            },
            # the controller's admission webhook must be up before an Ingress is accepted
            opts=self._opts(depends_on=[self.controller]),
        )

    def _self_signed_ca(self) -> k8s.core.v1.Secret:
        name = self._name
        key = tls.PrivateKey(
            f"{name}-ca", algorithm="ECDSA", ecdsa_curve="P256", opts=pulumi.ResourceOptions(parent=self)
        )
        cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=key.private_key_pem,
            is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"klutch-central {self._cfg.stack} backend CA", organization="klutch-central"
            ),
            validity_period_hours=10 * 365 * 24,
            early_renewal_hours=365 * 24,  # a `pulumi up` in the CA's last year replaces it (tenants re-trust)
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.ca_pem = cert.cert_pem
        return k8s.core.v1.Secret(
            f"{name}-ca",
            metadata={"name": CA_SECRET, "namespace": self.namespace},
            type="kubernetes.io/tls",
            string_data={"tls.crt": cert.cert_pem, "tls.key": pulumi.Output.secret(key.private_key_pem)},
            opts=self._opts(),
        )
