"""Layer 5: kube-bind on the central cluster — what tenants bind to.

- The release's kube-bind CRDs (pinned URL from the catalog), retained on delete and protected in prod:
  deleting a CRD deletes every tenant's binding objects of that kind.
- The binder ClusterRole (the manual procedure's rules over the release's kube-bind API group — see
  docs/architecture.md for why the manual procedure's `kube-bind.io` grants nothing).
- One APIServiceExportTemplate per exported API (catalog: every enabled data service plus service
  bindings, backups and restores) in the Crossplane namespace.
- The backend in the edge's namespace: ServiceAccount, ClusterRoleBinding to cluster-admin (the backend
  creates a namespace, RBAC and service-account kubeconfigs per tenant — docs/operations.md, "Security",
  says what that risks), cookie keys from pulumi-random, the cluster CA as PEM, the OIDC client, the
  Deployment and its Service (ClusterIP: the edge's Gateway/Ingress fronts it).

Nothing here waits on Crossplane: the backend serves `/export` whether or not the data-service APIs exist.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from klutch import catalog
from klutch.central import security
from klutch.config.central import BackendConfig, NetworkPolicyConfig, OidcConfig
from klutch.kube.crds import crd_files
from klutch.kube.names import cluster_role_ref

# The backend's Secrets and the environment variables its args read them through (the manual procedure's names).
COOKIE_SECRET = "cookie-config"
CA_SECRET = "k8sca"
OIDC_SECRET = "oidc-config"
CA_MOUNT = "/certa/"
CA_FILE = CA_MOUNT + "ca"
ENV_FROM_SECRETS: dict[str, tuple[str, str]] = {  # env var -> (Secret, key)
    "OIDC-ISSUER-CLIENT-ID": (OIDC_SECRET, "oidc-issuer-client-id"),
    "OIDC-ISSUER-CLIENT-SECRET": (OIDC_SECRET, "oidc-issuer-client-secret"),
    "OIDC-ISSUER-URL": (OIDC_SECRET, "oidc-issuer-url"),
    "OIDC-CALLBACK-URL": (OIDC_SECRET, "oidc-callback-url"),
    "COOKIE-SIGNING-KEY": (COOKIE_SECRET, "signing-key"),
    "COOKIE-ENCRYPTION-KEY": (COOKIE_SECRET, "encryption-key"),
}
COOKIE_KEY_BYTES = 32  # the backend rejects other lengths when an encryption key is set
OIDC_AUTHORIZE_URL_FLAG = "--oidc-authorize-url"  # only for releases whose backend has it (catalog)
ADMIN_ROLE = "cluster-admin"
CHECKSUM_ANNOTATION = "klutch.anynines.com/secrets-checksum"
TMP_SIZE = "64Mi"  # the emptyDir behind the read-only root filesystem's /tmp


def scanner_skips(server: catalog.Backend) -> dict[str, str]:
    """The backend Deployment's scanner skips: the checks it cannot pass, each with the reason."""
    reasons = {
        "CKV_K8S_35": "the backend takes its OIDC client and cookie keys only as flags; args expand them from env",
        "CKV_K8S_38": "the backend manages tenants through the API with its ServiceAccount's token",
    }
    if not server.digest:
        reasons["CKV_K8S_43"] = (
            f"the catalog has no digest for {server.image} (not resolvable offline); the tag is pinned"
        )
    return security.scanner_skips(reasons)


def generation_keepers(generation: int) -> dict[str, str] | None:
    """The keepers of a generated key: a new generation replaces it. None for the first generation, as
    every stack started, so taking over an existing stack keeps its keys."""
    return {"generation": str(generation)} if generation else None


def checksum(secret_data: dict[str, dict[str, pulumi.Input[str]]]) -> pulumi.Output[str]:
    """sha256 over the backend's Secrets (names, keys, values). Not secret itself: a digest of
    high-entropy keys reveals nothing, and the Deployment stays readable in previews and renders."""
    items = [
        (f"{secret}/{key}", value)
        for secret, data in sorted(secret_data.items())
        for key, value in sorted(data.items())
    ]
    digest = pulumi.Output.all(*[value for _, value in items]).apply(
        lambda values: hashlib.sha256(
            "\0".join(f"{name}={value}" for (name, _), value in zip(items, values, strict=True)).encode()
        ).hexdigest()
    )
    return pulumi.Output.unsecret(digest)


