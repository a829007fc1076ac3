"""The central program: read config → build the layers in order → export the stack outputs.

`__main__.py` calls `main()`; the tests and the offline renderer call it under the mock engine.
"""

from __future__ import annotations

import pulumi

from klutch.central.cluster import Cluster, ClusterArgs
from klutch.central.crossplane import Crossplane, CrossplaneArgs
from klutch.central.edge import Edge, EdgeArgs
from klutch.central.kubebind import KubeBind, KubeBindArgs
from klutch.central.network import Network, NetworkArgs
from klutch.config import central as config_module


def main() -> None:
    cfg = config_module.load()  # raises ConfigError (all problems at once) before any resource exists
    for warning in cfg.warnings:
        pulumi.log.warn(warning)
    tags = {"klutch.anynines.com/stack": cfg.stack, "klutch.anynines.com/environment": cfg.environment, **cfg.tags}

    network = None
    if cfg.is_eks:
        network = Network("network", NetworkArgs(config=cfg.network, cluster_name=cfg.cluster.name, tags=tags))
        pulumi.export("vpcId", network.vpc_id)
        pulumi.export("publicSubnetIds", network.public_subnet_ids)
        pulumi.export("privateSubnetIds", network.private_subnet_ids)

    cluster = Cluster(
        "cluster",
        ClusterArgs(
            config=cfg.cluster,
            protect=cfg.protect,
            tags=tags,
            vpc_id=network.vpc_id if network else None,
            public_subnet_ids=network.public_subnet_ids if network else (),
            private_subnet_ids=network.private_subnet_ids if network else (),
        ),
    )
    pulumi.export("clusterName", cluster.name)
    pulumi.export("clusterEndpoint", cluster.api_server_url)
    pulumi.export("clusterCaPem", cluster.ca_pem)
    pulumi.export("kubeconfig", cluster.kubeconfig)
    if cluster.oidc_provider_arn is not None:
        pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)

    # ---- Crossplane, provider-anynines, dataservices, ProviderConfigs (issue #3) ----
    crossplane = Crossplane("crossplane", CrossplaneArgs(config=cfg, provider=cluster.provider))
    pulumi.export("crossplaneVersion", crossplane.version)
    pulumi.export("klutchRelease", cfg.release.name)
    pulumi.export("enabledDataServices", [s.key for s in cfg.data_services])
    pulumi.export("providerConfigHealthCheck", crossplane.health_check_command)
    # ---- end crossplane ----

    # ---- edge and kube-bind (issue #4) ----
    edge = Edge("edge", EdgeArgs(config=cfg, provider=cluster.provider))
    kube_bind = KubeBind(
        "kube-bind",
        KubeBindArgs(
            config=cfg,
            provider=cluster.provider,
            cluster=cluster,
            edge=edge,
            # the export templates live in crossplane-system: they wait for that Namespace, never for Crossplane
            export_namespace=crossplane.namespace.metadata.apply(lambda m: m.name),
        ),
    )
    pulumi.export("backendHost", edge.host)
    pulumi.export("backendUrl", edge.host.apply(lambda h: f"https://{h}"))
    pulumi.export("loadBalancerHostname", edge.load_balancer_hostname)
    pulumi.export("exportUrl", kube_bind.export_url)
    if kube_bind.bind_noninteractive_url is not None:
        pulumi.export("bindNonInteractiveUrl", kube_bind.bind_noninteractive_url)
    pulumi.export("konnectorImage", cfg.release.konnector_image)
    pulumi.export("kubectlBindCommand", kube_bind.kubectl_bind_command)
    pulumi.export("bindingApis", kube_bind.binding_apis)
    pulumi.export("kubeBindCrdsUrl", cfg.release.kube_bind_crds_url)
    if edge.ca_pem is not None:
        pulumi.export("tlsCaPem", edge.ca_pem)
    # ---- end edge and kube-bind ----
