"""The central stack's configuration: parsed once into frozen objects, validated as a whole.

`load()` reads the stack's config; `parse()` is the pure function behind it (tests call it with
plain dicts). Every problem is collected and raised together in one `ConfigError` before any
resource is declared. docs/configuration.md documents each key.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from klutch import catalog
from klutch.config import reader
from klutch.config.mirrors import Mirrors, parse_mirrors, release_images
from klutch.config.reader import (
    ConfigError,
    Reader,
    Secret,
    TopReader,
    check_cidr,
    check_dns_label,
    check_dns_name,
    check_email,
    check_kubeconfig,
    check_url,
    load_stack,
    parse_top,
    reserved_host_warning,
)

NAMESPACE = catalog.CENTRAL_PROJECT
# The other config namespaces the program reads (the Pulumi engine's and its providers').
OTHER_NAMESPACES = ("pulumi", "aws", "eks", "kubernetes", "random", "tls")
REGION_KEY = "aws:region"
RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
NAT_STRATEGIES = ("single", "one-per-az")
CLUSTER_MODES = ("eks", "existing")
CONSUMER_SCOPES = ("Namespaced", "Cluster")
ENDPOINT_KINDS = tuple(e.config_key for e in catalog.PROVIDER_ENDPOINTS)  # serviceBroker, backupManager
_IAM_PRINCIPAL = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:(role|user|assumed-role)/[\w+=,.@/-]+$")
_AZ = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$")
_ZONE_ID = re.compile(r"^Z[A-Z0-9]{1,31}$")
ROTATION_MAX = 1_000_000
ANYWHERE = ("0.0.0.0/0",)
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


# ------------------------------------------------------------------------------- the objects
@dataclass(frozen=True)
class NetworkConfig:
    cidr: str
    availability_zones: tuple[str, ...]  # empty: the first `az_count` of the region
    az_count: int
    nat_gateways: str  # single | one-per-az


@dataclass(frozen=True)
class NodeScaling:
    min: int
    desired: int
    max: int


@dataclass(frozen=True)
class ClusterConfig:
    mode: str  # eks | existing
    name: str
    kubernetes_version: str
    instance_type: str
    nodes: NodeScaling
    disk_size_gib: int
    endpoint_public_access: bool
    public_access_cidrs: tuple[str, ...]
    admin_principal_arns: tuple[str, ...]
    log_types: tuple[str, ...]
    deletion_protection: bool
    api_server_url: str | None  # the API address tenants reach, when it differs from the kubeconfig's
    kubeconfig: Secret | None  # mode existing


@dataclass(frozen=True)
class Endpoint:
    """A service broker or backup manager of one data service."""

    url: str
    username: Secret
    password: Secret


@dataclass(frozen=True)
class DataServiceConfig:
    service: catalog.DataService
    endpoints: Mapping[str, Endpoint]  # by catalog.ProviderEndpoint.config_key

    @property
    def key(self) -> str:
        return self.service.key

    def endpoint(self, kind: catalog.ProviderEndpoint) -> Endpoint:
        return self.endpoints[kind.config_key]

    @property
    def service_broker(self) -> Endpoint:
        return self.endpoint(catalog.SERVICE_BROKER)

    @property
    def backup_manager(self) -> Endpoint:
        return self.endpoint(catalog.BACKUP_MANAGER)


@dataclass(frozen=True)
class ExposureConfig:
    controller: str
    acme_email: str | None
    acme_server: str  # URL


@dataclass(frozen=True)
class BackendConfig:
    kind: str  # the backend image of the release: a key of release.backends
    host: str | None
    route53_zone_id: str | None
    namespace_prefix: str
    pretty_name: str
    consumer_scope: str


@dataclass(frozen=True)
class OidcConfig:
    issuer_url: str
    client_id: str
    client_secret: Secret
    check_issuer: bool = True  # the issuer preflight of preview and up (klutch.config.issuer)


@dataclass(frozen=True)
class RotationConfig:
    """Generation counters of what the stack generates itself: raising one makes the next `pulumi up`
    generate that secret anew (0: the first generation, as every stack starts)."""

    cookie_keys: int = 0  # the backend's cookie signing and encryption keys
    backend_ca: int = 0  # the self-signed CA of the backend's certificate (no backend.host)


@dataclass(frozen=True)
class NetworkPolicyConfig:
    """Where the backend and the Crossplane provider may connect to (NetworkPolicies match addresses)."""

    api_server_cidrs: tuple[str, ...]  # the API server's endpoints (where `kubernetes.default` forwards)
    oidc_issuer_cidrs: tuple[str, ...]  # the OIDC issuer's addresses
    oidc_issuer_namespace: str | None  # an IdP inside the cluster: its namespace's pods instead of CIDRs
    oidc_issuer_port: int  # the port the backend's connections to the issuer arrive on
    data_service_cidrs: tuple[str, ...]  # brokers and backup managers whose URL names a host (not an IP)


@dataclass(frozen=True)
class ObservabilityConfig:
    """The optional monitoring layer: monitors, alerts and a dashboard, with kube-prometheus-stack in `install` mode."""

    enabled: bool = False
    mode: str = "install"  # install | existing
    labels: Mapping[str, str] = field(default_factory=lambda: dict(catalog.DEFAULT_MONITOR_LABELS))
    runbook_base_url: str = ""  # the docs' base URL; empty: runbook links are relative to the repository
    retention: str = "15d"  # install only: Prometheus' retention
    storage_size: str = "50Gi"  # install only: Prometheus' volume
    grafana: bool = True  # install only

    @property
    def install(self) -> bool:
        return self.enabled and self.mode == "install"


@dataclass(frozen=True)
class CentralConfig:
    stack: str
    environment: str
    protect: bool
    tags: Mapping[str, str]
    network: NetworkConfig
    cluster: ClusterConfig
    release: catalog.KlutchRelease
    crossplane_version: str
    data_services: tuple[DataServiceConfig, ...]
    exposure: ExposureConfig
    backend: BackendConfig
    oidc: OidcConfig
    network_policy: NetworkPolicyConfig
    mirrors: Mirrors = Mirrors()
    rotation: RotationConfig = RotationConfig()
    observability: ObservabilityConfig = ObservabilityConfig()
    warnings: tuple[str, ...] = ()

    @property
    def is_eks(self) -> bool:
        return self.cluster.mode == "eks"

    @property
    def server(self) -> catalog.Backend:
        """The chosen kube-bind backend image of the release (its mirror, when configured)."""
        return self.release.backend(self.backend.kind)


# ------------------------------------------------------------------------------- parsing
def secret_paths(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(top-level key, path) of every secret the given raw config needs (as `parse` reads them)."""
    return reader.secret_paths(parse, raw)