@dataclass(frozen=True)
class KubeBindArgs:
    provider: k8s.Provider
    release: catalog.KlutchRelease  # the kube-bind API group, binder role and names of the release
    server: catalog.Backend  # the chosen backend image: template group, probes, flags, non-interactive bind
    crd_urls: Sequence[str]  # the kube-bind CRD files (the release's pinned files, or their mirrors)
    data_services: Sequence[str]  # the enabled data services' keys: their APIs are exported
    protect: bool
    backend: BackendConfig  # the backend's namespace prefix, pretty name and consumer scope
    oidc: OidcConfig
    namespace: pulumi.Input[str]  # the backend's namespace (the edge's, where its routes point)
    host: pulumi.Output[str]  # the backend host tenants use (the edge's)
    api_server_url: pulumi.Input[str]  # the central cluster's API server, as tenants reach it
    cluster_ca_pem: pulumi.Input[str]  # the central cluster's CA certificate (PEM)
    ingress_namespace: str  # the ingress/gateway controller's: the only namespace the backend is reached from
    network_policy: NetworkPolicyConfig  # where the backend may connect to
    # The namespace of the export templates (the Crossplane layer's `crossplane-system`), as an output of
    # that layer's Namespace object: the templates then wait for the namespace only, never for the
    # Crossplane release. None: the catalog's name, without a dependency (the Kubernetes provider
    # retries a create whose namespace does not exist yet).
    export_namespace: pulumi.Input[str] | None = None
    cookie_keys_generation: int = 0  # rotation.cookieKeys: raising it generates new cookie keys


def backend_args(
    backend: BackendConfig, release: catalog.KlutchRelease, server: catalog.Backend, host: str, api_server_url: str
) -> list[str]:
    """The backend container's args: those of the manual procedure, plus flags the chosen backend image is
    known to have."""
    args = [
        f"--namespace-prefix={backend.namespace_prefix}",
        f"--pretty-name={backend.pretty_name}",
        f"--consumer-scope={backend.consumer_scope}",
        "--oidc-issuer-client-id=$(OIDC-ISSUER-CLIENT-ID)",
        "--oidc-issuer-client-secret=$(OIDC-ISSUER-CLIENT-SECRET)",
        "--oidc-issuer-url=$(OIDC-ISSUER-URL)",
        "--oidc-callback-url=$(OIDC-CALLBACK-URL)",
        f"--listen-address=0.0.0.0:{release.backend_listen_port}",
        "--cookie-signing-key=$(COOKIE-SIGNING-KEY)",
        "--cookie-encryption-key=$(COOKIE-ENCRYPTION-KEY)",
        f"--external-address={api_server_url}",
        f"--external-ca-file={CA_FILE}",
    ]
    if OIDC_AUTHORIZE_URL_FLAG in server.optional_flags:
        args.append(f"{OIDC_AUTHORIZE_URL_FLAG}=https://{host}/authorize")
    return args


def binder_rules(group: str) -> list[dict[str, Any]]:
    """The `kube-binder` rules of the manual procedure, over the release's kube-bind API group."""
    rw = ["create", "delete", "patch", "update", "get", "list", "watch"]
    read = ["get", "watch", "list"]
    status = ["get", "patch", "update"]
    return [
        {"apiGroups": [group], "resources": ["apiserviceexportrequests"], "verbs": rw},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": read},
        {"apiGroups": [group], "resources": ["clusterbindings"], "verbs": read},
        {"apiGroups": [group], "resources": ["clusterbindings/status"], "verbs": status},
        {"apiGroups": [group], "resources": ["apiserviceexports"], "verbs": read},
        {"apiGroups": [group], "resources": ["apiserviceexports/status"], "verbs": status},
        {"apiGroups": [group], "resources": ["apiservicenamespaces"], "verbs": rw},
    ]


def template_spec(api: catalog.ExtraApi) -> dict[str, Any]:
    spec: dict[str, Any] = {"APIServiceSelector": {"resource": api.resource, "group": api.group}}
    if api.permission_claims:
        spec["permissionClaims"] = [
            {"group": group, "resource": resource, "version": version, "selector": {"owner": owner}}
            for group, resource, version, owner in api.permission_claims
        ]
    return spec


