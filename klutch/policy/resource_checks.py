"""The rules over one resource at a time: the EKS endpoint, encryption and nodes, pinned versions,
LoadBalancer Services, the explicit Kubernetes provider."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from klutch.policy.model import (
    CONTROLLER_CHARTS,
    CROSSPLANE_PACKAGE_KINDS,
    EKS_CLUSTER,
    HELM_TYPES,
    REMOTE_MANIFEST_TYPES,
    SOURCE,
    Resource,
    containers,
    image_problem,
    is_open_cidr,
    known,
)
from klutch.sdk.tree import walk

EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")
VERSIONED_URL = re.compile(r"/(v?\d+\.\d+(\.\d+)?[^/]*|[0-9a-f]{40})/")
MOVING_URL = re.compile(r"/(latest|main|master|HEAD)(/|$)")


# ------------------------------------------------------------------------------- resource rules
def eks_public_endpoint(res: Resource) -> Iterator[str]:
    if res.type == EKS_CLUSTER:
        public, cidrs = res.get("endpointPublicAccess", True), res.get("publicAccessCidrs")
    elif res.type == "aws:eks/cluster:Cluster":
        public, cidrs = res.get("vpcConfig.endpointPublicAccess", True), res.get("vpcConfig.publicAccessCidrs")
    else:
        return
    if public is False or not known(public) or not known(cidrs):
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
        if not known(configs):
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
    if known(res.get("skipDefaultNodeGroup")) and res.get("skipDefaultNodeGroup") is not True:
        yield (
            "the component's default node group is on; set skipDefaultNodeGroup and use a managed node group "
            "with a launch template (IMDSv2, private subnets)"
        )
    if res.get("nodeAssociatePublicIpAddress") is True:
        yield "nodeAssociatePublicIpAddress is true: nodes would get public IP addresses"


def repository(image: str) -> str:
    """An image's name without registry, tag or digest (`…/anynines/kubebind-backend:v1.3.0` ->
    `kubebind-backend`): the same under any mirror's registry prefix."""
    return image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]


def pinned_versions(res: Resource) -> Iterator[str]:
    """Images, Helm charts, Crossplane packages and remote manifests name an exact version."""
    if res.type in HELM_TYPES:
        version = res.get("version")
        if known(version) and not (isinstance(version, str) and EXACT_VERSION.match(version)):
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
    for path, container in containers(res.props):
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
            if MOVING_URL.search(url) or not VERSIONED_URL.search(url):
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
