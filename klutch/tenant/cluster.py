"""The tenant side and the central side of a binding (what the seed's `all.yaml` and helper did by hand).

`TenantCluster` (on the consumer cluster, explicit provider from the tenant kubeconfig or EKS):
namespace `klutch-bind` → Secret `kubeconfig` (key `kubeconfig`, the provider-side kubeconfig) →
the konnector (ServiceAccount, ClusterRole/Binding, Deployment); the kube-bind CRDs from the central
stack's `kubeBindCrdsUrl`, each waited for until `Established`, before any `APIServiceBinding`
(one per API, named `<resource>.<group>`, cluster-scoped in released CRDs, referencing the Secret,
with the backend's permission claims accepted). The seed's "apply the file twice" cannot happen:
the bindings depend on the CRDs.

`CentralSide` (on the central cluster, provider from the returned kubeconfig, in the tenant's
namespace there): one `APIServiceExportRequest` per API — the backend's request for that API,
carrying its versions, permission claims and parameters — and one `APIServiceNamespace` per
configured namespace (the seed's `helper create-ns`), waited for until the backend has assigned
the central-side namespace, which `namespace_map` exports.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from klutch.central.crds import WAIT_FOR, crd_file
from klutch.config.tenant import Api, CentralFacts, TenantConfig
from klutch.tenant.binding import Binding

KUBECONFIG_KEY = "kubeconfig"  # the only key the APIServiceBinding CRD accepts in kubeconfigSecretRef


class CustomResourceWithStatus(k8s.apiextensions.CustomResource):
    """A CustomResource that also exposes the live object's `status` as an output.

    Same type token and inputs as `k8s.apiextensions.CustomResource`; `status` is declared as an
    output property (never sent as an input), the way the typed pulumi_kubernetes classes do it.
    """

    status: pulumi.Output[Any]

    def __init__(
        self,
        resource_name: str,
        api_version: str,
        kind: str,
        metadata: Any,
        spec: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec, "status": None}
        version = pulumi.ResourceOptions(version=k8s._utilities.get_version())
        pulumi.CustomResource.__init__(
            self, f"kubernetes:{api_version}:{kind}", resource_name, props, pulumi.ResourceOptions.merge(opts, version)
        )


def accepted(claims: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The backend's permission claims, accepted (what `kubectl bind` asks the user to confirm)."""
    return [{**claim, "state": "Accepted"} for claim in claims]


def export_for(exports: Sequence[dict[str, Any]], api: Api) -> dict[str, Any]:
    for export in exports:
        if export.get("group", "") == api.group and export.get("resource") == api.resource:
            return export
    raise ValueError(f"the binding has no export for {api.name}")  # bindclient guarantees one per API


def eks_kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str | None) -> str:
    """A kubeconfig for an EKS cluster that authenticates with `aws eks get-token` (the AWS CLI)."""
    args = ["eks", "get-token", "--cluster-name", cluster_name, "--output", "json"]
    if region:
        args += ["--region", region]
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}
            ],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": args,
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        }
    )


# ------------------------------------------------------------------------------- tenant side
@dataclass(frozen=True)
class TenantClusterArgs:
    config: TenantConfig
    central: CentralFacts
    apis: Sequence[Api]
    binding: Binding


