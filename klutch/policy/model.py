"""The neutral resource model the policy rules read, whichever engine produced the resources (the
real engine through pulumi_policy, the offline render through the mock engine), and the facts the
rules share."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from klutch import catalog
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


Violation = tuple[str, str]  # (urn, message)


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


def known(value: Any) -> bool:
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


def containers(props: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container spec anywhere in an object (pods, pod templates, CronJobs, runtime configs)."""
    for path, value in walk(props):
        if path.rsplit(".", 1)[-1] in ("containers", "initContainers", "ephemeralContainers") and isinstance(
            value, list
        ):
            for i, c in enumerate(value):
                if isinstance(c, Mapping):
                    yield f"{path}.{i}", c