def load() -> CentralConfig:
    """Read and validate this stack's configuration (raises ConfigError listing every problem)."""
    return load_stack(NAMESPACE, parse)


def parse(
    raw: Mapping[str, Any],
    secret_keys: set[str] | frozenset[str],
    *,
    stack: str,
    others: Mapping[str, Any] | None = None,
) -> CentralConfig:
    """The central config; raises ConfigError with every problem. `others`: the stack's config outside
    the namespace (full keys), whose namespaces and `aws:region` are checked too (None: not known)."""
    return parse_top(
        NAMESPACE,
        raw,
        secret_keys,
        stack=stack,
        read=lambda top, warnings: _read(top, warnings, stack, others),
        others=others,
        known_namespaces=OTHER_NAMESPACES,
    )


def _read(top: TopReader, warnings: list[str], stack: str, others: Mapping[str, Any] | None) -> CentralConfig:
    environment = top.string("environment", "dev", choices=catalog.ENVIRONMENTS)
    protect = top.boolean("protect", environment == "prod")
    if environment == "prod" and not protect:
        warnings.append("environment is 'prod' but protect is false: a `pulumi destroy` can delete tenants' data")
    tags = _tags(top)

    cluster = _cluster(top, stack)
    region = _region(top, cluster.mode, others)
    network = _network(top.child("network"), region)
    if cluster.mode == "existing" and top.has("network"):
        top.problem("network", "{...}", "must not be set when cluster.mode is 'existing' (no AWS network is built)")

    release_name = top.string("klutchRelease", catalog.DEFAULT_RELEASE, choices=sorted(catalog.RELEASES))
    release = catalog.RELEASES.get(release_name or "", catalog.RELEASES[catalog.DEFAULT_RELEASE])
    mirrors = parse_mirrors(top.child("mirrors"), release_images(release), Path.cwd())
    crossplane_version = _crossplane_version(top, release)
    data_services = _data_services(top, release)
    exposure_reader = top.child("exposure")
    exposure = _exposure(exposure_reader, warnings)
    # an acmeEmail that is set but invalid is reported once, as itself
    email_set = exposure_reader.has("acmeEmail")
    backend = _backend(top.child("backend"), release, exposure, cluster.mode, warnings, acme_email_set=email_set)
    oidc = _oidc(top.child("oidc"))
    warnings[:0] = _reserved_hosts(top, backend, oidc, data_services)  # first: the costliest mistake
    rotation = _rotation(top.child("rotation"))
    network_policy = _network_policy(top.child("networkPolicy"), cluster.mode, network.cidr, oidc.issuer_url)
    observability = _observability(top.child("observability"), environment)
    return CentralConfig(
        stack=stack,
        environment=environment,
        protect=protect,
        tags=tags,
        network=network,
        cluster=cluster,
        release=mirrors.release(release),
        mirrors=mirrors,
        crossplane_version=crossplane_version,
        data_services=data_services,
        exposure=exposure,
        backend=backend,
        oidc=oidc,
        rotation=rotation,
        network_policy=network_policy,
        observability=observability,
        warnings=tuple(warnings),
    )


