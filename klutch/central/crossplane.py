"""Layer 3: Crossplane, provider-anynines, the dataservices configuration and the data-service
ProviderConfigs — the manual procedure's "Deploy Crossplane and provider-anynines" and "Install ProviderConfig".

Order (each step waits for the one before; Pulumi replaces the manual procedure's `kubectl get … -w`):

    Namespace crossplane-system ─► Crossplane (Helm release, waits for its pods)
      ─► DeploymentRuntimeConfig provider-anynines ─► Provider provider-anynines (waitFor Healthy)
      ─► [Functions the release's compositions need (waitFor Healthy)]
      ─► Configuration anynines-dataservices (waitFor Healthy)
    Provider ─► per enabled data service and endpoint: Secret `<svc>-<endpoint>-creds`
      + ProviderConfig `<svc>-<endpoint>` (its CRD comes from the provider package)

Everything that differs between Klutch releases (packages, functions, `serviceType`) comes from
`config.release`; names and API versions from `catalog`. Nothing here waits for, or is waited for
by, the edge (cert-manager, ingress/gateway) or kube-bind layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from klutch import catalog
from klutch.central import helm, security
from klutch.config.central import DataServiceConfig, NetworkPolicyConfig
from klutch.kube.names import api_group, qualified_resource

# Package pulls from public registries and the provider's first reconcile can take minutes.
PACKAGE_TIMEOUTS = pulumi.CustomTimeouts(create="20m", update="20m", delete="10m")
WAIT_FOR_HEALTHY = {"pulumi.com/waitFor": "condition=Healthy"}
HEALTH_CHECK_COMMAND = "kubectl get " + qualified_resource(
    catalog.PROVIDER_CONFIG_PLURAL, api_group(catalog.PROVIDER_CONFIG_API_VERSION)
)


@dataclass(frozen=True)
class CrossplaneArgs:
    provider: k8s.Provider
    release: catalog.KlutchRelease  # packages, functions and ProviderConfig flavour of the Klutch release
    chart: catalog.Chart  # the Crossplane chart's source (the catalog's, or its mirror)
    crossplane_version: str
    data_services: Sequence[DataServiceConfig]  # the enabled ones
    protect: bool
    network_policy: NetworkPolicyConfig  # where the provider may connect to
    metrics: bool = False  # the metrics port on Crossplane's and the RBAC manager's pods (observability)


class Crossplane(pulumi.ComponentResource):
    """Crossplane with provider-anynines, the dataservices Configuration and the ProviderConfigs."""

    namespace: k8s.core.v1.Namespace
    release: k8s.helm.v3.Release
    runtime_config: k8s.apiextensions.CustomResource
    provider: k8s.apiextensions.CustomResource
    functions: dict[str, k8s.apiextensions.CustomResource]
    configuration: k8s.apiextensions.CustomResource
    secrets: dict[str, k8s.core.v1.Secret]
    provider_configs: dict[str, k8s.apiextensions.CustomResource]
    version: pulumi.Output[str]
    health_check_command: str

    def __init__(self, name: str, args: CrossplaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:crossplane:Crossplane", name, None, opts)
        self._name = name
        self._plain = pulumi.ResourceOptions(parent=self, provider=args.provider)
        # Deleting these would orphan or delete tenants' data services.
        self._guarded = pulumi.ResourceOptions.merge(self._plain, pulumi.ResourceOptions(protect=args.protect))

        self.namespace = helm.namespace(f"{name}-namespace", "crossplane", self._guarded)
        self.release = helm.release(
            name,
            "crossplane",
            args.chart,
            chart_values(args.metrics),
            self._guarded,
            namespace=self.namespace,
            version=args.crossplane_version,
        )
        self._packages(args.release)
        self._provider_configs(args.data_services, args.release)
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-provider",
            metadata={"name": catalog.PROVIDER_NAME, "namespace": self.namespace.metadata.name},
            spec=provider_network_policy_spec(args.data_services, args.network_policy),
            opts=self._plain,
        )

        self.version = pulumi.Output.from_input(args.crossplane_version)
        self.health_check_command = HEALTH_CHECK_COMMAND
        self.register_outputs(
            {
                "crossplaneVersion": self.version,
                "providerPackage": args.release.provider_package,
                "configurationPackage": args.release.configuration_package,
                "providerConfigs": sorted(self.provider_configs),
            }
        )

    def _after(self, base: pulumi.ResourceOptions, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        """`base`, waiting for `depends_on`, with the package pull timeouts."""
        return pulumi.ResourceOptions.merge(
            base, pulumi.ResourceOptions(depends_on=list(depends_on), custom_timeouts=PACKAGE_TIMEOUTS)
        )

    def _packages(self, release: catalog.KlutchRelease) -> None:
        """The provider (with its runtime config), the functions and the dataservices Configuration."""
        name = self._name
        self.runtime_config = _package_object(
            f"{name}-runtime-config",
            catalog.CROSSPLANE_RUNTIME_CONFIG_API_VERSION,
            "DeploymentRuntimeConfig",
            catalog.PROVIDER_NAME,
            runtime_config_spec(),
            pulumi.ResourceOptions.merge(self._plain, pulumi.ResourceOptions(depends_on=[self.release])),
            wait=False,
        )
        self.provider = _package_object(
            f"{name}-provider",
            catalog.CROSSPLANE_PKG_API_VERSION,
            "Provider",
            catalog.PROVIDER_NAME,
            {"package": release.provider_package, "runtimeConfigRef": {"name": catalog.PROVIDER_NAME}},
            self._after(self._guarded, self.release, self.runtime_config),
        )
        self.functions = {
            catalog.function_name(package): _package_object(
                f"{name}-function-{catalog.function_name(package)}",
                catalog.CROSSPLANE_PKG_API_VERSION,
                "Function",
                catalog.function_name(package),
                {"package": package},
                self._after(self._plain, self.release),
            )
            for package in release.functions
        }
        self.configuration = _package_object(
            f"{name}-configuration",
            catalog.CROSSPLANE_PKG_API_VERSION,
            "Configuration",
            catalog.CONFIGURATION_NAME,
            {"package": release.configuration_package},
            self._after(self._guarded, self.provider, *self.functions.values()),
        )

    def _provider_configs(self, data_services: Sequence[DataServiceConfig], release: catalog.KlutchRelease) -> None:
        """Per data service and provider endpoint: the credentials Secret and the ProviderConfig."""
        self.secrets, self.provider_configs = {}, {}
        for service in data_services:
            for endpoint in catalog.PROVIDER_ENDPOINTS:
                secret, provider_config = self._endpoint(service, endpoint, release)
                self.secrets[endpoint.secret_name(service.key)] = secret
                self.provider_configs[endpoint.provider_config_name(service.key)] = provider_config

    def _endpoint(
        self, service: DataServiceConfig, endpoint: catalog.ProviderEndpoint, release: catalog.KlutchRelease
    ) -> tuple[k8s.core.v1.Secret, k8s.apiextensions.CustomResource]:
        """The credentials Secret and the ProviderConfig of one endpoint of one data service."""
        settings = service.endpoint(endpoint)
        secret_name = endpoint.secret_name(service.key)
        config_name = endpoint.provider_config_name(service.key)
        secret = k8s.core.v1.Secret(
            f"{self._name}-{secret_name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=self.namespace.metadata.name),
            type="Opaque",
            string_data={"username": settings.username.output(), "password": settings.password.output()},
            opts=self._guarded,
        )
        provider_config = k8s.apiextensions.CustomResource(
            f"{self._name}-{config_name}",
            api_version=catalog.PROVIDER_CONFIG_API_VERSION,
            kind="ProviderConfig",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=config_name),
            spec=provider_config_spec(
                settings.url,
                secret_name,
                endpoint.service_type if release.provider_config_service_type else None,
                release.health_check_endpoints.get(endpoint.service_type),
            ),
            opts=pulumi.ResourceOptions.merge(
                self._guarded, pulumi.ResourceOptions(depends_on=[self.provider, secret])
            ),
        )
        return secret, provider_config


def provider_network_policy_spec(
    data_services: Sequence[DataServiceConfig], policy: NetworkPolicyConfig
) -> dict[str, Any]:
    """The provider's outgoing traffic: DNS, the API server and each configured broker and backup manager.
    Crossplane's own pods and the functions are left unrestricted (they pull packages from registries)."""
    endpoints = [
        security.url_peer(service.endpoint(endpoint).url, policy.data_service_cidrs)
        for service in data_services
        for endpoint in catalog.PROVIDER_ENDPOINTS
    ]
    return security.policy_spec(
        {security.CROSSPLANE_PROVIDER_LABEL: catalog.PROVIDER_NAME},
        None,
        [security.Peer(security.API_SERVER_PORTS, policy.api_server_cidrs), *endpoints],
    )


