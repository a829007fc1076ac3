"""The one catalog: every version, image, chart, URL, API group and name that the program pins.

Nothing about a Klutch release, a chart or an a9s data service is spelled anywhere else.
A second Klutch release is one more `KlutchRelease` entry in `RELEASES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


# --------------------------------------------------------------------------- data services
@dataclass(frozen=True)
class DataService:
    """An a9s data service: its config value and its claim API."""

    key: str  # the config and ProviderConfig value
    title: str  # the data service's product name
    group: str = "anynines.com"

    @property
    def plural(self) -> str:
        """The claim resource the central cluster exports (`<svc>instances`)."""
        return f"{self.key}instances"

    @property
    def claim_kind(self) -> str:
        """The claim's kind, as the release's XRDs name it (`postgresql` → `PostgresqlInstance`)."""
        return f"{self.key.capitalize()}Instance"


@dataclass(frozen=True)
class ExtraApi:
    """An exported API that is not a data service instance (service bindings, backups, restores)."""

    resource: str
    group: str = "anynines.com"
    # Permission claims (group, resource, version, selector owner) as the servicebinding export template has them.
    permission_claims: tuple[tuple[str, str, str, str], ...] = ()


# --------------------------------------------------------------------------- releases
@dataclass(frozen=True)
class Backend:
    """A kube-bind backend image and what the program must do differently for it."""

    kind: str  # `backend.kind` in config
    image: str
    export_template_api_version: str  # group/version of the APIServiceExportTemplates it reads
    template_crd_url: str | None  # the APIServiceExportTemplate CRD, when not in the release's CRD files
    probe_path: str  # readiness and liveness (answers unauthenticated)
    bind_noninteractive: bool  # serves POST /bind-noninteractive
    # Flags known to exist in this image beyond the common ones (an unknown flag stops the binary).
    optional_flags: frozenset[str] = frozenset()
    # The image's digest at its tag ('sha256:<64 hex>'), when known: the pod then pulls by digest. None:
    # the tag alone (no registry that serves it is reachable offline to resolve it).
    digest: str | None = None

    @property
    def pinned_image(self) -> str:
        """The reference the pod pulls: `image@digest` when the digest is known, else `image`."""
        return f"{self.image}@{self.digest}" if self.digest else self.image


@dataclass(frozen=True)
class KlutchRelease:
    """Everything that differs between Klutch releases."""

    name: str
    description: str
    provider_package: str
    configuration_package: str
    konnector_image: str
    # The kube-bind CRD files every backend needs, pinned to an immutable source (never a branch).
    kube_bind_crd_urls: tuple[str, ...]
    kube_bind_group: str  # API group of the kube-bind CRDs the release ships
    binder_cluster_role: str
    konnector_namespace: str
    crossplane_min: tuple[int, ...]  # inclusive (major, minor[, patch])
    crossplane_max: tuple[int, int]  # inclusive (major, minor)
    data_services: tuple[str, ...]  # keys of DATA_SERVICES this release serves
    backends: Mapping[str, Backend]
    default_backend: str = "anynines"
    provider_config_service_type: bool = False  # ProviderConfig.spec.serviceType required
    # ProviderConfig.spec.healthCheckEndpoint per serviceType (empty: the provider's default).
    health_check_endpoints: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    functions: tuple[str, ...] = ()  # Crossplane Function packages the compositions need
    # A data service's key in an older release -> its key in this one (a9s Redis became a9s KeyValue).
    renamed_services: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    extra_apis: tuple[str, ...] = ("servicebindings", "backups", "restores")
    # The backend's Kubernetes names (namespace `bind`, everything else `anynines-backend`).
    backend_namespace: str = "bind"
    backend_name: str = "anynines-backend"
    backend_listen_port: int = 9443  # plain HTTP; TLS ends at the ingress/gateway

    # Tenant side: the kube-bind API version of APIServiceBinding, APIServiceNamespace and
    # APIServiceExportRequest; APIServiceBinding is cluster-scoped in every released CRD set (it
    # became namespaced only on klutchio's unreleased main).
    kube_bind_version: str = "v1alpha1"
    api_service_binding_namespaced: bool = False
    # The konnector as klutchio's bind/deploy/konnector manifests name it, and the Secret holding the
    # provider-side kubeconfig that every APIServiceBinding references.
    konnector_name: str = "konnector"  # Deployment, ServiceAccount and `app` label
    konnector_cluster_role: str = "klutch-bind-konnector"  # ClusterRole and ClusterRoleBinding
    konnector_kubeconfig_secret: str = "kubeconfig"  # Secret name; its key is always `kubeconfig`

    def backend(self, kind: str | None = None) -> Backend:
        return self.backends[kind or self.default_backend]

    def crd_urls(self, backend: Backend) -> tuple[str, ...]:
        """The central cluster's kube-bind CRD files: the release's, plus the backend's template CRD."""
        return self.kube_bind_crd_urls + ((backend.template_crd_url,) if backend.template_crd_url else ())


