"""The Klutch-specific side of the mock engine: what a mocked resource answers beyond echoing its inputs.

Remote components (pulumi_eks) are one opaque resource under mocks, and some resources have outputs
later layers read (cluster endpoints, load-balancer hostnames, the bind's response): `CuratedMocks`
makes them up, plausibly and recognisably, and remembers every value it invented. The placeholder
kubeconfig and CA the tests and the offline stack files use live here too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from klutch.sdk import compat
from klutch.sdk.tree import contains_secret, strings, unwrap_secrets

# A throw-away self-signed certificate (CN=placeholder-ca, no key kept): the CA of every mocked cluster.
PLACEHOLDER_CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUNnaFABQGhGsqUdUXFgxYD/RO5BUwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOcGxhY2Vob2xkZXItY2EwHhcNMjYxMTI0MDUyMTA2WhcNMzYx
MTIxMDUyMTA2WjAZMRcwFQYDVQQDDA5wbGFjZWhvbGRlci1jYTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABBE76liKM9MV3ZBQ75TxRunkOnshAnZS2oXR8oiNhLpo
Sa0qe1P+OT7dOfA+pTeL000vSyaDvHUaNjH572i+hmKjUzBRMB0GA1UdDgQWBBQf
VAzhFQOkjmWL1GpgdCpJc0XsCTAfBgNVHSMEGDAWgBQfVAzhFQOkjmWL1GpgdCpJ
c0XsCTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCt3Yzg1FJc
Tpttiya+ib2GK3wg+vk8rOtgXLiRzXN1+wIgJzVi9cAnBJf2eVKWCGO1ofUxBToK
tGZNvOfNQchwhUI=
-----END CERTIFICATE-----
"""
MOCK_ACCOUNT = "123456789012"
MOCK_REGION = "eu-central-1"
MOCK_ZONES = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
MOCK_LB_HOSTNAME = "k8s-mock-0123456789.elb.eu-central-1.amazonaws.com"


def mock_kubeconfig(server: str, name: str = "mock", namespace: str | None = None, token: str = "mock-token") -> str:
    """A kubeconfig (JSON) for a mocked cluster, with the placeholder CA embedded."""
    ctx: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        ctx["namespace"] = namespace
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": base64.b64encode(PLACEHOLDER_CA_PEM.encode()).decode(),
                    },
                }
            ],
            "contexts": [{"name": name, "context": ctx}],
            "current-context": name,
            "users": [{"name": name, "user": {"token": token}}],
        }
    )


MOCK_CENTRAL_NAMESPACE = "cluster-mock"


