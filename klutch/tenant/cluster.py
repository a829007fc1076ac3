"""The tenant side and the central side of a binding (what the manual procedure's `all.yaml` and helper did by hand).

`TenantCluster` (on the consumer cluster, explicit provider from the tenant kubeconfig or EKS):
namespace `klutch-bind` → Secret `kubeconfig` (key `kubeconfig`, the provider-side kubeconfig) →
the konnector (ServiceAccount, ClusterRole/Binding, Deployment); the kube-bind CRDs from the central
stack's `kubeBindCrdUrls`, each waited for until `Established`, before any `APIServiceBinding`
(one per API, named `<resource>.<group>`, cluster-scoped in released CRDs, referencing the Secret,
with the backend's permission claims accepted). The manual procedure's "apply the file twice" cannot happen:
the bindings depend on the CRDs.

`CentralSide` (on the central cluster, provider from the returned kubeconfig, in the tenant's
namespace there): one `APIServiceExportRequest` per API — the backend's request for that API,
carrying its versions, permission claims and parameters — and one `APIServiceNamespace` per
configured namespace (the manual procedure's `helper create-ns`), waited for until the backend has assigned
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

from klutch import catalog
from klutch.config.tenant import Api, TenantClusterConfig
from klutch.kube.crds import WAIT_FOR, crd_files
from klutch.kube.names import api_version, cluster_role_ref
from klutch.sdk import compat
from klutch.tenant.binding import BindingOutputs

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
        version = pulumi.ResourceOptions(version=compat.kubernetes_sdk_version())
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
    cluster: TenantClusterConfig  # how to reach the consumer cluster: a kubeconfig or an EKS cluster name
    release: catalog.KlutchRelease  # the konnector's and the kube-bind API's names of the release
    protect: bool
    crd_urls: Sequence[str]  # the central stack's kubeBindCrdUrls
    konnector_image: str
    apis: Sequence[Api]
    binding: BindingOutputs  # its kubeconfig (the Secret's content) and exports (the claims to accept)


def konnector_deployment_spec(name: str, image: str) -> dict[str, Any]:
    """The konnector Deployment's spec as klutchio's bind/deploy/konnector ships it: two replicas that
    know their pod name and namespace."""
    labels = {"app": name}

    def field_env(env: str, path: str) -> dict[str, Any]:
        return {"name": env, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    container = {
        "name": name,
        "image": image,
        "env": [field_env("POD_NAME", "metadata.name"), field_env("POD_NAMESPACE", "metadata.namespace")],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
    }
    return {
        "replicas": 2,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"serviceAccountName": name, "containers": [container]}},
    }


class TenantCluster(pulumi.ComponentResource):
    provider: k8s.Provider

    def __init__(self, name: str, args: TenantClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:tenant:TenantCluster", name, None, opts)
        self._name, self._args = name, args
        # Nothing reaches the consumer cluster before the bind succeeded: its provider, and so every object
        # on it, waits for the component's dependencies (the Binding). A refused bind leaves it untouched.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self._kubeconfig(name, args.cluster),
            opts=pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None),
        )
        self._on_tenant = pulumi.ResourceOptions(parent=self, provider=self.provider)
        after_ns, secret = self._kubeconfig_secret()
        crds = crd_files(f"{name}-kube-bind-crds", args.crd_urls, protect=args.protect, opts=self._on_tenant)
        self._bindings(depends_on=[crds, secret])
        self._konnector(after_ns, depends_on=[secret, crds])
        self.register_outputs({"boundApis": [api.name for api in args.apis]})

    def _kubeconfig_secret(self) -> tuple[pulumi.ResourceOptions, k8s.core.v1.Secret]:
        """The konnector's namespace and the Secret with the binding's kubeconfig in it; (options of what
        lives in the namespace, the Secret)."""
        namespace = k8s.core.v1.Namespace(
            f"{self._name}-namespace", metadata={"name": self._args.release.konnector_namespace}, opts=self._on_tenant
        )
        after_ns = pulumi.ResourceOptions.merge(self._on_tenant, pulumi.ResourceOptions(depends_on=[namespace]))
        secret = k8s.core.v1.Secret(
            f"{self._name}-kubeconfig",
            metadata={"name": self._args.release.konnector_kubeconfig_secret, "namespace": namespace.metadata.name},
            type="Opaque",
            string_data={KUBECONFIG_KEY: self._args.binding.kubeconfig},  # a secret Output
            opts=after_ns,
        )
        return after_ns, secret

    def _bindings(self, depends_on: list[pulumi.Resource]) -> None:
        """One APIServiceBinding per API, after the CRDs and the kubeconfig Secret, with the claims accepted."""
        release = self._args.release
        ns_name, secret_name = release.konnector_namespace, release.konnector_kubeconfig_secret
        after_crds = pulumi.ResourceOptions.merge(
            self._on_tenant, pulumi.ResourceOptions(depends_on=depends_on, protect=self._args.protect)
        )
        for api in self._args.apis:
            metadata: dict[str, Any] = {"name": api.name}
            if release.api_service_binding_namespaced:
                metadata["namespace"] = ns_name
            k8s.apiextensions.CustomResource(
                f"{self._name}-binding-{api.name}",
                api_version=api_version(release.kube_bind_group, release.kube_bind_version),
                kind="APIServiceBinding",
                metadata=metadata,
                spec={
                    "kubeconfigSecretRef": {"name": secret_name, "namespace": ns_name, "key": KUBECONFIG_KEY},
                    "permissionClaims": self._args.binding.exports.apply(
                        lambda exports, api=api: accepted(export_for(exports, api).get("permissionClaims") or [])
                    ),
                },
                opts=after_crds,
            )

    def _konnector(self, after_ns: pulumi.ResourceOptions, depends_on: list[pulumi.Resource]) -> None:
        """The konnector as klutchio's bind/deploy/konnector ships it. Its role is cluster-wide on
        purpose: it installs the CRDs of every bound API and syncs objects of any bound group."""
        name, release = self._name, self._args.release
        konnector, ns_name = release.konnector_name, release.konnector_namespace
        account = k8s.core.v1.ServiceAccount(
            f"{name}-konnector-sa", metadata={"name": konnector, "namespace": ns_name}, opts=after_ns
        )
        role = k8s.rbac.v1.ClusterRole(
            f"{name}-konnector-role",
            metadata={"name": release.konnector_cluster_role},
            rules=[{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            opts=self._on_tenant,
        )
        role_binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-konnector-rolebinding",
            metadata={"name": release.konnector_cluster_role},
            role_ref=cluster_role_ref(role.metadata.name),
            subjects=[{"kind": "ServiceAccount", "name": account.metadata.name, "namespace": ns_name}],
            opts=self._on_tenant,
        )
        k8s.apps.v1.Deployment(
            f"{name}-konnector",
            metadata={"name": konnector, "namespace": ns_name, "labels": {"app": konnector}},
            spec=konnector_deployment_spec(konnector, self._args.konnector_image),
            opts=pulumi.ResourceOptions.merge(
                self._on_tenant,
                pulumi.ResourceOptions(
                    depends_on=[*depends_on, account, role_binding],
                    custom_timeouts=pulumi.CustomTimeouts(create="10m", update="10m"),
                ),
            ),
        )

    def _kubeconfig(self, name: str, cluster: TenantClusterConfig) -> pulumi.Output[str]:
        if cluster.kubeconfig is not None:
            return cluster.kubeconfig.output()
        cluster_name = cluster.eks_cluster_name or ""
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
    release: catalog.KlutchRelease  # the kube-bind API group and version of the release
    protect: bool
    namespaces: Sequence[str]  # consumer namespaces to pre-create on the central side
    apis: Sequence[Api]
    binding: BindingOutputs


class CentralSide(pulumi.ComponentResource):
    provider: k8s.Provider
    namespace_map: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, args: CentralSideArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:tenant:CentralSide", name, None, opts)
        # Everything here lives in the tenant's namespace on the central cluster, with its credentials.
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=args.binding.kubeconfig,
            namespace=args.binding.namespace,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self._name, self._args = name, args
        self._on_central = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self._api_version = api_version(args.release.kube_bind_group, args.release.kube_bind_version)
        self._export_requests()
        self.namespace_map = self._namespaces()
        self.register_outputs({"namespaceMap": self.namespace_map})

    def _export_requests(self) -> None:
        """One APIServiceExportRequest per API: the backend's request for it, as the binding returned it."""
        for api in self._args.apis:
            k8s.apiextensions.CustomResource(
                f"{self._name}-export-{api.name}",
                api_version=self._api_version,
                kind="APIServiceExportRequest",
                metadata={"name": api.name, "namespace": self._args.binding.namespace},
                spec=self._args.binding.exports.apply(
                    lambda exports, api=api: _export_request_spec(export_for(exports, api))
                ),
                # spec.resources and spec.parameters are immutable: a change is a new request
                opts=pulumi.ResourceOptions.merge(
                    self._on_central, pulumi.ResourceOptions(replace_on_changes=["spec"], delete_before_replace=True)
                ),
            )

    def _namespaces(self) -> pulumi.Output[dict[str, str]]:
        """One APIServiceNamespace per configured namespace; the central namespace the backend assigned to each."""
        mapped: dict[str, pulumi.Output[str]] = {}
        for ns in self._args.namespaces:
            request = CustomResourceWithStatus(
                f"{self._name}-namespace-{ns}",
                api_version=self._api_version,
                kind="APIServiceNamespace",
                # named after the consumer namespace; the backend answers with the central one
                metadata={
                    "name": ns,
                    "namespace": self._args.binding.namespace,
                    "annotations": {WAIT_FOR: "jsonpath={.status.namespace}"},
                },
                spec={},
                # deleting it deletes the central namespace and the data-service instances in it
                opts=pulumi.ResourceOptions.merge(self._on_central, pulumi.ResourceOptions(protect=self._args.protect)),
            )
            mapped[ns] = request.status.apply(lambda s: (s or {}).get("namespace"))
        return pulumi.Output.all(**mapped) if mapped else pulumi.Output.from_input({})


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
