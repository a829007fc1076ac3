"""Layer 4: the edge — cert-manager, the ingress/gateway controller, the ACME or self-signed
Issuer, the backend host (optionally a Route53 record). (Stub: issue #4 builds it.)"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .config import CentralConfig


@dataclass(frozen=True)
class EdgeArgs:
    config: CentralConfig
    provider: k8s.Provider


class Edge(pulumi.ComponentResource):
    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:edge:Edge", name, None, opts)
        self.register_outputs({})
