"""Layer 3: Crossplane, provider-anynines, the dataservices configuration and the data-service
ProviderConfigs — the seed's "Deploy Crossplane and provider-anynines" and "Install ProviderConfig".

Order (each step waits for the one before; Pulumi replaces the seed's `kubectl get … -w`):

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

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from klutch import catalog
from klutch.central import helm
from klutch.config.central import CentralConfig, DataServiceConfig

# Package pulls from public registries and the provider's first reconcile can take minutes.
PACKAGE_TIMEOUTS = pulumi.CustomTimeouts(create="20m", update="20m", delete="10m")
WAIT_FOR_HEALTHY = {"pulumi.com/waitFor": "condition=Healthy"}


@dataclass(frozen=True)
class CrossplaneArgs:
    config: CentralConfig
    provider: k8s.Provider


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
        cfg, release = args.config, args.config.release
        chart = catalog.CHARTS["crossplane"]
        plain = pulumi.ResourceOptions(parent=self, provider=args.provider)
        # Deleting these would orphan or delete tenants' data services.
        guarded = pulumi.ResourceOptions.merge(plain, pulumi.ResourceOptions(protect=cfg.protect))

        self.namespace = helm.namespace(f"{name}-namespace", "crossplane", guarded)
        self.release = helm.release(
            name,
            "crossplane",
            {"args": list(catalog.CROSSPLANE_ARGS)},
            guarded,
            namespace=self.namespace,
            version=cfg.crossplane_version,
        )
        after_crossplane = pulumi.ResourceOptions(depends_on=[self.release])

        self.runtime_config = _package_object(
            f"{name}-runtime-config",
            catalog.CROSSPLANE_RUNTIME_CONFIG_API_VERSION,
            "DeploymentRuntimeConfig",
            catalog.PROVIDER_NAME,
            {
                "deploymentTemplate": {
                    "spec": {
                        "selector": {},
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": catalog.PACKAGE_RUNTIME_CONTAINER,
                                        "readinessProbe": {
                                            "httpGet": {
                                                "path": catalog.PROVIDER_HEALTH_PATH,
                                                "port": catalog.PROVIDER_HEALTH_PORT,
                                            }
                                        },
                                    }
                                ]
                            }
                        },
                    }
                }
            },
            pulumi.ResourceOptions.merge(plain, after_crossplane),
            wait=False,
        )
        self.provider = _package_object(
            f"{name}-provider",
            catalog.CROSSPLANE_PKG_API_VERSION,
            "Provider",
            catalog.PROVIDER_NAME,
            {"package": release.provider_package, "runtimeConfigRef": {"name": catalog.PROVIDER_NAME}},
            pulumi.ResourceOptions.merge(
                guarded,
                pulumi.ResourceOptions(
                    depends_on=[self.release, self.runtime_config], custom_timeouts=PACKAGE_TIMEOUTS
                ),
            ),
        )
        self.functions = {
            catalog.function_name(package): _package_object(
                f"{name}-function-{catalog.function_name(package)}",
                catalog.CROSSPLANE_PKG_API_VERSION,
                "Function",
                catalog.function_name(package),
                {"package": package},
                pulumi.ResourceOptions.merge(
                    plain, pulumi.ResourceOptions(depends_on=[self.release], custom_timeouts=PACKAGE_TIMEOUTS)
                ),
            )
            for package in release.functions
        }
        self.configuration = _package_object(
            f"{name}-configuration",
            catalog.CROSSPLANE_PKG_API_VERSION,
            "Configuration",
            catalog.CONFIGURATION_NAME,
            {"package": release.configuration_package},
            pulumi.ResourceOptions.merge(
                guarded,
                pulumi.ResourceOptions(
                    depends_on=[self.provider, *self.functions.values()], custom_timeouts=PACKAGE_TIMEOUTS
                ),
            ),
        )

        self.secrets, self.provider_configs = {}, {}
        for service in cfg.data_services:
            for endpoint in catalog.PROVIDER_ENDPOINTS:
                secret, provider_config = self._endpoint(
                    name, service, endpoint, guarded, chart.namespace, release.provider_config_service_type
                )
                self.secrets[endpoint.secret_name(service.key)] = secret
                self.provider_configs[endpoint.provider_config_name(service.key)] = provider_config

        self.version = pulumi.Output.from_input(cfg.crossplane_version)
        group = catalog.PROVIDER_CONFIG_API_VERSION.split("/", 1)[0]
        self.health_check_command = f"kubectl get {catalog.PROVIDER_CONFIG_PLURAL}.{group}"
        self.register_outputs(
            {
                "crossplaneVersion": self.version,
                "providerPackage": release.provider_package,
                "configurationPackage": release.configuration_package,
                "providerConfigs": sorted(self.provider_configs),
            }
        )

    def _endpoint(
        self,
        name: str,
        service: DataServiceConfig,
        endpoint: catalog.ProviderEndpoint,
        guarded: pulumi.ResourceOptions,
        namespace: str,
        service_type: bool,
    ) -> tuple[k8s.core.v1.Secret, k8s.apiextensions.CustomResource]:
        """The credentials Secret and the ProviderConfig of one endpoint of one data service."""
        settings = service.endpoint(endpoint)
        secret_name = endpoint.secret_name(service.key)
        config_name = endpoint.provider_config_name(service.key)
        secret = k8s.core.v1.Secret(
            f"{name}-{secret_name}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=self.namespace.metadata.name),
            type="Opaque",
            string_data={"username": settings.username.output(), "password": settings.password.output()},
            opts=guarded,
        )
        spec: dict = {
            "url": settings.url,
            "providerCredentials": {
                "source": "Secret",
                **{
                    key: {"secretRef": {"namespace": namespace, "name": secret_name, "key": key}}
                    for key in ("username", "password")
                },
            },
        }
        if service_type:
            spec["serviceType"] = endpoint.service_type
        provider_config = k8s.apiextensions.CustomResource(
            f"{name}-{config_name}",
            api_version=catalog.PROVIDER_CONFIG_API_VERSION,
            kind="ProviderConfig",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=config_name),
            spec=spec,
            opts=pulumi.ResourceOptions.merge(
                guarded,
                pulumi.ResourceOptions(depends_on=[self.provider, secret]),
            ),
        )
        return secret, provider_config


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
