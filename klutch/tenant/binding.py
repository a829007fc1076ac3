"""The non-interactive bind as a Pulumi dynamic resource (`pulumi-python:dynamic/klutch:Binding`).

Create runs `bindclient.bind` (token → POST /bind-noninteractive → BindingResponse) and stores the
provider-side kubeconfig (a secret output), the tenant's namespace on the central cluster and one
export per requested API (versions, permission claims, parameters). Changing `clusterId` or
`apis` replaces the binding (a new bind); changing the URLs, the OIDC client or the CA is no change
(they are used at bind time only; the next bind uses the new ones). Delete cannot release anything on the central
side — the kube-bind backend has no unbind endpoint — and says so on the provider's stderr, which
Pulumi shows in the update's output: the export requests and APIServiceNamespaces this stack made
are ordinary Kubernetes resources and are deleted by Pulumi itself, before the binding.

A refused bind is an operator's mistake, reported as the bind client's message alone (what was
refused, by whom, the likely cause, the fix), never as a Python traceback: `check`, which runs in
`preview` and `up` before a new bind, asks the IdP for a token (a read, no bind) and returns a refusal
as a CheckFailure, which the engine prints as "… resource 'binding' has a problem: <message>"; a
refusal of the bind itself in `create` is raised so that the dynamic-provider host reports its
message only (`compat.report_errors_without_frames`).

How the provider reaches its code: Pulumi pickles the provider object (dill) into the state and
unpickles it in a separate provider process (`python -m pulumi.dynamic`, run by the project's
virtualenv, where the `klutch` package is installed). The provider class is pickled by reference.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, Resource, ResourceProvider

from klutch.config.tenant import Api, OidcClient
from klutch.sdk import compat
from klutch.sdk.tree import unwrap_secrets
from klutch.tenant import bindclient

TYPE = "pulumi-python:dynamic/klutch:Binding"
# Inputs kept in the outputs (what the bind used); the client secret is never echoed.
PUBLIC_INPUTS = ("clusterId", "apis", "bindUrl", "tokenUrl", "clientId", "scope", "caPem")
REPLACE_ON = ("clusterId", "apis")  # a different tenant identity or API set is a new bind
TOKEN_INPUTS = ("tokenUrl", "clientId", "clientSecret", "scope", "caPem")
RESULTS = ("kubeconfig", "namespace", "exports")


@dataclass(frozen=True)
class BindingArgs:
    cluster_id: str
    apis: Sequence[Api]
    bind_url: str
    oidc: OidcClient
    ca_pem: str | None  # the central backend's self-signed CA (tlsCaPem), if any


@dataclass(frozen=True)
class BindingOutputs:
    """What the two sides of a binding read from it."""

    kubeconfig: pulumi.Input[str]  # the provider-side kubeconfig (secret)
    namespace: pulumi.Input[str]  # the tenant's namespace on the central cluster
    exports: pulumi.Output[list[dict[str, Any]]]  # one per bound API: versions, permission claims, parameters


class BindingProvider(ResourceProvider):
    """CRUD of a binding. `policy` (timeouts, retries) is injectable for tests."""

    def __init__(self, policy: bindclient.Policy | None = None) -> None:
        self._policy = policy or bindclient.Policy()

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Before a new bind (in preview too): the IdP must issue this client a token. A refusal is a
        CheckFailure naming what to fix; no bind request is sent here."""
        plain = unwrap_secrets(news)
        if _replaces(unwrap_secrets(olds), plain) and not any(compat.is_unknown(plain.get(k)) for k in TOKEN_INPUTS):
            try:
                bindclient.fetch_token(_credentials(plain), ca_pem=plain.get("caPem"), policy=self._policy)
            except bindclient.BindError as e:
                return CheckResult(news, [CheckFailure("", str(e))])
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = unwrap_secrets(props)
        try:
            binding = bindclient.bind(
                props["bindUrl"],
                _credentials(props),
                props["clusterId"],
                props["apis"],
                ca_pem=props.get("caPem"),
                policy=self._policy,
            )
            exports = binding.exports_for(props["apis"])
        except bindclient.BindError as e:
            compat.report_errors_without_frames()
            raise e from None
        outs = {
            **{k: props.get(k) for k in PUBLIC_INPUTS},
            "kubeconfig": binding.kubeconfig,
            "namespace": binding.namespace,
            "exports": [e.as_dict() for e in exports],
        }
        return CreateResult(id_=f"{props['clusterId']}@{binding.namespace}", outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Only a new identity or API set is a change (a new bind). The URLs, the client and the CA are
        used at bind time only: changing them changes nothing until the next bind, and the outputs keep
        the ones the binding was made with. (An in-place update would also make every output unknown in
        a preview, showing the objects that read them as replaced.)"""
        replaces = _replaces(unwrap_secrets(olds), unwrap_secrets(news))
        return DiffResult(changes=bool(replaces), replaces=replaces, delete_before_replace=False)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        props = unwrap_secrets(props)
        print(
            release_message(props.get("clusterId") or "?", props.get("namespace") or "?"), file=sys.stderr, flush=True
        )


def release_message(cluster_id: str, namespace: str) -> str:
    return (
        f"klutch binding of cluster id '{cluster_id}' deleted from this stack. The kube-bind backend offers no "
        f"unbind endpoint, so nothing was released on the central cluster: the tenant namespace '{namespace}' "
        "(its ServiceAccount, credentials and ClusterBinding) is kept there. If the binding was replaced "
        "(clusterId or apis changed), the new binding uses that namespace: leave it. If the stack was destroyed, "
        "Pulumi deleted its export requests and APIServiceNamespaces before the binding, and once no other "
        f"binding uses cluster id '{cluster_id}', the central operator may run "
        f"`kubectl delete namespace {namespace}` on the central cluster."
    )


def _credentials(props: Mapping[str, Any]) -> bindclient.Credentials:
    return bindclient.Credentials(props["tokenUrl"], props["clientId"], props["clientSecret"], props.get("scope"))


def _replaces(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """The inputs whose change makes a new bind (every one of them when there is no binding yet)."""
    return [k for k in REPLACE_ON if _normal(k, olds.get(k)) != _normal(k, news.get(k))]


def _normal(key: str, value: Any) -> Any:
    if key == "apis" and isinstance(value, list):
        return sorted((a.get("group", ""), a.get("resource", "")) for a in value if isinstance(a, Mapping))
    return value or None


class Binding(Resource, module="klutch", name="Binding"):
    """The bind of one tenant cluster. Outputs: `kubeconfig` (secret), `namespace`, `exports`."""

    kubeconfig: pulumi.Output[str]
    namespace: pulumi.Output[str]
    exports: pulumi.Output[list[dict[str, Any]]]

    def __init__(self, name: str, args: BindingArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props = {
            "clusterId": args.cluster_id,
            "apis": [a.as_dict() for a in args.apis],
            "bindUrl": args.bind_url,
            "tokenUrl": args.oidc.token_url,
            "clientId": args.oidc.client_id,
            "clientSecret": args.oidc.client_secret.output(),
            "scope": args.oidc.scope,
            "caPem": args.ca_pem,
            **{k: None for k in RESULTS},
        }
        super().__init__(
            BindingProvider(),
            name,
            props,
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"])),
        )
        # Secret in the state through additional_secret_outputs; wrapped here as well so that every
        # value derived from it in this program is a secret whatever the engine does.
        self.kubeconfig = pulumi.Output.secret(self.kubeconfig)