class TenantCluster(pulumi.ComponentResource):
    provider: k8s.Provider

    def __init__(self, name: str, args: TenantClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:tenant:TenantCluster", name, None, opts)
        cfg, release = args.config, args.config.release
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self._kubeconfig(name, cfg), opts=pulumi.ResourceOptions(parent=self)
        )
        on_tenant = pulumi.ResourceOptions(parent=self, provider=self.provider)
        ns_name = release.konnector_namespace
        secret_name = release.konnector_kubeconfig_secret
        konnector = release.konnector_name
        labels = {"app": konnector}

        namespace = k8s.core.v1.Namespace(f"{name}-namespace", metadata={"name": ns_name}, opts=on_tenant)
        after_ns = pulumi.ResourceOptions.merge(on_tenant, pulumi.ResourceOptions(depends_on=[namespace]))
        secret = k8s.core.v1.Secret(
            f"{name}-kubeconfig",
            metadata={"name": secret_name, "namespace": namespace.metadata.name},
            type="Opaque",
            string_data={KUBECONFIG_KEY: args.binding.kubeconfig},  # a secret Output
            opts=after_ns,
        )

        crds = crd_file(f"{name}-kube-bind-crds", args.central.crds_url, protect=cfg.protect, opts=on_tenant)

        api_version = f"{release.kube_bind_group}/{release.kube_bind_version}"
        after_crds = pulumi.ResourceOptions.merge(
            on_tenant, pulumi.ResourceOptions(depends_on=[crds, secret], protect=cfg.protect)
        )
        for api in args.apis:
            metadata: dict[str, Any] = {"name": api.name}
            if release.api_service_binding_namespaced:
                metadata["namespace"] = ns_name
            k8s.apiextensions.CustomResource(
                f"{name}-binding-{api.name}",
                api_version=api_version,
                kind="APIServiceBinding",
                metadata=metadata,
                spec={
                    "kubeconfigSecretRef": {"name": secret_name, "namespace": ns_name, "key": KUBECONFIG_KEY},
                    "permissionClaims": args.binding.exports.apply(
                        lambda exports, api=api: accepted(export_for(exports, api).get("permissionClaims") or [])
                    ),
                },
                opts=after_crds,
            )

        # The konnector as klutchio's bind/deploy/konnector ships it. Its role is cluster-wide on
        # purpose: it installs the CRDs of every bound API and syncs objects of any bound group.
        account = k8s.core.v1.ServiceAccount(
            f"{name}-konnector-sa", metadata={"name": konnector, "namespace": ns_name}, opts=after_ns
        )
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-konnector-role",
            metadata={"name": release.konnector_cluster_role},
            rules=[{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            opts=on_tenant,
        )
        role_binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-konnector-rolebinding",
            metadata={"name": release.konnector_cluster_role},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role.metadata.name},
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": ns_name}],
            opts=on_tenant,
        )
        k8s.apps.v1.Deployment(
            f"{name}-konnector",
            metadata={"name": konnector, "namespace": ns_name, "labels": labels},
            spec={
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": konnector,
                        "containers": [
                            {
                                "name": konnector,
                                "image": args.central.konnector_image,
                                "env": [
                                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                    {
                                        "name": "POD_NAMESPACE",
                                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                                    },
                                ],
                                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                            }
                        ],
                    },
                },
            },
            opts=pulumi.ResourceOptions.merge(
                on_tenant,
                pulumi.ResourceOptions(
                    depends_on=[secret, crds, account, role_binding],
                    custom_timeouts=pulumi.CustomTimeouts(create="10m", update="10m"),
                ),
            ),
        )
        self.register_outputs({"boundApis": [api.name for api in args.apis]})

    def _kubeconfig(self, name: str, cfg: TenantConfig) -> pulumi.Output[str]:
        if cfg.cluster.kubeconfig is not None:
            return cfg.cluster.kubeconfig.output()
        cluster_name = cfg.cluster.eks_cluster_name or ""
        eks = aws.eks.Cluster.get(f"{name}-eks", cluster_name, opts=pulumi.ResourceOptions(parent=self))
        region = aws.config.region
        return pulumi.Output.secret(
            pulumi.Output.all(eks.endpoint, eks.certificate_authority).apply(
                lambda v: eks_kubeconfig(cluster_name, v[0], _ca_data(v[1]), region)
            )
        )


def _ca_data(authority: Any) -> str:
    data = authority.get("data") if isinstance(authority, dict) else getattr(authority, "data", None)
    return data or ""


# ------------------------------------------------------------------------------- central side
@dataclass(frozen=True)
class CentralSideArgs:
    config: TenantConfig
    apis: Sequence[Api]
    binding: Binding


class CentralSide(pulumi.ComponentResource):
    provider: k8s.Provider
    namespace_map: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: CentralSideArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:tenant:CentralSide", name, None, opts)
        cfg, release, binding = args.config, args.config.release, args.binding
        # Everything here lives in the tenant's namespace on the central cluster, with its credentials.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=binding.kubeconfig,
            namespace=binding.namespace,
            opts=pulumi.ResourceOptions(parent=self),
        )
        on_central = pulumi.ResourceOptions(parent=self, provider=self.provider)
        api_version = f"{release.kube_bind_group}/{release.kube_bind_version}"

        for api in args.apis:
            k8s.apiextensions.CustomResource(
                f"{name}-export-{api.name}",
                api_version=api_version,
                kind="APIServiceExportRequest",
                metadata={"name": api.name, "namespace": binding.namespace},
                spec=binding.exports.apply(lambda exports, api=api: _export_request_spec(export_for(exports, api))),
                # spec.resources and spec.parameters are immutable: a change is a new request
                opts=pulumi.ResourceOptions.merge(
                    on_central, pulumi.ResourceOptions(replace_on_changes=["spec"], delete_before_replace=True)
                ),
            )

        mapped: dict[str, pulumi.Output[str]] = {}
        for ns in cfg.namespaces:
            request = CustomResourceWithStatus(
                f"{name}-namespace-{ns}",
                api_version=api_version,
                kind="APIServiceNamespace",
                # named after the consumer namespace; the backend answers with the central one
                metadata={
                    "name": ns,
                    "namespace": binding.namespace,
                    "annotations": {WAIT_FOR: "jsonpath={.status.namespace}"},
                },
                spec={},
                # deleting it deletes the central namespace and the data-service instances in it
                opts=pulumi.ResourceOptions.merge(on_central, pulumi.ResourceOptions(protect=cfg.protect)),
            )
            mapped[ns] = request.status.apply(lambda s: (s or {}).get("namespace"))
        self.namespace_map = pulumi.Output.all(**mapped) if mapped else pulumi.Output.from_input({})
        self.register_outputs({"namespaceMap": self.namespace_map})


def _export_request_spec(export: dict[str, Any]) -> dict[str, Any]:
    resource = {
        "group": export.get("group", ""),
        "resource": export["resource"],
        "versions": export.get("versions") or [],
        "permissionClaims": export.get("permissionClaims") or [],
    }
    spec: dict[str, Any] = {"resources": [resource]}
    if export.get("parameters") is not None:
        spec["parameters"] = export["parameters"]
    return spec
