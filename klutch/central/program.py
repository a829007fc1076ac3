"""The central program: read config → build the layers in order → export the stack outputs.

`__main__.py` calls `main()`; the tests and the offline renderer call it under the mock engine.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from klutch import catalog
from klutch.central.cluster import Cluster, ClusterArgs
from klutch.central.crossplane import Crossplane, CrossplaneArgs
from klutch.central.edge import Edge, EdgeArgs
from klutch.central.kubebind import KubeBind, KubeBindArgs
from klutch.central.network import Network, NetworkArgs
from klutch.central.observability import Observability, ObservabilityArgs
from klutch.config import central as config_module
from klutch.config import issuer
from klutch.config.central import CentralConfig
from klutch.outputs import CentralOutputs
from klutch.sdk import compat


def main() -> None:
    compat.end_quietly_on_interrupt()
    cfg = config_module.load()  # raises ConfigError (all problems at once) before any resource exists
    for warning in cfg.warnings:
        pulumi.log.warn(warning)
    issuer.preflight(cfg.stack, issuer_subject(cfg), enabled=cfg.oidc.check_issuer)  # before any resource
    tags = stack_tags(cfg)
    network = Network("network", NetworkArgs(cfg.network, cfg.cluster.name, tags)) if cfg.is_eks else None
    cluster = Cluster("cluster", cluster_args(cfg, tags, network))
    # first: in install mode it brings the monitor CRDs the edge's charts create their monitors with
    observability = (
        Observability("observability", observability_args(cfg, cluster.provider)) if cfg.observability.enabled else None
    )
    crossplane = Crossplane("crossplane", crossplane_args(cfg, cluster.provider))
    edge = Edge("edge", edge_args(cfg, cluster.provider, observability))
    # the export templates live in crossplane-system: they wait for that Namespace, never for Crossplane
    export_namespace = crossplane.namespace.metadata.apply(lambda m: m.name)
    kube_bind = KubeBind("kube-bind", kube_bind_args(cfg, cluster, edge, export_namespace))
    stack_outputs(cfg, network, cluster, crossplane, edge, kube_bind, observability).export()


def issuer_subject(cfg: CentralConfig) -> issuer.Subject:
    key = f"{config_module.NAMESPACE}:oidc"
    return issuer.Subject(cfg.oidc.issuer_url, issuer_key=f"{key}.issuerUrl", switch_key=f"{key}.checkIssuer")


def stack_tags(cfg: CentralConfig) -> dict[str, str]:
    """The AWS tags of every resource: the stack and environment, then the configured tags."""
    return {"klutch.anynines.com/stack": cfg.stack, "klutch.anynines.com/environment": cfg.environment, **cfg.tags}


def cluster_args(cfg: CentralConfig, tags: Mapping[str, str], network: Network | None) -> ClusterArgs:
    return ClusterArgs(
        config=cfg.cluster,
        protect=cfg.protect,
        tags=tags,
        vpc_id=network.vpc_id if network else None,
        public_subnet_ids=network.public_subnet_ids if network else (),
        private_subnet_ids=network.private_subnet_ids if network else (),
    )


def crossplane_args(cfg: CentralConfig, provider: k8s.Provider) -> CrossplaneArgs:
    return CrossplaneArgs(
        provider=provider,
        release=cfg.release,
        chart=cfg.mirrors.chart("crossplane"),
        crossplane_version=cfg.crossplane_version,
        data_services=cfg.data_services,
        protect=cfg.protect,
        network_policy=cfg.network_policy,
        metrics=cfg.observability.enabled,
    )


def observability_args(cfg: CentralConfig, provider: k8s.Provider) -> ObservabilityArgs:
    return ObservabilityArgs(
        provider=provider,
        config=cfg.observability,
        charts={key: cfg.mirrors.chart(key) for key in ("kube-prometheus-stack", "kube-state-metrics")},
        release=cfg.release,
        data_services=tuple(s.service for s in cfg.data_services),
        controller=cfg.exposure.controller,
    )


def edge_args(cfg: CentralConfig, provider: k8s.Provider, observability: Observability | None = None) -> EdgeArgs:
    return EdgeArgs(
        provider=provider,
        controller=cfg.exposure.controller,
        charts={key: cfg.mirrors.chart(key) for key in ("cert-manager", cfg.exposure.controller)},
        backend_namespace=cfg.release.backend_namespace,
        backend_name=cfg.release.backend_name,
        host=cfg.backend.host,
        route53_zone_id=cfg.backend.route53_zone_id,
        acme_server=cfg.exposure.acme_server,
        acme_email=cfg.exposure.acme_email,
        stack=cfg.stack,
        ca_generation=cfg.rotation.backend_ca,
        monitoring=observability.chart_monitoring if observability else None,
    )


def kube_bind_args(
    cfg: CentralConfig, cluster: Cluster, edge: Edge, export_namespace: pulumi.Input[str]
) -> KubeBindArgs:
    return KubeBindArgs(
        # from the cluster
        provider=cluster.provider,
        api_server_url=cluster.api_server_url,
        cluster_ca_pem=cluster.ca_pem,
        # from the edge
        namespace=edge.namespace,
        host=edge.host,
        # from the configuration
        data_services=[s.key for s in cfg.data_services],
        release=cfg.release,
        server=cfg.server,
        crd_urls=cfg.release.crd_urls(cfg.server),
        protect=cfg.protect,
        backend=cfg.backend,
        oidc=cfg.oidc,
        ingress_namespace=catalog.CHARTS[cfg.exposure.controller].namespace,
        network_policy=cfg.network_policy,
        # from the Crossplane layer
        export_namespace=export_namespace,
        cookie_keys_generation=cfg.rotation.cookie_keys,
    )


def stack_outputs(
    cfg: CentralConfig,
    network: Network | None,
    cluster: Cluster,
    crossplane: Crossplane,
    edge: Edge,
    kube_bind: KubeBind,
    observability: Observability | None = None,
) -> CentralOutputs:
    return CentralOutputs(
        vpc_id=network.vpc_id if network else None,
        public_subnet_ids=network.public_subnet_ids if network else None,
        private_subnet_ids=network.private_subnet_ids if network else None,
        cluster_name=cluster.name,
        cluster_endpoint=cluster.api_server_url,
        cluster_ca_pem=cluster.ca_pem,
        kubeconfig=cluster.kubeconfig,
        oidc_provider_arn=cluster.oidc_provider_arn,
        crossplane_version=crossplane.version,
        klutch_release=cfg.release.name,
        enabled_data_services=[s.key for s in cfg.data_services],
        provider_config_health_check=crossplane.health_check_command,
        backend_host=edge.host,
        backend_url=edge.host.apply(lambda h: f"https://{h}"),
        load_balancer_hostname=edge.load_balancer_hostname,
        export_url=kube_bind.export_url,
        bind_noninteractive_url=kube_bind.bind_noninteractive_url,
        konnector_image=cfg.release.konnector_image,
        kubectl_bind_command=kube_bind.kubectl_bind_command,
        binding_apis=kube_bind.binding_apis,
        kube_bind_crd_urls=list(cfg.release.kube_bind_crd_urls),
        tls_ca_pem=edge.ca_pem,
        monitoring_dashboard=observability.dashboard_location if observability else None,
        monitoring_alerts=observability.alert_names if observability else None,
    )