def _tags(top: TopReader) -> Mapping[str, str]:
    tags = top.mapping("tags") or {}
    good = {}
    for k, v in tags.items():
        if not isinstance(v, str) or not (0 < len(k) <= 128) or k.startswith("aws:"):
            top.problem(f"tags.{k}", v, "tags map names (1-128 characters, not 'aws:...') to strings")
        else:
            good[k] = v
    return good


def _region(top: TopReader, mode: str, others: Mapping[str, Any] | None) -> str | None:
    """The AWS region of an EKS stack; a problem when it is unset (the AWS provider would ask the cloud)."""
    if others is None or mode != "eks":
        return None
    region = others.get(REGION_KEY)
    if not isinstance(region, str) or not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        top.problem_at(
            REGION_KEY,
            region,
            "required for cluster.mode 'eks', an AWS region such as 'eu-central-1' (where the cluster and its "
            f"network are created): `pulumi config set {REGION_KEY} <region>`",
        )
        return None
    return region


def _network(r: Reader, region: str | None) -> NetworkConfig:
    cidr = r.string("cidr", "10.0.0.0/16", check=_check_vpc_cidr)
    zones = _zones(r, region)
    az_count = r.integer("azCount", max(len(zones), 3), minimum=3, maximum=6)
    if zones and len(zones) != az_count:
        r.problem("availabilityZones", list(zones), f"must list exactly azCount ({az_count}) zones")
    nat = r.string("natGateways", "single", choices=NAT_STRATEGIES)
    r.finish()
    return NetworkConfig(cidr=cidr, availability_zones=zones, az_count=az_count, nat_gateways=nat)


def _zones(r: Reader, region: str | None) -> tuple[str, ...]:
    """The configured zones, every problem of them in one round (names, region, repeats)."""

    def check(zone: str) -> str | None:
        if not _AZ.match(zone):
            return "must be an availability-zone name such as 'eu-central-1a'"
        if region and not re.fullmatch(rf"{re.escape(region)}[a-z]", zone):
            return f"is not a zone of {REGION_KEY} {region!r} (e.g. '{region}a')"
        return None

    listed = r.peek("availabilityZones")
    zones = r.strings("availabilityZones", check=check)
    if isinstance(listed, list) and len(set(map(str, listed))) != len(listed):
        r.problem("availabilityZones", listed, "must not repeat a zone")
        return ()
    return zones


def _check_vpc_cidr(value: str) -> str | None:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return "must be an IPv4 CIDR block with no host bits set, e.g. '10.0.0.0/16'"
    if not 16 <= net.prefixlen <= 20:
        return "prefix must be /16 to /20 (3 private subnets for nodes and pods plus 3 public subnets must fit)"
    if not any(net.subnet_of(block) for block in RFC1918):
        return "must be inside an RFC 1918 private range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
    return None


