"""The tenant program: read config → read and check the central stack → bind → build both sides → export.

`tenant/__main__.py` calls `main()`; the tests call it under the mock engine. Everything after the
StackReference is declared once the central stack's outputs are known and valid (they are known
at preview time too), because which APIs exist — and so which objects to declare — comes from the
central stack's `bindingApis`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from klutch.config import issuer
from klutch.config import tenant as tenant_config
from klutch.config.tenant import Api, CentralFacts, TenantConfig
from klutch.outputs import tenant_output_names
from klutch.sdk import compat
from klutch.tenant.binding import Binding, BindingArgs, BindingOutputs
from klutch.tenant.cluster import CentralSide, CentralSideArgs, TenantCluster, TenantClusterArgs


@dataclass(frozen=True)
class Built:
    provider_kubeconfig: pulumi.Output[str]
    central_namespace: pulumi.Output[str]
    bound_apis: list[str]
    namespace_map: pulumi.Output[dict[str, str]]
    konnector_image: str
    kubectl_bind_command: str


def main() -> None:
    compat.end_quietly_on_interrupt()
    cfg = tenant_config.load()  # raises ConfigError (all problems at once) before any resource exists
    for warning in cfg.warnings:
        pulumi.log.warn(warning)
    if not cfg.deferred:  # a config with problems fails with all of them first
        preflight(cfg)  # before any resource, the StackReference included
    central = pulumi.StackReference(cfg.central_stack)
    outputs = pulumi.Output.all(**{n: central.get_output(n) for n in tenant_output_names()})
    # Checks the central outputs and the configured apis (ConfigError naming the valid ones) before
    # anything else is declared.
    resolved = outputs.apply(lambda o: tenant_config.resolve_central(cfg, o))
    built = resolved.apply(lambda found: build(cfg, *found))

    def export(name: str, attr: str) -> None:
        pulumi.export(name, built.apply(lambda b: getattr(b, attr)))

    export("providerKubeconfig", "provider_kubeconfig")  # secret: the manual procedure's provider.kfg.yaml
    export("centralNamespace", "central_namespace")
    export("boundApis", "bound_apis")
    export("namespaceMap", "namespace_map")
    export("konnectorImage", "konnector_image")
    export("kubectlBindCommand", "kubectl_bind_command")


def preflight(cfg: TenantConfig) -> None:
    """The issuer check of the token URL: its issuer's discovery document must name this token endpoint."""
    key = f"{tenant_config.NAMESPACE}:oidc"
    if cfg.oidc.issuer_url is None:
        if cfg.oidc.check_issuer:
            pulumi.log.warn(
                f"{key}.tokenUrl {cfg.oidc.token_url!r}: its issuer is not known (not a Keycloak token URL), so it "
                f"is not checked before the bind; set {key}.issuerUrl to check it, or {key}.checkIssuer: false"
            )
        return
    subject = issuer.Subject(
        cfg.oidc.issuer_url,
        issuer_key=f"{key}.issuerUrl",
        switch_key=f"{key}.checkIssuer",
        token_url=cfg.oidc.token_url,
        token_key=f"{key}.tokenUrl",
    )
    issuer.preflight(cfg.stack, subject, enabled=cfg.oidc.check_issuer)


def build(cfg: TenantConfig, central: CentralFacts, apis: tuple[Api, ...]) -> Built:
    binding = Binding(
        "binding",
        BindingArgs(
            cluster_id=cfg.cluster_id, apis=apis, bind_url=central.bind_url, oidc=cfg.oidc, ca_pem=central.ca_pem
        ),
    )
    bound = BindingOutputs(binding.kubeconfig, binding.namespace, binding.exports)
    if cfg.cluster.configured:
        TenantCluster(
            "tenant",
            TenantClusterArgs(
                cluster=cfg.cluster,
                release=cfg.release,
                protect=cfg.protect,
                crd_urls=central.crd_urls,
                konnector_image=central.konnector_image,
                apis=apis,
                binding=bound,
            ),
            opts=pulumi.ResourceOptions(depends_on=[binding]),
        )
    central_side = CentralSide(
        "central",
        CentralSideArgs(release=cfg.release, protect=cfg.protect, namespaces=cfg.namespaces, apis=apis, binding=bound),
    )
    return Built(
        provider_kubeconfig=binding.kubeconfig,
        central_namespace=binding.namespace,
        bound_apis=[api.name for api in apis],
        namespace_map=central_side.namespace_map,
        konnector_image=central.konnector_image,
        kubectl_bind_command=fallback_command(cfg, central),
    )


def fallback_command(cfg: TenantConfig, central: CentralFacts) -> str:
    """`kubectl bind` for operators who bind by browser (the manual procedure's interactive path)."""
    if central.kubectl_bind_command and not cfg.konnector_image:
        return central.kubectl_bind_command
    return f"kubectl bind {central.export_url} --konnector-image={central.konnector_image}"


__all__ = ["build", "fallback_command", "main", "preflight"]
