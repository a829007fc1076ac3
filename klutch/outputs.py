"""The central stack's outputs: one typed record, the one place their Pulumi names are spelled.

The contract between the two programs, both sides: the central program builds a `CentralOutputs` and
calls `export()`; the tenant program reads the outputs named by `TENANT_READS` through a
StackReference (`tenant_output_names()`) and hands them to `read_for_tenant`, which gives them back as
one `TenantReads` record, so its configuration checks them without spelling an output name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

OUTPUT_NAME = "pulumi_output"  # the field metadata key that holds a field's stack output name


def _output(name: str, *, optional: bool = False) -> Any:
    """A record field exported as stack output `name`; an optional one is left out when None."""
    metadata = {OUTPUT_NAME: name}
    return field(default=None, metadata=metadata) if optional else field(metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class CentralOutputs:
    """Every stack output of the central program, in export order; None: not exported by this stack."""

    # the network (EKS only)
    vpc_id: pulumi.Output[str] | None = _output("vpcId", optional=True)
    public_subnet_ids: list[pulumi.Output[str]] | None = _output("publicSubnetIds", optional=True)
    private_subnet_ids: list[pulumi.Output[str]] | None = _output("privateSubnetIds", optional=True)
    # the cluster
    cluster_name: pulumi.Output[str] = _output("clusterName")
    cluster_endpoint: pulumi.Output[str] = _output("clusterEndpoint")
    cluster_ca_pem: pulumi.Output[str] = _output("clusterCaPem")
    kubeconfig: pulumi.Output[str] = _output("kubeconfig")  # secret
    oidc_provider_arn: pulumi.Output[str] | None = _output("oidcProviderArn", optional=True)
    # Crossplane and the data services
    crossplane_version: pulumi.Output[str] = _output("crossplaneVersion")
    klutch_release: str = _output("klutchRelease")
    enabled_data_services: list[str] = _output("enabledDataServices")
    provider_config_health_check: str = _output("providerConfigHealthCheck")
    # the edge and kube-bind: what tenants bind with
    backend_host: pulumi.Output[str] = _output("backendHost")
    backend_url: pulumi.Output[str] = _output("backendUrl")
    load_balancer_hostname: pulumi.Output[str] = _output("loadBalancerHostname")
    export_url: pulumi.Output[str] = _output("exportUrl")
    bind_noninteractive_url: pulumi.Output[str] | None = _output("bindNonInteractiveUrl", optional=True)
    konnector_image: str = _output("konnectorImage")
    kubectl_bind_command: pulumi.Output[str] = _output("kubectlBindCommand")
    binding_apis: list[dict[str, str]] = _output("bindingApis")
    kube_bind_crd_urls: list[str] = _output("kubeBindCrdUrls")
    tls_ca_pem: pulumi.Output[str] | None = _output("tlsCaPem", optional=True)  # self-signed backend CA
    # observability (when enabled): where the dashboard is, and the alerts the stack defines
    monitoring_dashboard: str | None = _output("monitoringDashboard", optional=True)
    monitoring_alerts: list[str] | None = _output("monitoringAlerts", optional=True)

    @classmethod
    def output_name(cls, field_name: str) -> str:
        """The stack output name of field `field_name`."""
        return _FIELDS[field_name].metadata[OUTPUT_NAME]

    def items(self) -> list[tuple[str, Any]]:
        """(output name, value) of every output this stack has, in export order."""
        return [
            (f.metadata[OUTPUT_NAME], value)
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) is not None
        ]

    def export(self) -> None:
        """Export every output this stack has."""
        for name, value in self.items():
            pulumi.export(name, value)


_FIELDS = {f.name: f for f in dataclasses.fields(CentralOutputs)}


@dataclass(frozen=True)
class TenantReads:
    """The outputs a tenant stack binds with (the contract between the two programs), as a central stack
    reported them; None: the output is missing or empty. The tenant's configuration checks each value."""

    klutch_release: Any = None
    export_url: Any = None
    bind_noninteractive_url: Any = None
    konnector_image: Any = None
    binding_apis: Any = None
    kube_bind_crd_urls: Any = None
    tls_ca_pem: Any = None
    kubectl_bind_command: Any = None

    def empty(self) -> bool:
        """True when the stack reported none of them (not deployed, or not a central stack)."""
        return all(getattr(self, f) is None for f in TENANT_READS)


# The fields of `CentralOutputs` a tenant reads, in the order `TenantReads` lists them.
TENANT_READS = tuple(f.name for f in dataclasses.fields(TenantReads))


def tenant_output_names() -> tuple[str, ...]:
    """The stack output names of `TENANT_READS`, in that order."""
    return tuple(CentralOutputs.output_name(f) for f in TENANT_READS)


def read_for_tenant(outputs: Mapping[str, Any]) -> TenantReads:
    """The `TENANT_READS` outputs of a central stack (stack output name → value) as one record."""
    found = {f: outputs.get(CentralOutputs.output_name(f)) for f in TENANT_READS}
    return TenantReads(**{f: value for f, value in found.items() if value not in (None, "")})