def subnet_layout(cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """(private, public) subnet CIDRs, one each per AZ, non-overlapping and inside `cidr`.

    The private subnets (nodes and pods: the VPC CNI gives every pod a VPC address) take the
    large blocks; the public subnets (load balancers, NAT gateways) share the last block.
    """
    vpc = ipaddress.IPv4Network(cidr)
    bits = math.ceil(math.log2(az_count + 1))
    blocks = list(vpc.subnets(prefixlen_diff=bits))
    private = [str(b) for b in blocks[:az_count]]
    public_bits = max(2, math.ceil(math.log2(az_count)))
    public = [str(b) for b in list(blocks[-1].subnets(prefixlen_diff=public_bits))[:az_count]]
    return private, public


# Keys of `cluster` that only an EKS cluster the program creates has.
_EKS_ONLY = (
    "instanceType",
    "nodes",
    "diskSizeGiB",
    "endpointPublicAccess",
    "publicAccessCidrs",
    "adminPrincipalArns",
    "logTypes",
    "deletionProtection",
    "kubernetesVersion",
)


def _check_cluster_name(value: str) -> str | None:
    if re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_-]{0,99}", value):
        return None
    return "must start with a letter and use letters, digits, '-' and '_' (at most 100)"


def _check_principal(value: str) -> str | None:
    if _IAM_PRINCIPAL.match(value):
        return None
    return "must be an IAM role or user ARN, e.g. 'arn:aws:iam::123456789012:role/platform-admin'"


def _check_log_type(value: str) -> str | None:
    if value in catalog.CONTROL_PLANE_LOG_TYPES:
        return None
    return f"must be one of {', '.join(catalog.CONTROL_PLANE_LOG_TYPES)}"


def _cluster(top: TopReader, stack: str) -> ClusterConfig:
    r = top.child("cluster")
    mode = r.string("mode", "eks", choices=CLUSTER_MODES)
    name = r.string("name", f"klutch-{stack}"[:100], check=_check_cluster_name)
    version = r.string("kubernetesVersion", catalog.DEFAULT_KUBERNETES_VERSION, check=_check_k8s_version)
    instance_type = r.string("instanceType", catalog.DEFAULT_INSTANCE_TYPE, check=_check_instance_type)
    nodes = _nodes(r)
    disk = r.integer("diskSizeGiB", 50, minimum=20, maximum=1000)
    public = r.boolean("endpointPublicAccess", True)
    cidrs = r.strings("publicAccessCidrs", ("0.0.0.0/0",), check=check_cidr)
    if not public and r.has("publicAccessCidrs"):
        r.problem("publicAccessCidrs", list(cidrs), "can only be set when endpointPublicAccess is true")
    if public and not cidrs:
        r.problem("publicAccessCidrs", [], "must list at least one CIDR when endpointPublicAccess is true")
    admins = r.strings("adminPrincipalArns", check=_check_principal)
    logs = r.strings("logTypes", catalog.CONTROL_PLANE_LOG_TYPES, check=_check_log_type)
    deletion_protection = r.boolean("deletionProtection", False)
    api_url = r.string("apiServerUrl", None, check=check_url(("https",)))
    if mode == "existing":
        for key in _EKS_ONLY:
            if r.has(key):
                r.problem(key, "(set)", "applies to cluster.mode 'eks' only; remove it for an existing cluster")
    r.finish()
    return ClusterConfig(
        mode=mode,
        name=name,
        kubernetes_version=version,
        instance_type=instance_type,
        nodes=nodes,
        disk_size_gib=disk,
        endpoint_public_access=public,
        public_access_cidrs=cidrs if public else (),
        admin_principal_arns=admins,
        log_types=logs,
        deletion_protection=deletion_protection,
        api_server_url=api_url,
        kubeconfig=_existing_kubeconfig(top, mode),
    )


def _existing_kubeconfig(top: TopReader, mode: str | None) -> Secret | None:
    """The kubeconfig of an existing cluster (a secret); any other mode must not set one."""
    if mode == "existing":
        return top.secret(
            "kubeconfig",
            required=True,
            also=" (or: cat kubeconfig | pulumi config set --secret kubeconfig)",
            check=lambda text: check_kubeconfig(text, need_ca=True),
        )
    if top.has("kubeconfig"):
        top.problem(
            "kubeconfig",
            "[secret]",
            "only for cluster.mode 'existing'; an EKS cluster's kubeconfig is built by the program",
        )
        top.take("kubeconfig")
    return None


def _nodes(r: Reader) -> NodeScaling:
    n = r.child("nodes")
    lo = n.integer("min", 3, minimum=3, maximum=100)
    desired = n.integer("desired", max(lo, 3), minimum=3, maximum=100)
    hi = n.integer("max", max(desired, 6), minimum=3, maximum=100)
    if not lo <= desired <= hi:
        n.problem("desired", desired, f"must satisfy min ({lo}) <= desired ({desired}) <= max ({hi})")
    n.finish()
    return NodeScaling(lo, desired, hi)


