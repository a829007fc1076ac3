"""The policy pack's rules: plain functions over a neutral `Resource`, importable anywhere.

Two callers share them through thin adapters, so there is one implementation of each rule:

- the real policy pack (`policy/__main__.py`, run by `pulumi preview/up --policy-pack policy`):
  `policies(environment)` wraps every rule in a `pulumi_policy.ResourceValidationPolicy` or
  `StackValidationPolicy`, converting their args with `from_policy`;
- the offline renderer (`python -m klutch.offline.render --check`): `check(resources, environment)`
  over `from_registration(...)` of the mock engine's records.

Importing this module starts nothing and does not need `pulumi_policy` (only the adapters for the
real engine import it): the only `PolicyPack(...)` call lives in `policy/__main__.py`.

Enforcement: every rule is mandatory, except the ones marked `advisory_outside_prod`, which are
mandatory only when the stack's `environment` is `prod` (advisory in dev and staging).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from klutch import catalog
from klutch.sdk import compat
from klutch.sdk.tree import dotted_walk, walk

# ------------------------------------------------------------------------------- the neutral model


class _Unknown:
    """A value the engine cannot know during preview (e.g. the id of a resource not yet created)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Any = _Unknown()


@dataclass(frozen=True)
class Resource:
    """One resource as a rule sees it, whichever engine produced it."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    # The provider's Pulumi name ('' = the engine's default provider); None when not reported.
    provider: str | None = None
    custom: bool = True
    property_dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def get(self, path: str, default: Any = None) -> Any:
        value, _ = dotted_walk(self.props, path)
        return default if value is None else value

    @property
    def kind(self) -> str | None:
        kind = self.get("kind") if self.type.startswith("kubernetes:") else None
        return kind if isinstance(kind, str) else None

    @property
    def api_group(self) -> str:
        api_version = self.get("apiVersion") or ""
        return api_version.rsplit("/", 1)[0] if isinstance(api_version, str) and "/" in api_version else ""

    @property
    def k8s_name(self) -> str:
        return str(self.get("metadata.name") or self.name)

    @property
    def namespace(self) -> str | None:
        ns = self.get("metadata.namespace")
        return ns if isinstance(ns, str) else None

    def where(self) -> str:
        """How a finding names this resource."""
        if self.kind:
            ns = f"{self.namespace}/" if self.namespace else ""
            return f"{self.kind} {ns}{self.k8s_name}"
        return f"{self.type} {self.name}"


# ------------------------------------------------------------------------------- adapters
def _provider_name(ref: str | None) -> str:
    """The Pulumi name in a provider reference 'urn:pulumi:stack::project::type::name::id'."""
    if not ref:
        return ""
    parts = ref.split("::")
    return parts[-2] if len(parts) >= 2 else ""


def from_registration(reg: Any) -> Resource:
    """A `klutch.offline.mockengine.Registration` (the offline renderer's records)."""
    return Resource(
        type=reg.type,
        name=reg.name,
        urn=reg.urn,
        props=reg.inputs,
        provider=_provider_name(reg.provider),
        custom=reg.custom,
        property_dependencies={k: tuple(v) for k, v in reg.property_dependencies.items()},
    )


def _plain(value: Any) -> Any:
    """Copy pulumi_policy's unknown-checking proxies into plain values (unknowns become UNKNOWN)."""
    from pulumi_policy import Secret
    from pulumi_policy.proxy import UnknownValueError

    def item(container: Any, key: Any) -> Any:
        try:
            return _plain(container[key])
        except UnknownValueError:
            return UNKNOWN

    if isinstance(value, Secret):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {k: item(value, k) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [item(value, i) for i in range(len(value))]
    return value


def from_policy(res: Any) -> Resource:
    """A resource as the real engine hands it to a policy: `pulumi_policy.ResourceValidationArgs` (one
    resource) or `pulumi_policy.PolicyResource` (whole-stack validation, with property dependencies)."""
    deps = getattr(res, "property_dependencies", None) or {}
    return Resource(
        type=res.resource_type,
        name=res.name,
        urn=res.urn,
        props=_plain(res.props),
        provider=res.provider.name if res.provider is not None else None,
        custom=not _is_component_type(res.resource_type),
        property_dependencies={k: tuple(d.urn for d in v) for k, v in deps.items()},
    )


# Resources of the kubernetes package that are components (their children carry the provider).
_K8S_COMPONENT_TYPES = frozenset(
    {
        "kubernetes:yaml/v2:ConfigFile",
        "kubernetes:yaml/v2:ConfigGroup",
        "kubernetes:helm.sh/v4:Chart",
        "kubernetes:kustomize/v2:Directory",
        "kubernetes:yaml:ConfigFile",
        "kubernetes:yaml:ConfigGroup",
        "kubernetes:helm.sh/v3:Chart",
        "kubernetes:kustomize:Directory",
    }
)


def _is_component_type(type_: str) -> bool:
    return type_ in _K8S_COMPONENT_TYPES or type_.startswith("klutch:")


# ------------------------------------------------------------------------------- shared facts
HELM_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart", "kubernetes:helm.sh/v3:Chart")
REMOTE_MANIFEST_TYPES = (
    "kubernetes:yaml/v2:ConfigFile",
    "kubernetes:yaml/v2:ConfigGroup",
    "kubernetes:yaml:ConfigFile",
    "kubernetes:yaml:ConfigGroup",
)
EKS_CLUSTER = "eks:index:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SUBNET = "aws:ec2/subnet:Subnet"
# The ingress/gateway controllers the program can install (config `exposure.controller`): the only
# owners of a LoadBalancer Service.
CONTROLLER_CHARTS = tuple(catalog.CHARTS[k] for k in catalog.CONTROLLERS)
GATEWAY_GROUP = "gateway.networking.k8s.io"
SOURCE = catalog.CRD_SOURCE_ANNOTATION
CROSSPLANE_PACKAGE_KINDS = ("Provider", "Configuration", "Function")
_EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")
_VERSIONED_URL = re.compile(r"/(v?\d+\.\d+(\.\d+)?[^/]*|[0-9a-f]{40})/")
_MOVING_URL = re.compile(r"/(latest|main|master|HEAD)(/|$)")


def _known(value: Any) -> bool:
    return value is not UNKNOWN


def is_open_cidr(cidr: str) -> bool:
    """True for a CIDR that covers the whole address space of its family."""
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def image_problem(image: Any) -> str | None:
    """Why a container image or package reference is not pinned (None when it is)."""
    if not isinstance(image, str):
        return None  # unknown during preview: cannot tell
    if not image:
        return "is empty"
    if "@" in image:
        return None if image.split("@", 1)[1].startswith("sha256:") else f"{image!r} has a malformed digest"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{image!r} has no tag (resolves to 'latest'); pin a version or digest"
    tag = last.split(":", 1)[1]
    if not tag or tag == "latest":
        return f"{image!r} uses the moving tag 'latest'; pin a version or digest"
    return None


def _containers(props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container spec anywhere in an object (pods, pod templates, CronJobs, runtime configs)."""
    for path, value in walk(props):
        if path.rsplit(".", 1)[-1] in ("containers", "initContainers", "ephemeralContainers") and isinstance(
            value, list
        ):
            for i, c in enumerate(value):
                if isinstance(c, Mapping):
                    yield f"{path}.{i}", c


# ------------------------------------------------------------------------------- resource rules
def eks_public_endpoint(res: Resource) -> Iterator[str]:
    if res.type == EKS_CLUSTER:
        public, cidrs = res.get("endpointPublicAccess", True), res.get("publicAccessCidrs")
    elif res.type == "aws:eks/cluster:Cluster":
        public, cidrs = res.get("vpcConfig.endpointPublicAccess", True), res.get("vpcConfig.publicAccessCidrs")
    else:
        return
    if public is False or not _known(public) or not _known(cidrs):
        return
    if not cidrs:
        yield (
            "the public API endpoint is on and publicAccessCidrs is empty, which AWS treats as 0.0.0.0/0; "
            "list the operators' CIDRs (or set endpointPublicAccess false)"
        )
        return
    for cidr in cidrs:
        if isinstance(cidr, str) and is_open_cidr(cidr):
            yield (
                f"the public API endpoint is open to {cidr}; "
                "restrict cluster.publicAccessCidrs to the operators' networks"
            )


def eks_secrets_encryption(res: Resource) -> Iterator[str]:
    if res.type == EKS_CLUSTER:
        if not res.get("encryptionConfigKeyArn"):
            yield "Kubernetes Secrets are not envelope-encrypted: set encryptionConfigKeyArn to a KMS key"
    elif res.type == "aws:eks/cluster:Cluster":
        configs = res.get("encryptionConfig")
        if not _known(configs):
            return
        configs = configs if isinstance(configs, list) else [configs] if configs else []
        if not any("secrets" in (c.get("resources") or []) for c in configs if isinstance(c, Mapping)):
            yield "Kubernetes Secrets are not envelope-encrypted: add an encryptionConfig for resources ['secrets']"


def eks_managed_nodes_only(res: Resource) -> Iterator[str]:
    """The EKS component's own (self-managed) node group stays off: nodes are the managed node groups
    the IMDSv2 and private-node rules check. A resource rule, because the engine shows a component's
    inputs only to resource validation (whole-stack validation sees its outputs)."""
    if res.type != EKS_CLUSTER:
        return
    if _known(res.get("skipDefaultNodeGroup")) and res.get("skipDefaultNodeGroup") is not True:
        yield (
            "the component's default node group is on; set skipDefaultNodeGroup and use a managed node group "
            "with a launch template (IMDSv2, private subnets)"
        )
    if res.get("nodeAssociatePublicIpAddress") is True:
        yield "nodeAssociatePublicIpAddress is true: nodes would get public IP addresses"


def _repository(image: str) -> str:
    """An image's name without registry, tag or digest (`…/anynines/kubebind-backend:v1.3.0` ->
    `kubebind-backend`): the same under any mirror's registry prefix."""
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def pinned_versions(res: Resource) -> Iterator[str]:
    """Images, Helm charts, Crossplane packages and remote manifests name an exact version."""
    if res.type in HELM_TYPES:
        version = res.get("version")
        if _known(version) and not (isinstance(version, str) and _EXACT_VERSION.match(version)):
            chart = res.get("chart")
            yield f"chart {chart!r} has no exact version (version = {version!r}); pin it in klutch/catalog.py"
        for path, value in walk(res.get("values") or {}):
            key = path.rsplit(".", 1)[-1]
            if key == "image" and isinstance(value, str) and (why := image_problem(value)):
                yield f"values.{path}: image {why}"
            if key == "tag" and value == "latest":
                yield f"values.{path}: the moving tag 'latest'; pin a version"
        return
    if res.type in REMOTE_MANIFEST_TYPES:
        files = res.get("file") or res.get("files") or []
        yield from manifest_url_problems([files] if isinstance(files, str) else files)
        return
    if not res.kind:
        return
    if res.kind == "CustomResourceDefinition":
        yield from (f"its file: {why}" for why in manifest_url_problems(crd_sources(res)))
    for path, container in _containers(res.props):
        if why := image_problem(container.get("image")):
            yield f"{path} ({container.get('name', '?')}): image {why}"
    if res.api_group == "pkg.crossplane.io" and res.kind in CROSSPLANE_PACKAGE_KINDS:
        if why := image_problem(res.get("spec.package")):
            yield f"spec.package {why}"


def crd_sources(res: Resource) -> list[Any]:
    """The files a CRD was applied from, as the program records them (`catalog.CRD_SOURCE_ANNOTATION`)."""
    annotations = res.get("metadata.annotations")
    source = annotations.get(SOURCE) if isinstance(annotations, Mapping) else None
    try:
        files = json.loads(source) if isinstance(source, str) else []
    except ValueError:
        return []
    return files if isinstance(files, list) else []


def manifest_url_problems(files: Iterable[Any]) -> Iterator[str]:
    """Remote manifest files fetched over https from a URL naming a fixed version (local paths pass)."""
    for url in files:
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            if url.startswith("http://"):
                yield f"manifest URL {url!r} is not https"
            if _MOVING_URL.search(url) or not _VERSIONED_URL.search(url):
                yield f"manifest URL {url!r} does not name a fixed version (or names a moving ref: latest, main)"


def no_load_balancers(res: Resource) -> Iterator[str]:
    """Only the ingress/gateway controller may own a LoadBalancer Service."""
    controller_namespaces = {c.namespace for c in CONTROLLER_CHARTS}
    if res.kind == "Service" and res.api_group == "" and res.get("spec.type") == "LoadBalancer":
        if res.namespace not in controller_namespaces:
            yield (
                "is a LoadBalancer Service outside the controller's namespace "
                f"({', '.join(sorted(controller_namespaces))}); expose it through the ingress/gateway instead"
            )
    elif res.type in HELM_TYPES and res.get("chart") not in {c.chart for c in CONTROLLER_CHARTS}:
        for path, value in walk(res.get("values") or {}):
            if path.rsplit(".", 1)[-1] == "type" and value == "LoadBalancer":
                chart = res.get("chart")
                why = "asks for a LoadBalancer Service; only the controller may have one"
                yield f"values.{path}: chart {chart!r} {why}"


def explicit_provider(res: Resource) -> Iterator[str]:
    if not res.type.startswith("kubernetes:"):
        return
    if res.provider is None and not res.custom:
        return  # a component: the engine reports the provider on its children
    if not res.provider or res.provider.startswith("default"):
        yield (
            f"uses the default Kubernetes provider ({res.provider or 'none given'}), i.e. whatever cluster the "
            "ambient kubeconfig points at; pass provider=<the cluster's provider>"
        )


# ------------------------------------------------------------------------------- workload security
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
PSA = "pod-security.kubernetes.io/"
# Pod Security "restricted": the one capability a container may add, the seccomp profiles it may run under.
ALLOWED_CAPABILITY = "NET_BIND_SERVICE"
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")


def in_central_project(res: Resource) -> bool:
    """The central stack's own objects (the tenant project writes others' manifests: the konnector's)."""
    parts = res.urn.split("::")
    return len(parts) > 2 and parts[1] == catalog.CENTRAL_PROJECT


def pod_spec(res: Resource) -> Mapping[str, Any] | None:
    """The pod spec of a workload object (Pod, CronJob or one with a pod template)."""
    if res.api_group not in ("", "apps", "batch") or not res.kind:
        return None
    path = {"Pod": "spec", "CronJob": "spec.jobTemplate.spec.template.spec"}.get(res.kind)
    if path is None and res.kind in WORKLOAD_KINDS:
        path = "spec.template.spec"
    spec = res.get(path) if path else None
    return spec if isinstance(spec, Mapping) else None


def _container_problems(c: Mapping[str, Any], pod: Mapping[str, Any]) -> Iterator[str]:
    if any(not _known(v) for _, v in walk([c.get("securityContext"), pod])):
        return  # a preview that cannot know the settings yet
    sc = c.get("securityContext") if isinstance(c.get("securityContext"), Mapping) else {}
    if sc.get("allowPrivilegeEscalation") is not False:
        yield "allowPrivilegeEscalation is not false"
    if sc.get("privileged") is True:
        yield "is privileged"
    caps = sc.get("capabilities") if isinstance(sc.get("capabilities"), Mapping) else {}
    if "ALL" not in (caps.get("drop") or []):
        yield "capabilities.drop does not list ALL"
    if set(caps.get("add") or []) - {ALLOWED_CAPABILITY}:
        yield f"capabilities.add {caps.get('add')} (only {ALLOWED_CAPABILITY} is allowed)"
    if sc.get("readOnlyRootFilesystem") is not True:
        yield "readOnlyRootFilesystem is not true (mount an emptyDir where it writes)"
    if (sc.get("runAsNonRoot") if "runAsNonRoot" in sc else pod.get("runAsNonRoot")) is not True:
        yield "runAsNonRoot is not true"
    if sc.get("runAsUser", pod.get("runAsUser")) == 0:
        yield "runs as user 0"
    seccomp = sc.get("seccompProfile") or pod.get("seccompProfile") or {}
    if not isinstance(seccomp, Mapping) or seccomp.get("type") not in SECCOMP_TYPES:
        yield f"no seccompProfile of type {' or '.join(SECCOMP_TYPES)}"


def workload_security_context(res: Resource) -> Iterator[str]:
    """Every container of the central stack's own workloads meets Pod Security "restricted" and more:
    non-root, no privilege escalation, no capability, seccomp, a read-only root filesystem."""
    spec = pod_spec(res) if in_central_project(res) else None
    if spec is None:
        return
    pod = spec.get("securityContext") if isinstance(spec.get("securityContext"), Mapping) else {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host) is True:
            yield f"{host} is true"
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            if isinstance(c, Mapping):
                for why in _container_problems(c, pod):
                    yield f"{key}.{i} ({c.get('name', '?')}): {why}"


def _workload_namespaces(resources: Sequence[Resource]) -> dict[str, Resource]:
    """The namespaces holding the central stack's own workloads (known ones), each with one workload."""
    found: dict[str, Resource] = {}
    for res in resources:
        if in_central_project(res) and pod_spec(res) is not None and isinstance(res.namespace, str):
            found.setdefault(res.namespace, res)
    return found


def _labels(res: Resource) -> Any:
    """An object's labels: a mapping, or UNKNOWN during a preview that cannot know them yet."""
    labels = res.get("metadata.labels")
    return labels if isinstance(labels, Mapping) or not _known(labels) else {}


def pod_security_labels(resources: Sequence[Resource]) -> Iterator[Violation]:
    """Every namespace the central stack creates enforces a Pod Security level (restricted where its own
    workloads run) and warns and audits at restricted."""
    namespaces = {r.k8s_name: r for r in resources if r.kind == "Namespace" and in_central_project(r)}
    for ns in namespaces.values():
        labels = _labels(ns)
        if not _known(labels):
            continue
        if labels.get(f"{PSA}enforce") not in ("baseline", "restricted"):
            yield (
                ns.urn,
                f"{ns.where()}: label {PSA}enforce is {labels.get(f'{PSA}enforce')!r}; set baseline or restricted",
            )
        for mode in ("warn", "audit"):
            if labels.get(f"{PSA}{mode}") != "restricted":
                yield ns.urn, f"{ns.where()}: label {PSA}{mode} is {labels.get(f'{PSA}{mode}')!r}; set restricted"
    for name, workload in _workload_namespaces(resources).items():
        ns = namespaces.get(name)
        labels = _labels(ns) if ns is not None else UNKNOWN
        if _known(labels) and labels.get(f"{PSA}enforce") != "restricted":
            yield ns.urn, f"{ns.where()}: holds {workload.where()}, so it must enforce restricted"


def network_policy_present(resources: Sequence[Resource]) -> Iterator[Violation]:
    """Every namespace with the central stack's own workloads has a default-deny NetworkPolicy (all pods,
    ingress and egress) from the stack."""
    denied = set()
    for r in resources:
        if r.kind == "NetworkPolicy" and r.api_group == "networking.k8s.io" and in_central_project(r):
            types = r.get("spec.policyTypes") or []
            if r.get("spec.podSelector") in ({}, {"matchLabels": {}}) and {"Ingress", "Egress"} <= set(types):
                denied.add(r.namespace)
    if any(not isinstance(ns, str) for ns in denied):
        return  # a namespace known only after `up`: cannot tell which one it is
    for name, workload in _workload_namespaces(resources).items():
        if name not in denied:
            yield workload.urn, f"{workload.where()}: namespace {name} has no default-deny NetworkPolicy"


# ------------------------------------------------------------------------------- stack rules
Violation = tuple[str, str]  # (urn, message)


def _deps(res: Resource, prop: str, resources: Mapping[str, Resource], type_: str) -> list[Resource]:
    return [
        resources[u] for u in res.property_dependencies.get(prop, ()) if u in resources and resources[u].type == type_
    ]


def node_group_imdsv2(resources: Sequence[Resource]) -> Iterator[Violation]:
    by_urn = {r.urn: r for r in resources}
    for res in resources:
        if res.type != NODE_GROUP:
            continue
        templates = _deps(res, "launchTemplate", by_urn, LAUNCH_TEMPLATE)
        if not res.get("launchTemplate"):
            yield res.urn, f"{res.where()}: no launch template, so the instance metadata service accepts IMDSv1"
        elif not templates:
            yield res.urn, f"{res.where()}: its launch template is not part of this stack; cannot verify IMDSv2"
        for t in templates:
            tokens = t.get("metadataOptions.httpTokens")
            if _known(tokens) and tokens != "required":
                yield t.urn, f"{t.where()}: metadataOptions.httpTokens is {tokens!r}; IMDSv2 needs 'required'"


def node_group_private(resources: Sequence[Resource]) -> Iterator[Violation]:
    by_urn = {r.urn: r for r in resources}
    for res in resources:
        if res.type != NODE_GROUP:
            continue
        subnet_ids = res.get("subnetIds")
        subnets = _deps(res, "subnetIds", by_urn, SUBNET)
        if _known(subnet_ids) and subnet_ids and not subnets:
            yield (
                res.urn,
                f"{res.where()}: its subnets are not part of this stack; cannot verify they assign no public IPs",
            )
        for s in subnets:
            if s.get("mapPublicIpOnLaunch") is True:
                yield s.urn, f"{s.where()}: node group {res.name} runs in a subnet with mapPublicIpOnLaunch true"
        for t in _deps(res, "launchTemplate", by_urn, LAUNCH_TEMPLATE):
            for i, nic in enumerate(t.get("networkInterfaces") or []):
                if isinstance(nic, Mapping) and str(nic.get("associatePublicIpAddress")).lower() == "true":
                    yield t.urn, f"{t.where()}: networkInterfaces.{i}.associatePublicIpAddress is true"


def _hosts_covered(hosts: Iterable[str], tls_hosts: Iterable[str]) -> list[str]:
    """The hosts no TLS entry covers (exact or one-label wildcard)."""
    tls = list(tls_hosts)

    def covered(h: str) -> bool:
        return any(t == h or (t.startswith("*.") and h.split(".", 1)[-1] == t[2:]) for t in tls)

    return [h for h in hosts if not covered(h)]


def _is_https_redirect(route: Resource) -> bool:
    rules = route.get("spec.rules") or []
    return bool(rules) and all(
        any(
            isinstance(f, Mapping)
            and f.get("type") == "RequestRedirect"
            and (f.get("requestRedirect") or {}).get("scheme") == "https"
            for f in (rule.get("filters") or [])
        )
        for rule in rules
        if isinstance(rule, Mapping)
    )


def tls_everywhere(resources: Sequence[Resource]) -> Iterator[Violation]:
    """Every Ingress serves TLS for its hosts; every route is on an HTTPS listener or only redirects."""
    gateways = {
        (r.namespace or "default", r.k8s_name): r
        for r in resources
        if r.kind == "Gateway" and r.api_group == GATEWAY_GROUP
    }
    for res in resources:
        if res.kind == "Ingress" and res.api_group in ("networking.k8s.io", "extensions"):
            tls = [t for t in res.get("spec.tls") or [] if isinstance(t, Mapping)]
            if not tls:
                yield res.urn, f"{res.where()}: no spec.tls; serve it over HTTPS (cert-manager certificate)"
                continue
            hosts = [
                r.get("host")
                for r in res.get("spec.rules") or []
                if isinstance(r, Mapping) and isinstance(r.get("host"), str)
            ]
            missing = _hosts_covered(hosts, [h for t in tls for h in t.get("hosts") or [] if isinstance(h, str)])
            if missing:
                yield res.urn, f"{res.where()}: hosts {missing} are not covered by spec.tls"
        elif res.kind == "Gateway" and res.api_group == GATEWAY_GROUP:
            listeners = [x for x in res.get("spec.listeners") or [] if isinstance(x, Mapping)]
            if not any(x.get("protocol") in ("HTTPS", "TLS") for x in listeners):
                yield res.urn, f"{res.where()}: no HTTPS listener"
            for x in listeners:
                if x.get("protocol") == "HTTPS" and not (x.get("tls") or {}).get("certificateRefs"):
                    yield res.urn, f"{res.where()}: HTTPS listener {x.get('name')!r} has no tls.certificateRefs"
        elif res.kind in ("HTTPRoute", "GRPCRoute") and res.api_group == GATEWAY_GROUP:
            yield from _route_tls(res, gateways)


def _route_tls(route: Resource, gateways: Mapping[tuple[str, str], Resource]) -> Iterator[Violation]:
    redirect = route.kind == "HTTPRoute" and _is_https_redirect(route)
    for ref in route.get("spec.parentRefs") or []:
        if not isinstance(ref, Mapping) or ref.get("kind", "Gateway") != "Gateway":
            continue
        key = (ref.get("namespace") or route.namespace or "default", ref.get("name"))
        gateway = gateways.get(key)
        if gateway is None:
            yield (
                route.urn,
                f"{route.where()}: parent Gateway {key[0]}/{key[1]} is not in this stack; cannot verify TLS",
            )
            continue
        listeners = [
            x
            for x in gateway.get("spec.listeners") or []
            if isinstance(x, Mapping)
            and (not ref.get("sectionName") or x.get("name") == ref.get("sectionName"))
            and (not ref.get("port") or x.get("port") == ref.get("port"))
        ]
        if not listeners:
            yield (
                route.urn,
                f"{route.where()}: parentRef {ref.get('sectionName')!r} names no listener of {gateway.where()}",
            )
        for x in listeners:
            if x.get("protocol") not in ("HTTPS", "TLS") and not redirect:
                yield (
                    route.urn,
                    (
                        f"{route.where()}: attached to plain-{x.get('protocol')} listener {x.get('name')!r} of "
                        f"{gateway.where()}; attach it to the HTTPS listener (sectionName) or make it an https redirect"
                    ),
                )


def cluster_admin_only_backend(resources: Sequence[Resource]) -> Iterator[Violation]:
    """cluster-admin goes only to the kube-bind backend's ServiceAccount (Klutch requires that one).

    The backend is found by image repository (any tag, any mirror's registry prefix)."""
    backend_repos = {_repository(b.image) for r in catalog.RELEASES.values() for b in r.backends.values()}
    backend_accounts = set()
    for res in resources:
        if res.kind in ("Deployment", "StatefulSet", "DaemonSet") and any(
            _repository(str(c.get("image"))) in backend_repos for _, c in _containers(res.props)
        ):
            backend_accounts.add(
                (res.namespace or "default", res.get("spec.template.spec.serviceAccountName") or "default")
            )
    bindings = [
        r
        for r in resources
        if r.kind in ("ClusterRoleBinding", "RoleBinding")
        and r.api_group == "rbac.authorization.k8s.io"
        and r.get("roleRef.kind") == "ClusterRole"
        and r.get("roleRef.name") == "cluster-admin"
    ]
    for b in bindings:
        for s in b.get("subjects") or []:
            if not isinstance(s, Mapping):
                continue
            subject = (s.get("namespace") or b.namespace or "default", s.get("name"))
            if s.get("kind") != "ServiceAccount" or subject not in backend_accounts:
                yield (
                    b.urn,
                    (
                        f"{b.where()}: grants cluster-admin to {s.get('kind')} {'/'.join(str(x) for x in subject)}; "
                        "only the kube-bind backend's ServiceAccount may have it"
                    ),
                )
    if len(bindings) > 1:
        names = ", ".join(b.where() for b in bindings)
        yield bindings[-1].urn, f"{len(bindings)} cluster-admin bindings ({names}); only the backend's one is allowed"


# ------------------------------------------------------------------------------- the rule table
@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[..., Iterable[Any]]
    stack: bool = False  # a whole-stack rule: check(resources) -> (urn, message)
    advisory_outside_prod: bool = False
    remediation: str = ""

    def level(self, environment: str) -> str:
        return "advisory" if self.advisory_outside_prod and environment != "prod" else "mandatory"


RULES: tuple[Rule, ...] = (
    Rule(
        "eks-public-endpoint-restricted",
        "The EKS public API endpoint is not open to the whole internet.",
        eks_public_endpoint,
        advisory_outside_prod=True,
        remediation=(
            "Set cluster.publicAccessCidrs to the operators' networks or cluster.endpointPublicAccess to false."
        ),
    ),
    Rule("eks-secrets-encryption", "Kubernetes Secrets are envelope-encrypted with a KMS key.", eks_secrets_encryption),
    Rule(
        "eks-managed-nodes-only",
        "The EKS component's self-managed default node group is off; nodes get no public IPs.",
        eks_managed_nodes_only,
    ),
    Rule(
        "eks-nodes-imdsv2",
        "Node groups require IMDSv2 (launch template metadataOptions.httpTokens: required).",
        node_group_imdsv2,
        stack=True,
    ),
    Rule("eks-nodes-private", "Nodes get no public IP addresses.", node_group_private, stack=True),
    Rule(
        "pinned-versions",
        "Every container image, Helm chart, Crossplane package and remote manifest is pinned.",
        pinned_versions,
        remediation="Pin the version in klutch/catalog.py.",
    ),
    Rule("tls-on-exposed-routes", "Every Ingress and Gateway route is served over TLS.", tls_everywhere, stack=True),
    Rule(
        "no-loadbalancer-services", "Only the ingress/gateway controller has a LoadBalancer Service.", no_load_balancers
    ),
    Rule(
        "cluster-admin-only-backend",
        "The only cluster-admin binding is the kube-bind backend's.",
        cluster_admin_only_backend,
        stack=True,
    ),
    Rule(
        "workload-security-context",
        "The central stack's workloads run non-root, without privilege escalation or capabilities, with "
        "seccomp and a read-only root filesystem.",
        workload_security_context,
        remediation="Set the pod's and every container's securityContext (klutch/central/security.py).",
    ),
    Rule(
        "pod-security-labels",
        "Every namespace the central stack creates enforces Pod Security (restricted where its workloads run) "
        "and warns and audits at restricted.",
        pod_security_labels,
        stack=True,
    ),
    Rule(
        "network-policy-present",
        "Every namespace with the central stack's workloads has a default-deny NetworkPolicy.",
        network_policy_present,
        stack=True,
    ),
    Rule(
        "explicit-kubernetes-provider",
        "Every Kubernetes resource uses the program's explicit provider.",
        explicit_provider,
    ),
)


# ------------------------------------------------------------------------------- callers


def environment(value: Any) -> str:
    """A stack's `environment` config value as the rules read it: unset is the program's default
    (dev); anything unknown is treated as prod (strict)."""
    if value is None:
        return "dev"
    return value if value in catalog.ENVIRONMENTS else "prod"


def environment_in(config: Mapping[str, Any], project: str) -> str:
    """The `environment` of project `project` in a stack config keyed `<project>:<key>`."""
    return environment(config.get(f"{project}:environment"))


def environment_from_process() -> str:
    """The environment of the stack as older Pulumi CLIs (v3.79, for one) pass it to a pack: the stack's
    config in PULUMI_CONFIG and the project in PULUMI_PROJECT (current CLIs: `follow_stack_config`)."""
    try:
        config = json.loads(os.environ.get("PULUMI_CONFIG") or "{}")
    except ValueError:
        config = {}
    return environment_in(config, os.environ.get("PULUMI_PROJECT", ""))


@dataclass(frozen=True)
class Finding:
    policy: str
    level: str  # mandatory | advisory
    urn: str
    message: str

    def __str__(self) -> str:
        return f"[{self.level}] {self.policy}: {self.message}"


def check(resources: Sequence[Resource], environment: str) -> list[Finding]:
    """Every rule over every resource (the offline renderer's entry point)."""
    found = []
    for rule in RULES:
        level = rule.level(environment)
        if rule.stack:
            found += [Finding(rule.name, level, urn, msg) for urn, msg in rule.check(resources)]
        else:
            for res in resources:
                found += [Finding(rule.name, level, res.urn, f"{res.where()}: {msg}") for msg in rule.check(res)]
    return found


def policies(environment: str) -> list[Any]:
    """The rules as pulumi_policy policies, with the enforcement level of `environment`."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

    out: list[Any] = []
    for rule in RULES:
        common = {
            "name": rule.name,
            "description": rule.description,
            "enforcement_level": EnforcementLevel(rule.level(environment)),
            "remediation_steps": rule.remediation or None,
        }
        if rule.stack:

            def validate_stack(args: Any, report: Callable[..., None], rule: Rule = rule) -> None:
                for urn, message in rule.check([from_policy(r) for r in args.resources]):
                    report(message, urn)

            out.append(StackValidationPolicy(validate=validate_stack, **common))
        else:

            def validate(args: Any, report: Callable[..., None], rule: Rule = rule) -> None:
                for message in rule.check(from_policy(args)):
                    report(message)

            out.append(ResourceValidationPolicy(validate=validate, **common))
    return out


def set_environment(policies: Sequence[Any], environment: str) -> None:
    """Give every policy of `policies(...)` its rule's enforcement level in `environment`."""
    from pulumi_policy import EnforcementLevel

    levels = {rule.name: EnforcementLevel(rule.level(environment)) for rule in RULES}
    for policy in policies:
        policy.enforcement_level = levels[policy.name]


def follow_stack_config(policies: Sequence[Any]) -> None:
    """Make the pack take its environment from the stack config the CLI sends when it starts the pack.

    Current Pulumi CLIs (v3.274 included) no longer put the stack's config in the pack's PULUMI_CONFIG:
    they send it, with the project, in the analyzer's ConfigureStack call, of which pulumi_policy 1.21
    keeps only the stack tags. This re-levels `policies` before the first resource is analyzed. A call without config
    (older CLIs) leaves the levels `environment_from_process` gave.
    """
    compat.before_policy_stack_configured(
        lambda project, config: set_environment(policies, environment_in(config, project))
    )
