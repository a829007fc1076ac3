"""Layer 3: Crossplane, provider-anynines, the dataservices configuration and the data-service
ProviderConfigs. (Stub: issue #3 builds it.)"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .config import CentralConfig


@dataclass(frozen=True)
class CrossplaneArgs:
    config: CentralConfig
    provider: k8s.Provider


class Crossplane(pulumi.ComponentResource):
    def __init__(self, name: str, args: CrossplaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:crossplane:Crossplane", name, None, opts)
        self.register_outputs({})