def chart_values(metrics: bool) -> dict[str, Any]:
    """Crossplane with server-side-applied claims; with `metrics`, port `metrics` (8080) on its pods."""
    values: dict[str, Any] = {"args": list(catalog.CROSSPLANE_ARGS)}
    if metrics:
        values["metrics"] = {"enabled": True}
    return values


def runtime_config_spec() -> dict[str, Any]:
    """The provider's DeploymentRuntimeConfig: a readiness probe on its health endpoint."""
    probe = {"httpGet": {"path": catalog.PROVIDER_HEALTH_PATH, "port": catalog.PROVIDER_HEALTH_PORT}}
    container = {"name": catalog.PACKAGE_RUNTIME_CONTAINER, "readinessProbe": probe}
    return {"deploymentTemplate": {"spec": {"selector": {}, "template": {"spec": {"containers": [container]}}}}}


def provider_config_spec(
    url: str, secret_name: str, service_type: str | None, health_check_endpoint: str | None = None
) -> dict[str, Any]:
    """A ProviderConfig reading username and password from Secret `secret_name` in the Crossplane
    namespace; `serviceType` and `healthCheckEndpoint` only for releases whose ProviderConfig has them."""
    namespace = catalog.CHARTS["crossplane"].namespace
    spec: dict[str, Any] = {
        "url": url,
        "providerCredentials": {
            "source": "Secret",
            **{
                key: {"secretRef": {"namespace": namespace, "name": secret_name, "key": key}}
                for key in ("username", "password")
            },
        },
    }
    if service_type is not None:
        spec["serviceType"] = service_type
    if health_check_endpoint is not None:
        spec["healthCheckEndpoint"] = health_check_endpoint
    return spec


def _package_object(
    resource_name: str,
    api_version: str,
    kind: str,
    name: str,
    spec: dict,
    opts: pulumi.ResourceOptions,
    *,
    wait: bool = True,
) -> k8s.apiextensions.CustomResource:
    """A cluster-scoped Crossplane package object; `wait`: Pulumi waits until it reports Healthy."""
    return k8s.apiextensions.CustomResource(
        resource_name,
        api_version=api_version,
        kind=kind,
        metadata=k8s.meta.v1.ObjectMetaArgs(name=name, annotations=dict(WAIT_FOR_HEALTHY) if wait else None),
        spec=spec,
        opts=opts,
    )