DATA_SERVICES: Mapping[str, DataService] = MappingProxyType(
    {
        s.key: s
        for s in (
            DataService("redis", "a9s Redis"),
            DataService("messaging", "a9s Messaging"),
            DataService("logme2", "a9s LogMe2"),
            DataService("prometheus", "a9s Prometheus"),
            DataService("search", "a9s Search"),
            DataService("mongodb", "a9s MongoDB"),
            DataService("mariadb", "a9s MariaDB"),
            DataService("postgresql", "a9s PostgreSQL"),
            DataService("keyvalue", "a9s KeyValue"),
        )
    }
)

EXTRA_APIS: Mapping[str, ExtraApi] = MappingProxyType(
    {
        a.resource: a
        for a in (
            ExtraApi(
                "servicebindings",
                permission_claims=(
                    ("", "secrets", "v1", "Provider"),
                    ("", "configmaps", "v1", "Provider"),
                ),
            ),
            ExtraApi("backups"),
            ExtraApi("restores"),
        )
    }
)

_V100_SERVICES = ("redis", "messaging", "logme2", "prometheus", "search", "mongodb", "mariadb", "postgresql")
_V15_SERVICES = ("keyvalue", "messaging", "logme2", "prometheus", "search", "mongodb", "mariadb", "postgresql")
_ECR = "public.ecr.aws/w5n9a2g2"
# klutchio's v1.5.0 tag; its root kustomization names these files on a moving branch, pinned here.
_KLUTCHIO_V150 = "https://raw.githubusercontent.com/anynines/klutchio/164af973b034ed0a7284a51a33c4a9a3fe794ef5"
_V150_CRDS = tuple(
    f"{_KLUTCHIO_V150}/bind/deploy/crd/klutch.anynines.com_{plural}.yaml"
    for plural in (
        "apiservicebindings",
        "apiserviceexportrequests",
        "apiserviceexports",
        "apiservicenamespaces",
        "clusterbindings",
    )
)
_OIDC_AUTHORIZE_URL = "--oidc-authorize-url"