def mock_binding_response(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What a kube-bind backend answers a bind request with, as the offline tools emulate it: a
    provider-side kubeconfig for the tenant's central namespace and one export per requested API
    (its permission claims from the catalog)."""
    from klutch.catalog import EXTRA_APIS

    def claims(resource: str) -> list[dict[str, Any]]:
        api = EXTRA_APIS.get(resource)
        return [
            {"group": g, "resource": r, "version": v, "selector": {"owner": o}}
            for g, r, v, o in (api.permission_claims if api else ())
        ]

    return {
        "kubeconfig": mock_kubeconfig(
            "https://central.placeholder.invalid:6443", "central", namespace=MOCK_CENTRAL_NAMESPACE
        ),
        "namespace": MOCK_CENTRAL_NAMESPACE,
        "exports": [
            {
                **api,
                "versions": ["v1"],
                "request": api["resource"],
                "parameters": None,
                "permissionClaims": claims(api["resource"]),
            }
            for api in inputs.get("apis") or []
        ],
    }


ResourceHook = Callable[[compat.MockResourceArgs], "dict[str, Any] | None"]


class CuratedMocks(compat.Mocks):
    """Inputs echo back as outputs, plus curated outputs for what later layers read.

    `invented` collects every value the mocks made up (ids, endpoints, load-balancer hostnames,
    ARNs, a bind response...): the real ones exist only after `pulumi up`.
    """

    def __init__(
        self,
        stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
        resource_hook: ResourceHook | None = None,
        invented: Iterable[str] = (),
    ) -> None:
        self.stack_outputs = dict(stack_outputs or {})
        self.resource_hook = resource_hook
        self.invented: set[str] = {PLACEHOLDER_CA_PEM, *invented}

    def new_resource(self, args: compat.MockResourceArgs) -> tuple[str, dict]:
        state = dict(args.inputs)
        extra = self._curated(args)
        if self.resource_hook is not None:
            extra.update(self.resource_hook(args) or {})
        state.update(extra)
        if args.typ != "pulumi:pulumi:StackReference":  # its outputs are the other stack's (see `invented`)
            given = set(strings(unwrap_secrets(args.inputs)))
            self.invented.update(s for s in strings(unwrap_secrets(extra)) if s not in given and len(s) >= 6)
        if "__id" not in state:
            self.invented.add(f"{args.name}-id")
        return state.pop("__id", f"{args.name}-id"), state

    def _curated(self, args: compat.MockResourceArgs) -> dict[str, Any]:
        t, name = args.typ, args.name
        if t == "eks:index:Cluster":
            server = f"https://{name.upper()}.gr7.{MOCK_REGION}.eks.amazonaws.com"
            self.invented.add(server)  # inside the kubeconfig: the cluster endpoint the program reads from it
            issuer = f"oidc.eks.{MOCK_REGION}.amazonaws.com/id/MOCK"
            return {
                "kubeconfigJson": mock_kubeconfig(server, args.inputs.get("name", name)),
                "oidcProviderArn": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{issuer}",
                "oidcIssuer": issuer,
            }
        if t == "pulumi:pulumi:StackReference":
            # Outputs may be given as an Evaluation's raw outputs: secret ones stay secret.
            outputs = self.stack_outputs.get(args.inputs.get("name", name), {})
            return {
                "outputs": {k: unwrap_secrets(v) for k, v in outputs.items()},
                "secretOutputNames": sorted(k for k, v in outputs.items() if contains_secret(v)),
            }
        if t.startswith("aws:"):
            out = {"arn": f"arn:aws:{t.split(':')[1].split('/')[0]}:{MOCK_REGION}:{MOCK_ACCOUNT}:{name}"}
            if t == "aws:ec2/launchTemplate:LaunchTemplate":
                out["latestVersion"] = 1
            if t == "aws:kms/key:Key":
                out["keyId"] = f"{name}-key-id"
            if t == "aws:iam/role:Role":
                out["name"] = args.inputs.get("name", f"{name}-role")
            if t == "aws:eks/cluster:Cluster":  # the tenant program reads an existing EKS cluster
                out["endpoint"] = f"https://{(args.resource_id or name).upper()}.gr7.{MOCK_REGION}.eks.amazonaws.com"
                out["certificateAuthority"] = {"data": base64.b64encode(PLACEHOLDER_CA_PEM.encode()).decode()}
            return out
        if t == "kubernetes:core/v1:Service" and (
            args.resource_id  # Service.get: a controller's load balancer
            or (args.inputs.get("spec") or {}).get("type") == "LoadBalancer"
        ):
            return {"status": {"loadBalancer": {"ingress": [{"hostname": MOCK_LB_HOSTNAME}]}}}
        if t == "random:index/randomBytes:RandomBytes":
            n = int(args.inputs.get("length", 32))
            return {"base64": base64.b64encode(bytes(range(n))).decode(), "hex": bytes(range(n)).hex()}
        if t == "pulumi-python:dynamic/klutch:Binding":
            return mock_binding_response(args.inputs)
        if t.endswith(":APIServiceNamespace"):  # the backend assigns the central namespace
            return {
                "status": {"namespace": f"{MOCK_CENTRAL_NAMESPACE}-{(args.inputs.get('metadata') or {}).get('name')}"}
            }
        if t == "tls:index/selfSignedCert:SelfSignedCert":
            return {"certPem": PLACEHOLDER_CA_PEM}
        if t == "tls:index/privateKey:PrivateKey":
            return {"privateKeyPem": "-----BEGIN PRIVATE KEY-----\nmock\n-----END PRIVATE KEY-----\n"}
        return {}

    def call(self, args: compat.MockCallArgs) -> dict:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": MOCK_ZONES, "zoneIds": [z.replace("eu-central-", "euc1-az") for z in MOCK_ZONES]}
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": MOCK_REGION, "region": MOCK_REGION}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": MOCK_ACCOUNT, "arn": f"arn:aws:iam::{MOCK_ACCOUNT}:user/mock", "userId": "MOCK"}
        return {}