def _check_k8s_version(value: str) -> str | None:
    if not re.fullmatch(r"1\.\d{2}", value):
        return (
            f"must be 'MAJOR.MINOR' (e.g. '{catalog.DEFAULT_KUBERNETES_VERSION}'), "
            f"one of {', '.join(catalog.KUBERNETES_VERSIONS)}"
        )
    if value not in catalog.KUBERNETES_VERSIONS:
        return f"unsupported; supported: {', '.join(catalog.KUBERNETES_VERSIONS)}"
    return None


def _check_instance_type(value: str) -> str | None:
    if value in catalog.INSTANCE_TYPES:
        return None
    return "must be an x86_64 type with at least 4 vCPU / 16 GiB (t3a.xlarge class); allowed: " + ", ".join(
        sorted(catalog.INSTANCE_TYPES)
    )


def _crossplane_version(top: TopReader, release: catalog.KlutchRelease) -> str:
    lo, hi = release.crossplane_min, release.crossplane_max
    allowed = (
        f"a Crossplane chart version X.Y.Z from {'.'.join(map(str, lo))} to {hi[0]}.{hi[1]}.x "
        f"(Klutch {release.name}; Crossplane 2 is not supported)"
    )

    def check(value: str) -> str | None:
        m = _SEMVER.match(value)
        if not m:
            return f"must be {allowed}"
        version = (int(m[1]), int(m[2]), int(m[3]))
        if not (lo <= version[: len(lo)] and version[:2] <= hi):
            return f"unsupported; must be {allowed}"
        return None

    version = top.string("crossplaneVersion", catalog.CHARTS["crossplane"].version, check=check)
    return version.lstrip("v")


def _data_services(top: TopReader, release: catalog.KlutchRelease) -> tuple[DataServiceConfig, ...]:
    """The enabled data services (none is valid: a platform without brokers yet), sorted by name."""
    r = top.child("dataServices")
    valid = release.data_services
    out = []
    for key in sorted(r.keys):
        if key not in valid:
            renamed = release.renamed_services.get(key)
            why = f"is {renamed} in" if renamed else "unknown data service for"
            r.problem(key, "{...}", f"{why} Klutch {release.name}; valid: {', '.join(valid)}")
            r.take(key)
            continue
        svc_reader = r.child(key)
        endpoints = {}
        for kind in ENDPOINT_KINDS:
            if not svc_reader.has(kind):
                svc_reader.problem(kind, None, "required: an object with url, username and password (secret)")
                svc_reader.take(kind)
                continue
            e = svc_reader.child(kind)
            url = e.string("url", required=True, check=check_url(("http", "https")))
            username = e.string(
                "username",
                required=True,
                check=lambda v: (
                    None if v and v.strip() == v else "must be a non-empty user name without surrounding spaces"
                ),
            )
            password = e.secret("password", required=True)
            e.finish()
            endpoints[kind] = Endpoint(url or "", Secret(username or ""), password or Secret(""))
        svc_reader.finish()
        if len(endpoints) == len(ENDPOINT_KINDS):
            out.append(DataServiceConfig(catalog.DATA_SERVICES[key], endpoints))
    return tuple(out)


def _exposure(r: Reader, warnings: list[str]) -> ExposureConfig:
    controller = r.string("controller", "envoy-gateway", choices=catalog.CONTROLLERS)
    if controller == "ingress-nginx":
        warnings.append(
            "exposure.controller 'ingress-nginx' is retired upstream (no fixes after 2026-03); prefer 'envoy-gateway'"
        )
    email = r.string("acmeEmail", None, check=check_email)
    server = r.string(
        "acmeServer",
        "letsencrypt-staging",
        check=lambda v: (
            None
            if v in catalog.ACME_SERVERS or not check_url(("https",))(v)
            else f"must be one of {', '.join(catalog.ACME_SERVERS)} or an https ACME directory URL"
        ),
    )
    r.finish()
    return ExposureConfig(controller=controller, acme_email=email, acme_server=catalog.ACME_SERVERS.get(server, server))