RELEASES: Mapping[str, KlutchRelease] = MappingProxyType(
    {
        r.name: r
        for r in (
            KlutchRelease(
                name="v1.0.0",
                description="klutchio v1.0.0 (provider-anynines v1.2.0, kubebind-backend v1.3.0), the 2024 procedure",
                provider_package=f"{_ECR}/anynines/provider-anynines:v1.2.0",
                configuration_package=f"{_ECR}/anynines/dataservices:v1.2.0",
                konnector_image=f"{_ECR}/anynines/konnector:v1.3.0",
                kube_bind_crd_urls=(
                    "https://anynines-artifacts.s3.eu-central-1.amazonaws.com/central-management/v1.3.0/crds.yaml",
                ),
                kube_bind_group="klutch.anynines.com",
                binder_cluster_role="kube-binder",
                konnector_namespace="klutch-bind",
                crossplane_min=(1, 15),
                crossplane_max=(1, 20),
                data_services=_V100_SERVICES,
                backends=MappingProxyType(
                    {
                        "anynines": Backend(
                            "anynines",
                            f"{_ECR}/anynines/kubebind-backend:v1.3.0",
                            "bind.anynines.com/v1alpha1",
                            template_crd_url=None,
                            probe_path="/export",
                            bind_noninteractive=True,
                        ),
                    }
                ),
            ),
            KlutchRelease(
                name="v1.5.0",
                description="klutchio v1.5.0 (provider-anynines and dataservices v1.5.0, "
                "function-patch-and-transform v0.9.2)",
                provider_package=f"{_ECR}/klutch/provider-anynines:v1.5.0",
                configuration_package=f"{_ECR}/klutch/dataservices:v1.5.0",
                konnector_image=f"{_ECR}/klutch/konnector:v1.5.0",
                kube_bind_crd_urls=_V150_CRDS,
                kube_bind_group="klutch.anynines.com",
                binder_cluster_role="klutch-binder",
                konnector_namespace="klutch-bind",
                crossplane_min=(1, 17, 1),  # the dataservices package requires >=v1.17.1
                crossplane_max=(1, 20),
                data_services=_V15_SERVICES,
                backends=MappingProxyType(
                    {
                        "anynines": Backend(
                            "anynines",
                            f"{_ECR}/anynines/kubebind-backend:v1.6.0",
                            "bind.anynines.com/v1alpha1",
                            template_crd_url=f"{_KLUTCHIO_V150}/release/bases/install/kube-bind-crds.yaml",
                            probe_path="/healthz",
                            bind_noninteractive=True,
                        ),
                        "open-source": Backend(
                            "open-source",
                            f"{_ECR}/klutch/example-backend:v1.5.0",
                            "example-backend.klutch.anynines.com/v1alpha1",
                            template_crd_url=f"{_KLUTCHIO_V150}/bind/contrib/deploy/crd/"
                            "example-backend.klutch.anynines.com_apiserviceexporttemplates.yaml",
                            probe_path="/export",
                            bind_noninteractive=False,
                            optional_flags=frozenset({_OIDC_AUTHORIZE_URL}),
                        ),
                    }
                ),
                provider_config_service_type=True,
                health_check_endpoints=MappingProxyType(
                    {"servicebroker": "/osb_ext/v1/healthy", "backupmanager": "/v2/healthy"}
                ),
                functions=("xpkg.upbound.io/crossplane-contrib/function-patch-and-transform:v0.9.2",),
                renamed_services=MappingProxyType({"redis": "keyvalue"}),
            ),
        )
    }
)

CENTRAL_PROJECT = "klutch-central"  # the central Pulumi project's name (and its config namespace)
DEFAULT_RELEASE = "v1.5.0"  # what a new stack gets; every shipped stack names its release


# --------------------------------------------------------------------------- Crossplane packages
# Names and API versions shared by every release (klutchio's manifests and release bundles).
# On every kube-bind CRD: the files (URLs or paths, a JSON list) the stack applied it from. The policy pack
# reads it to check remote manifests under the real engine, which hands it the CRDs, not the file group.
CRD_SOURCE_ANNOTATION = "klutch.anynines.com/source-files"
CROSSPLANE_DEPLOYMENT = "crossplane"  # the core Deployment the Crossplane chart creates
CROSSPLANE_ARGS = ("--enable-ssa-claims",)  # Server-Side Apply for claims (a Klutch prerequisite)
CROSSPLANE_PKG_API_VERSION = "pkg.crossplane.io/v1"  # Provider, Configuration, Function
CROSSPLANE_RUNTIME_CONFIG_API_VERSION = "pkg.crossplane.io/v1beta1"  # DeploymentRuntimeConfig (only version)
PROVIDER_NAME = "provider-anynines"  # the Provider and its DeploymentRuntimeConfig
CONFIGURATION_NAME = "anynines-dataservices"  # klutchio release bundles' name for the dataservices package
PACKAGE_RUNTIME_CONTAINER = "package-runtime"  # Crossplane's name for a provider's container
PROVIDER_HEALTH_PATH = "/healthz"  # provider-anynines readiness endpoint
PROVIDER_HEALTH_PORT = 8081
PROVIDER_CONFIG_API_VERSION = "dataservices.anynines.com/v1"  # cluster-scoped, CRD from the provider package
PROVIDER_CONFIG_PLURAL = "providerconfigs"


def function_name(package: str) -> str:
    """The Function object's name for a function package: its repository name, as compositions
    reference it (`xpkg.upbound.io/crossplane-contrib/function-patch-and-transform:v0.9.2` →
    `function-patch-and-transform`)."""
    return package.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


