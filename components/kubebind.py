"""Layer 5: kube-bind on the central cluster — CRDs, the binder ClusterRole, export templates and
the backend with OIDC, exposed through the edge. (Stub: issue #4 builds it.)"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .cluster import Cluster
from .config import CentralConfig
from .edge import Edge


@dataclass(frozen=True)
class KubeBindArgs:
    config: CentralConfig
    provider: k8s.Provider
    cluster: Cluster
    edge: Edge


class KubeBind(pulumi.ComponentResource):
    def __init__(self, name: str, args: KubeBindArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:kubebind:KubeBind", name, None, opts)
        self.register_outputs({})