# Names public ACME CAs refuse to certify (Let's Encrypt blocks cloud-provider hostnames).
_ACME_REFUSED_SUFFIXES = (".amazonaws.com",)


def _backend(
    r: Reader,
    release: catalog.KlutchRelease,
    exposure: ExposureConfig,
    cluster_mode: str,
    warnings: list[str],
    *,
    acme_email_set: bool,
) -> BackendConfig:
    kind = r.string("kind", release.default_backend, check=lambda v: _check_backend_kind(v, release))
    host = r.string("host", None, check=check_dns_name)
    zone = r.string(
        "route53ZoneId",
        None,
        check=lambda v: (
            None if _ZONE_ID.match(v) else "must be a Route53 hosted zone id such as 'Z0123456789ABCDEFGHIJ'"
        ),
    )
    if zone and not host:
        r.problem("route53ZoneId", zone, "requires backend.host (the record to create in that zone)")
    if zone and cluster_mode == "existing":
        r.problem(
            "route53ZoneId",
            zone,
            "applies to cluster.mode 'eks' only (an existing cluster creates no AWS resource); "
            "point the host's DNS record at the loadBalancerHostname output yourself",
        )
    if host and host.endswith(_ACME_REFUSED_SUFFIXES):
        r.problem(
            "host",
            host,
            "public ACME CAs refuse cloud-provider hostnames; use a DNS name you control, "
            "or leave backend.host unset to serve the load balancer's hostname with a self-signed CA",
        )
    if host and not acme_email_set:
        r.problem("host", host, "needs exposure.acmeEmail: the ACME account e-mail for the host's certificate")
    if not host:
        warnings.append(
            "backend.host is not set: the backend is served on the load balancer's hostname with a self-signed CA "
            "(public CAs refuse those names); tenants must trust the tlsCaPem output"
        )
    elif exposure.acme_server == catalog.ACME_SERVERS["letsencrypt-staging"]:
        warnings.append(
            f"exposure.acmeServer is Let's Encrypt staging: the certificate for {host} is not publicly trusted, so "
            "tenants' `kubectl bind` fails TLS verification; use acmeServer 'letsencrypt' once DNS and HTTP-01 work"
        )
    prefix = r.string("namespacePrefix", "cluster", check=check_dns_label)
    pretty = r.string("prettyName", "anynines")
    scope = r.string("consumerScope", "Namespaced", choices=CONSUMER_SCOPES)
    r.finish()
    return BackendConfig(
        kind=kind or release.default_backend,
        host=host,
        route53_zone_id=zone,
        namespace_prefix=prefix,
        pretty_name=pretty,
        consumer_scope=scope,
    )


def _reserved_hosts(
    top: TopReader, backend: BackendConfig, oidc: OidcConfig, services: tuple[DataServiceConfig, ...]
) -> list[str]:
    """A warning for each host or URL naming a reserved example host: a stack copied from an example
    that would fail only at the end of a long `pulumi up`."""
    values = [(top.key("backend.host"), backend.host), (top.key("oidc.issuerUrl"), oidc.issuer_url)]
    values += [
        (top.key(f"dataServices.{s.key}.{kind}.url"), endpoint.url)
        for s in services
        for kind, endpoint in s.endpoints.items()
    ]
    return [w for key, value in values if value and (w := reserved_host_warning(key, value))]


def _check_backend_kind(value: str, release: catalog.KlutchRelease) -> str | None:
    if value in release.backends:
        return None
    return f"must be one of {', '.join(repr(k) for k in release.backends)} (the backends of Klutch {release.name})"


def _oidc(r: Reader) -> OidcConfig:
    issuer = r.string("issuerUrl", required=True, check=check_url(("https",)))
    client_id = r.string(
        "clientId", "kube-bind", check=lambda v: None if v.strip() == v and v else "must be a non-empty client id"
    )
    secret = r.secret("clientSecret", required=True)
    check_issuer = r.boolean("checkIssuer", True)
    r.finish()
    return OidcConfig(
        issuer_url=issuer or "", client_id=client_id, client_secret=secret or Secret(""), check_issuer=check_issuer
    )


def _rotation(r: Reader) -> RotationConfig:
    """The generation counters (docs/operations.md, "Rotating secrets")."""
    cookie_keys = r.integer("cookieKeys", 0, minimum=0, maximum=ROTATION_MAX)
    backend_ca = r.integer("backendCa", 0, minimum=0, maximum=ROTATION_MAX)
    r.finish()
    return RotationConfig(cookie_keys=cookie_keys, backend_ca=backend_ca)