@dataclass(frozen=True)
class ProviderEndpoint:
    """One of the two a9s endpoints of every data service. Compositions hard-code the
    ProviderConfig names `<svc>-<suffix>`; the Secrets are named `<svc>-<suffix>-creds`."""

    config_key: str  # the block under dataServices.<svc> in config
    suffix: str
    service_type: str  # ProviderConfig.spec.serviceType, for releases that require it

    def provider_config_name(self, service: str) -> str:
        return f"{service}-{self.suffix}"

    def secret_name(self, service: str) -> str:
        return f"{service}-{self.suffix}-creds"


SERVICE_BROKER = ProviderEndpoint("serviceBroker", "service-broker", "servicebroker")
BACKUP_MANAGER = ProviderEndpoint("backupManager", "backup-manager", "backupmanager")
PROVIDER_ENDPOINTS = (SERVICE_BROKER, BACKUP_MANAGER)


# --------------------------------------------------------------------------- Helm charts
# Pod Security Standards levels, loosest first (the values of the `pod-security.kubernetes.io/*` labels).
POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")


@dataclass(frozen=True)
class Chart:
    """A pinned Helm chart: `repo` is an HTTP chart repository or an `oci://` reference."""

    chart: str
    repo: str
    version: str
    namespace: str
    timeout_seconds: int = 600
    # The strictest Pod Security level that every pod in the chart's namespace meets with the values the
    # program sets: the chart's own pods and the pods its controller creates there. Enforced on the namespace.
    pod_security: str = "restricted"


_PROMETHEUS_COMMUNITY = "https://prometheus-community.github.io/helm-charts"

CHARTS: Mapping[str, Chart] = MappingProxyType(
    {
        # baseline: the chart's containers drop no capabilities and set no seccomp profile, and neither do
        # the provider and function pods the package manager creates in its namespace.
        "crossplane": Chart(
            "crossplane", "https://charts.crossplane.io/stable", "1.20.11", "crossplane-system", pod_security="baseline"
        ),
        "cert-manager": Chart("cert-manager", "https://charts.jetstack.io", "v1.19.6", "cert-manager"),
        "envoy-gateway": Chart("oci://docker.io/envoyproxy/gateway-helm", "", "v1.7.5", "envoy-gateway-system"),
        "ingress-nginx": Chart(
            "ingress-nginx", "https://kubernetes.github.io/ingress-nginx", "4.13.9", "ingress-nginx"
        ),
        # observability.mode install: Prometheus Operator, Prometheus, Alertmanager, Grafana (optional)
        # baseline: the chart's Grafana and admission jobs set no seccomp profile everywhere; node-exporter,
        # which needs the host's namespaces (privileged), is off (node metrics are not this layer's concern)
        "kube-prometheus-stack": Chart(
            "kube-prometheus-stack", _PROMETHEUS_COMMUNITY, "88.6.1", "monitoring", pod_security="baseline"
        ),
        # Klutch's health as metrics (custom-resource-state only), in both observability modes
        "kube-state-metrics": Chart("kube-state-metrics", _PROMETHEUS_COMMUNITY, "8.4.1", "klutch-monitoring"),
    }
)


# --------------------------------------------------------------------------- AWS / Kubernetes
# EKS Kubernetes versions the program is tested against (kubernetes-validate ships 1.25–1.37 schemas).
ENVIRONMENTS = ("dev", "staging", "prod")  # prod: protect by default, every policy mandatory
CONTROLLERS = ("envoy-gateway", "ingress-nginx")  # exposure.controller: each is a chart in CHARTS

KUBERNETES_VERSIONS = ("1.30", "1.31", "1.32", "1.33", "1.34", "1.35")
DEFAULT_KUBERNETES_VERSION = "1.33"


@dataclass(frozen=True)
class InstanceSize:
    vcpu: int
    memory_gib: int