def backend_container(
    release: catalog.KlutchRelease, server: catalog.Backend, args: pulumi.Input[list[str]]
) -> dict[str, Any]:
    """The backend container: env from the Secrets, probes on the image's unauthenticated path, the
    cluster CA mounted."""
    port = release.backend_listen_port
    probe = {"path": server.probe_path, "port": port}
    return {
        "name": release.backend_name,
        "image": server.pinned_image,
        # by digest: the pulled image cannot change; by tag: a re-pushed tag is pulled again
        "imagePullPolicy": "IfNotPresent" if server.digest else "Always",
        "args": args,
        "env": [
            {"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for env, (secret, key) in ENV_FROM_SECRETS.items()
        ],
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": {
            "limits": {"cpu": "2", "memory": "2Gi"},
            "requests": {"cpu": "100m", "memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": probe, "initialDelaySeconds": 5, "periodSeconds": 10},
        "livenessProbe": {
            "httpGet": probe,
            "initialDelaySeconds": 15,
            "periodSeconds": 20,
            "failureThreshold": 3,
        },
        "securityContext": security.container_security_context(),
        "volumeMounts": [
            {"name": "ca", "mountPath": CA_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": security.BACKEND_TMP},
        ],
    }


def backend_deployment_spec(
    release: catalog.KlutchRelease,
    server: catalog.Backend,
    args: pulumi.Input[list[str]],
    secrets_checksum: pulumi.Input[str],
) -> dict[str, Any]:
    """The backend Deployment's spec: one pod, recreated (not rolled) on change, and rolled whenever
    the Secrets it reads at start change (`secrets_checksum`)."""
    labels = {"app": release.backend_name}
    return {
        "replicas": 1,
        "selector": {"matchLabels": labels},
        "strategy": {"type": "Recreate"},
        "template": {
            # env from Secrets is read at start: a changed Secret must roll the pod
            "metadata": {"labels": labels, "annotations": {CHECKSUM_ANNOTATION: secrets_checksum}},
            "spec": {
                "serviceAccountName": release.backend_name,
                # the backend manages tenants through the API: the one pod that mounts its account's token
                "automountServiceAccountToken": True,
                "securityContext": security.pod_security_context(security.BACKEND_UID),
                "containers": [backend_container(release, server, args)],
                "volumes": [
                    {"name": "ca", "secret": {"secretName": CA_SECRET, "items": [{"key": "ca", "path": "ca"}]}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": TMP_SIZE}},
                ],
            },
        },
    }


def backend_network_policy_spec(
    release: catalog.KlutchRelease, ingress_namespace: str, policy: NetworkPolicyConfig
) -> dict[str, Any]:
    """The backend's traffic: in from the ingress/gateway controller's namespace on its port; out to DNS,
    the API server and the OIDC issuer (CIDRs, or the pods of an in-cluster IdP's namespace)."""
    issuer = security.Peer((policy.oidc_issuer_port,), policy.oidc_issuer_cidrs, policy.oidc_issuer_namespace)
    return security.policy_spec(
        {"app": release.backend_name},
        [security.ingress_from_namespace(ingress_namespace, release.backend_listen_port)],
        [security.Peer(security.API_SERVER_PORTS, policy.api_server_cidrs), issuer],
    )


def backend_service_spec(release: catalog.KlutchRelease) -> dict[str, Any]:
    """The backend's ClusterIP Service (the edge's Gateway/Ingress fronts it)."""
    return {
        "type": "ClusterIP",
        "selector": {"app": release.backend_name},
        "ports": [
            {
                "name": release.backend_name,
                "protocol": "TCP",
                "port": catalog.BACKEND_SERVICE_PORT,
                "targetPort": release.backend_listen_port,
            }
        ],
    }


class KubeBind(pulumi.ComponentResource):
    crds: k8s.yaml.v2.ConfigGroup
    deployment: k8s.apps.v1.Deployment
    service: k8s.core.v1.Service
    export_url: pulumi.Output[str]
    bind_noninteractive_url: pulumi.Output[str] | None
    kubectl_bind_command: pulumi.Output[str]
    binding_apis: list[dict[str, str]]

    def __init__(self, name: str, args: KubeBindArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("klutch:kubebind:KubeBind", name, None, opts)
        self._name, self._provider = name, args.provider
        release, host = args.release, args.host
        self.binding_apis = catalog.binding_apis(release, list(args.data_services))
        self._exports(args)
        self._backend(args)

        # what tenants use
        self.export_url = host.apply(lambda h: f"https://{h}/export")
        self.bind_noninteractive_url = (
            host.apply(lambda h: f"https://{h}/bind-noninteractive") if args.server.bind_noninteractive else None
        )
        self.kubectl_bind_command = self.export_url.apply(
            lambda url: f"kubectl bind {url} --konnector-image={release.konnector_image}"
        )
        self.register_outputs(
            {
                "exportUrl": self.export_url,
                "kubectlBindCommand": self.kubectl_bind_command,
                "bindingApis": self.binding_apis,
                **({"bindNonInteractiveUrl": self.bind_noninteractive_url} if self.bind_noninteractive_url else {}),
            }
        )

    def _opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._provider, **kwargs)

    def _exports(self, args: KubeBindArgs) -> None:
        """The kube-bind CRDs, the binder ClusterRole and one APIServiceExportTemplate per exported API."""
        name, release = self._name, args.release
        self.crds = crd_files(f"{name}-crds", args.crd_urls, protect=args.protect, opts=self._opts())
        self.binder_role = k8s.rbac.v1.ClusterRole(
            f"{name}-binder",
            metadata={"name": release.binder_cluster_role},
            rules=binder_rules(release.kube_bind_group),
            opts=self._opts(),
        )
        export_namespace = args.export_namespace or catalog.CHARTS["crossplane"].namespace
        self.templates = [
            k8s.apiextensions.CustomResource(
                f"{name}-export-{api.resource}",
                api_version=args.server.export_template_api_version,
                kind="APIServiceExportTemplate",
                metadata={"name": api.resource, "namespace": export_namespace},
                spec=template_spec(api),
                opts=self._opts(depends_on=[self.crds]),
            )
            for api in catalog.exported_apis(release, list(args.data_services))
        ]

    def _backend(self, args: KubeBindArgs) -> None:
        """The backend: its identity, its Secrets, the Deployment and the Service."""
        name, release, namespace = self._name, args.release, args.namespace
        labels = {"app": release.backend_name}
        account = self._identity(release.backend_name, namespace)
        secret_data = self._secret_data(args)
        secrets = [self._secret(secret, namespace, data) for secret, data in secret_data.items()]
        container_args = pulumi.Output.all(args.host, args.api_server_url).apply(
            lambda v: backend_args(args.backend, release, args.server, v[0], v[1])
        )
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-backend",
            metadata={
                "name": release.backend_name,
                "namespace": namespace,
                "labels": labels,
                "annotations": scanner_skips(args.server),
            },
            spec=backend_deployment_spec(release, args.server, container_args, checksum(secret_data)),
            # the pod reads the Secrets at start and needs the OIDC issuer reachable to become ready
            opts=self._opts(
                depends_on=[account, *secrets], custom_timeouts=pulumi.CustomTimeouts(create="10m", update="10m")
            ),
        )
        self.service = k8s.core.v1.Service(
            f"{name}-backend",
            metadata={"name": release.backend_name, "namespace": namespace, "labels": labels},
            spec=backend_service_spec(release),
            opts=self._opts(),
        )
        self.network_policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-backend",
            metadata={"name": release.backend_name, "namespace": namespace},
            spec=backend_network_policy_spec(release, args.ingress_namespace, args.network_policy),
            opts=self._opts(),
        )

    def _identity(self, backend: str, namespace: pulumi.Input[str]) -> k8s.core.v1.ServiceAccount:
        """The backend's ServiceAccount, bound to cluster-admin."""
        account = k8s.core.v1.ServiceAccount(
            f"{self._name}-backend",
            metadata={"name": backend, "namespace": namespace},
            automount_service_account_token=False,  # the backend's pod mounts it explicitly
            opts=self._opts(),
        )
        k8s.rbac.v1.ClusterRoleBinding(
            f"{self._name}-backend",
            metadata={"name": backend},
            role_ref=cluster_role_ref(ADMIN_ROLE),
            subjects=[{"kind": "ServiceAccount", "name": backend, "namespace": namespace}],
            opts=self._opts(),
        )
        return account

    def _secret_data(self, args: KubeBindArgs) -> dict[str, dict[str, pulumi.Input[str]]]:
        """The data of the backend's Secrets: generated cookie keys, the cluster CA, the OIDC client."""
        keys = {
            key: random.RandomBytes(
                f"{self._name}-cookie-{key}",
                length=COOKIE_KEY_BYTES,
                keepers=generation_keepers(args.cookie_keys_generation),
                opts=pulumi.ResourceOptions(parent=self),
            )
            for key in ("signing-key", "encryption-key")
        }
        return {
            COOKIE_SECRET: {k: pulumi.Output.secret(v.base64) for k, v in keys.items()},
            # the backend reads a PEM file; the cluster's CA is the decoded certificate-authority-data
            CA_SECRET: {"ca": args.cluster_ca_pem},
            OIDC_SECRET: {
                "oidc-issuer-client-id": args.oidc.client_id,
                "oidc-issuer-client-secret": args.oidc.client_secret.output(),
                "oidc-issuer-url": args.oidc.issuer_url,
                "oidc-callback-url": args.host.apply(lambda h: f"https://{h}/callback"),
            },
        }

    def _secret(
        self, name: str, namespace: pulumi.Input[str], data: dict[str, pulumi.Input[str]]
    ) -> k8s.core.v1.Secret:
        return k8s.core.v1.Secret(
            f"{self._name}-{name}",
            metadata={"name": name, "namespace": namespace},
            type="Opaque",
            string_data=data,
            opts=self._opts(),
        )