def _network_policy(r: Reader, cluster_mode: str, vpc_cidr: str, issuer_url: str) -> NetworkPolicyConfig:
    """EKS: the API server's private endpoints are in the VPC. An existing cluster's are unknown: anywhere,
    narrowed with apiServerCidrs. The issuer and name-addressed brokers: anywhere, unless narrowed."""
    default_api = (vpc_cidr,) if cluster_mode == "eks" else ANYWHERE
    api = r.strings("apiServerCidrs", default_api, check=check_cidr)
    namespace = r.string("oidcIssuerNamespace", None, check=check_dns_label)
    if r.has("oidcIssuerNamespace") and r.has("oidcIssuerCidrs"):
        r.problem("oidcIssuerCidrs", "(set)", "must not be set with oidcIssuerNamespace (an IdP inside the cluster)")
    issuer = r.strings("oidcIssuerCidrs", ANYWHERE, check=check_cidr)
    port = r.integer("oidcIssuerPort", _url_port(issuer_url), minimum=1, maximum=65535)
    brokers = r.strings("dataServiceCidrs", ANYWHERE, check=check_cidr)
    for key, cidrs in (("apiServerCidrs", api), ("oidcIssuerCidrs", issuer), ("dataServiceCidrs", brokers)):
        if r.has(key) and not cidrs:
            r.problem(key, [], "must list at least one CIDR (an empty list would block that traffic)")
    r.finish()
    return NetworkPolicyConfig(api, () if namespace else issuer, namespace, port, brokers)


def _url_port(url: str) -> int:
    try:
        return urlsplit(url).port or 443
    except ValueError:
        return 443  # an invalid issuer URL is reported as oidc.issuerUrl


# Prometheus durations (its own grammar) and Kubernetes quantities in binary or decimal units.
_PROMETHEUS_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
_QUANTITY = re.compile(r"^[1-9]\d*(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)$")
_LABEL_NAME = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_INSTALL_ONLY = ("retention", "storageSize", "grafana")


def _observability(r: Reader, environment: str) -> ObservabilityConfig:
    """Off by default except in prod; `install` brings kube-prometheus-stack, `existing` uses the cluster's."""
    enabled = r.boolean("enabled", environment == "prod")
    mode = r.string("mode", "install", choices=catalog.OBSERVABILITY_MODES) or "install"
    labels = _labels(r, "selectorLabels", catalog.DEFAULT_MONITOR_LABELS)
    base = r.string("runbookBaseUrl", "", check=check_url(("https",)))
    retention = r.string(
        "retention",
        "15d",
        check=lambda v: (
            None
            if v and v != "0" and _PROMETHEUS_DURATION.match(v)
            else "must be a Prometheus duration such as '15d' or '2w' (units y, w, d, h, m, s, ms)"
        ),
    )
    size = r.string(
        "storageSize",
        "50Gi",
        check=lambda v: (
            None if _QUANTITY.match(v) else "must be a size such as '50Gi' (units Ki, Mi, Gi, Ti, k, M, G, T)"
        ),
    )
    grafana = r.boolean("grafana", True)
    if mode == "existing":
        for key in _INSTALL_ONLY:
            if r.has(key):
                r.problem(
                    key, "(set)", "applies to mode 'install' only; the existing Prometheus keeps its own settings"
                )
    r.finish()
    return ObservabilityConfig(enabled, mode, labels, (base or "").rstrip("/"), retention, size, grafana)


def _labels(r: Reader, name: str, default: Mapping[str, str]) -> Mapping[str, str]:
    """A non-empty map of Kubernetes label names to values."""
    raw = r.mapping(name)
    if raw is None:
        return dict(default)
    good = {k: v for k, v in raw.items() if isinstance(v, str) and _LABEL_NAME.match(k) and _LABEL_VALUE.match(v)}
    for key in sorted(set(raw) - set(good)):
        r.problem(
            f"{name}.{key}", raw[key], "must map a Kubernetes label name to a label value (63 characters at most)"
        )
    if not raw:
        r.problem(name, {}, "must name at least one label (the one your Prometheus selects monitors and rules by)")
    return good or dict(default)


__all__ = ["CentralConfig", "ConfigError", "load", "parse", "secret_paths", "subnet_layout"]