# x86_64 node types at least t3a.xlarge-sized (4 vCPU / 16 GiB). Graviton (arm64) types are left
# out on purpose: the Klutch images are published for amd64.
INSTANCE_TYPES: Mapping[str, InstanceSize] = MappingProxyType(
    {
        **{f"{fam}.xlarge": InstanceSize(4, 16) for fam in ("t3", "t3a", "m5", "m5a", "m6i", "m6a", "m7i", "m7a")},
        **{f"{fam}.2xlarge": InstanceSize(8, 32) for fam in ("t3", "t3a", "m5", "m5a", "m6i", "m6a", "m7i", "m7a")},
        **{f"{fam}.4xlarge": InstanceSize(16, 64) for fam in ("m5", "m5a", "m6i", "m6a", "m7i", "m7a")},
        **{f"{fam}.xlarge": InstanceSize(4, 32) for fam in ("r5", "r5a", "r6i", "r6a", "r7i")},
        **{f"{fam}.2xlarge": InstanceSize(8, 64) for fam in ("r5", "r5a", "r6i", "r6a", "r7i")},
    }
)
DEFAULT_INSTANCE_TYPE = "t3a.xlarge"

CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")

ACME_SERVERS: Mapping[str, str] = MappingProxyType(
    {
        "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
        "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    }
)


# --------------------------------------------------------------------------- exported APIs
def exported_apis(release: KlutchRelease, enabled_service_keys: Iterable[str]) -> tuple[ExtraApi, ...]:
    """Every API the central cluster exports to tenants, in catalog order: one `<svc>instances` per
    enabled data service, then the release's extra APIs (service bindings, backups, restores).

    Drives both the APIServiceExportTemplates and the `apis` list of a tenant's binding.json.
    """
    enabled = set(enabled_service_keys)
    unknown = enabled - set(release.data_services)
    if unknown:
        raise ValueError(f"data services {sorted(unknown)} are not served by Klutch {release.name}")
    services = (DATA_SERVICES[k] for k in release.data_services if k in enabled)
    return tuple(ExtraApi(s.plural, s.group) for s in services) + tuple(EXTRA_APIS[a] for a in release.extra_apis)


def binding_apis(release: KlutchRelease, enabled_service_keys: Iterable[str]) -> list[dict[str, str]]:
    """The `apis` list of binding.json (non-interactive bind) for exactly the exported APIs."""
    return [{"group": a.group, "resource": a.resource} for a in exported_apis(release, enabled_service_keys)]


# --------------------------------------------------------------------------- edge (TLS, ingress/gateway)
CERT_MANAGER_API = "cert-manager.io/v1"
CERT_MANAGER_CONFIG_API = "controller.config.cert-manager.io/v1alpha1"  # the chart's `config` block
GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_GATEWAY_API = "gateway.envoyproxy.io/v1alpha1"  # EnvoyProxy
ENVOY_GATEWAY_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"  # chart default controllerName
INGRESS_NGINX_CLASS = "nginx"  # chart default controller.ingressClassResource.name
BACKEND_SERVICE_PORT = 443  # the backend Service's port (443 -> the listen port)

# Service annotations for an internet-facing AWS Network Load Balancer made by the in-tree AWS
# cloud provider (EKS runs it; no AWS Load Balancer Controller needed) — ingress-nginx's AWS preset.
AWS_NLB_SERVICE_ANNOTATIONS: Mapping[str, str] = MappingProxyType(
    {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-backend-protocol": "tcp",
        "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled": "true",
    }
)


# --------------------------------------------------------------------------- observability
CLAIM_API_VERSION = "anynines.com/v1"  # every data service's claim (XRD claimNames, version v1)
MONITORING_API = "monitoring.coreos.com/v1"  # ServiceMonitor, PodMonitor, PrometheusRule (Prometheus Operator)
OBSERVABILITY_MODES = ("install", "existing")  # install: kube-prometheus-stack too; existing: the cluster's own
# The label every monitor and rule carries by default: what kube-prometheus-stack's Prometheus selects.
DEFAULT_MONITOR_LABELS: Mapping[str, str] = MappingProxyType({"release": "kube-prometheus-stack"})
# The label kube-prometheus-stack's Grafana sidecar loads dashboards from (any namespace).
GRAFANA_DASHBOARD_LABELS: Mapping[str, str] = MappingProxyType({"grafana_dashboard": "1"})
# Where the alerts' runbooks are: the operations guide's Monitoring section, relative to the docs' base URL.
RUNBOOK_DOC = "docs/operations.md"
# The Envoy Gateway controller's pods and metrics port (gateway-helm has no monitor option of its own).
ENVOY_GATEWAY_POD_LABELS: Mapping[str, str] = MappingProxyType({"control-plane": "envoy-gateway"})
