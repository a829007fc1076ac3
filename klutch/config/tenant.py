"""The tenant stack's configuration (project `klutch-tenant`), and the central stack's outputs it binds to.

Two steps, one `ConfigError` with every problem (key, value, what is allowed):

1. `load()` / `parse()` validate the tenant stack's own config.
2. `resolve_central()` validates the central stack's outputs (read through a StackReference) and
   resolves the configured `apis` against the central `bindingApis` — the earliest point at which
   an API the central stack does not export can be reported, with the valid ones named. The tenant
   program calls it before it declares anything but the StackReference.

So that a stack's problems are reported in one round, `load()` raises at once only when the
central stack cannot be read (a bad `centralStack`); any other problem it holds back
(`TenantConfig.deferred`) for `resolve_central()` to raise together with the central stack's.

docs/tenant.md ("Tenant stack configuration") documents every key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from klutch import catalog
from klutch.config import reader
from klutch.config.issuer import issuer_of_token_url
from klutch.config.reader import (
    ConfigError,
    Problem,
    Reader,
    Secret,
    TopReader,
    check_dns_label,
    check_kubeconfig,
    check_url,
    parse_top,
    read_other_config,
    read_stack_config,
    secret_hint,
    show,
)
from klutch.outputs import CentralOutputs, TenantReads, read_for_tenant, tenant_output_names

NAMESPACE = "klutch-tenant"
# The other config namespaces the program reads (the Pulumi engine's and its providers').
OTHER_NAMESPACES = ("pulumi", "aws", "kubernetes")

_STACK_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_QUALIFIED_STACK = re.compile(rf"^{_STACK_PART}/{_STACK_PART}/{_STACK_PART}$")
_RESOURCE = re.compile(r"^[a-z][-a-z0-9]*[a-z0-9]$")  # the CRDs' GroupResource.resource pattern
_GROUP = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_EKS_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")
_IMAGE = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)

# The central stack's outputs the tenant reads (the contract record's names).
CENTRAL_OUTPUTS = tenant_output_names()


# ------------------------------------------------------------------------------- the objects
@dataclass(frozen=True, order=True)
class Api:
    """An API the central cluster exports: one APIServiceBinding `<resource>.<group>` on the tenant."""

    group: str
    resource: str

    @property
    def name(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def as_dict(self) -> dict[str, str]:
        return {"group": self.group, "resource": self.resource}


@dataclass(frozen=True)
class ApiSelector:
    """One configured `apis` entry: `<resource>.<group>`, a bare `<resource>`, or {group, resource}."""

    resource: str
    group: str | None  # None: the one group the central stack exports `resource` in
    shown: Any  # the value as configured (for messages)


@dataclass(frozen=True)
class OidcClient:
    """OAuth2 client-credentials client the backend's OIDC issuer knows (audience `kube-bind`)."""

    token_url: str
    client_id: str
    client_secret: Secret
    scope: str | None
    issuer_url: str | None = None  # the issuer of token_url: configured, or derived from a Keycloak token URL
    check_issuer: bool = True  # the issuer preflight of preview and up (klutch.config.issuer)


@dataclass(frozen=True)
class TenantClusterConfig:
    """The consumer cluster: a kubeconfig (secret), an EKS cluster reached with `aws eks get-token`, or
    neither yet (the manual procedure's "preparing the binding before cluster creation")."""

    kubeconfig: Secret | None
    eks_cluster_name: str | None

    @property
    def configured(self) -> bool:
        return self.kubeconfig is not None or self.eks_cluster_name is not None


@dataclass(frozen=True)
class TenantConfig:
    stack: str
    central_stack: str
    cluster_id: str
    apis: tuple[ApiSelector, ...]  # empty: every API the central stack exports
    oidc: OidcClient
    cluster: TenantClusterConfig
    konnector_image: str | None  # override of the central stack's konnectorImage
    namespaces: tuple[str, ...]  # consumer namespaces to pre-create on the central side
    release: catalog.KlutchRelease
    protect: bool
    warnings: tuple[str, ...] = ()
    deferred: tuple[Problem, ...] = ()  # problems resolve_central() raises with the central stack's (see load)


@dataclass(frozen=True)
class CentralFacts:
    """The central stack's outputs, validated."""

    stack: str
    export_url: str
    bind_url: str
    konnector_image: str  # the image to run: the tenant's konnectorImage override, else the central output
    binding_apis: tuple[Api, ...]
    crd_urls: tuple[str, ...]  # the kube-bind CRD files the konnector needs
    ca_pem: str | None  # only when the backend's certificate comes from a self-signed CA
    kubectl_bind_command: str | None


# ------------------------------------------------------------------------------- parsing
def secret_paths(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(top-level key, path) of every secret the given raw config needs (as `parse` reads them)."""
    return reader.secret_paths(parse, raw)


def load() -> TenantConfig:
    """Read and validate this stack's configuration. Raises ConfigError listing every problem when
    the central stack cannot be read; other problems are deferred to `resolve_central()`."""
    raw, secret_keys = read_stack_config(NAMESPACE)
    return parse(raw, secret_keys, stack=pulumi.get_stack(), defer=True, others=read_other_config(NAMESPACE))


def parse(
    raw: Mapping[str, Any],
    secret_keys: set[str] | frozenset[str],
    *,
    stack: str,
    defer: bool = False,
    others: Mapping[str, Any] | None = None,
) -> TenantConfig:
    """The tenant config; raises ConfigError with every problem (`defer`: see `load`; `others`: the
    stack's config outside the namespace, whose namespaces are checked too)."""

    def readable(problems: list[Problem]) -> bool:  # the central stack can still be read and checked
        return not any(p.key == f"{NAMESPACE}:centralStack" for p in problems)

    return parse_top(
        NAMESPACE,
        raw,
        secret_keys,
        stack=stack,
        read=lambda top, warnings: _read(top, warnings, stack),
        defer=readable if defer else None,
        others=others,
        known_namespaces=OTHER_NAMESPACES,
    )


def _read(top: TopReader, warnings: list[str], stack: str) -> TenantConfig:
    central_stack = top.string("centralStack", required=True, check=_check_stack)
    cluster_id = top.string("clusterId", required=True, check=check_dns_label)
    apis = _apis(top)
    oidc = _oidc(top.child("oidc"))
    cluster = _cluster(top, warnings)
    image = top.string("konnectorImage", None, check=_check_image)
    namespaces = top.strings("namespaces", check=check_dns_label)
    if len(set(namespaces)) != len(namespaces):
        top.problem("namespaces", list(namespaces), "must not repeat a namespace")
    release_name = top.string("klutchRelease", catalog.DEFAULT_RELEASE, choices=sorted(catalog.RELEASES))
    release = catalog.RELEASES.get(release_name or "", catalog.RELEASES[catalog.DEFAULT_RELEASE])
    protect = top.boolean("protect", False)
    return TenantConfig(
        stack=stack,
        central_stack=central_stack,
        cluster_id=cluster_id,
        apis=apis,
        oidc=oidc,
        cluster=cluster,
        konnector_image=image,
        namespaces=namespaces,
        release=release,
        protect=protect,
        warnings=tuple(warnings),
    )


def _check_stack(value: str) -> str | None:
    if _QUALIFIED_STACK.match(value):
        return None
    return (
        "must be the central stack's fully qualified name '<organization>/<project>/<stack>', e.g. "
        "'my-org/klutch-central/prod' (self-managed backends: 'organization/klutch-central/prod')"
    )


def _check_image(value: str) -> str | None:
    return (
        None
        if _IMAGE.match(value)
        else "must be a container image reference, e.g. 'registry.example.com/konnector:v1.3.0'"
    )


def _apis(top: TopReader) -> tuple[ApiSelector, ...]:
    present = top.has("apis")
    value = top.take("apis")
    if not present:
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, list) or not value:
        top.problem(
            "apis",
            value,
            "must be a non-empty list of '<resource>.<group>' (or '<resource>') strings; "
            "leave it unset to bind every API the central stack exports",
        )
        return ()
    out: list[ApiSelector] = []
    for i, item in enumerate(value):
        selector = _selector(item)
        if isinstance(selector, str):
            top.problem(f"apis[{i}]", item, selector)
        else:
            out.append(selector)
    keys = [(s.resource, s.group) for s in out]
    if len(set(keys)) != len(keys):
        top.problem("apis", value, "must not list an API twice")
    return tuple(out)


def _selector(item: Any) -> ApiSelector | str:
    """The selector for one `apis` entry, or why it is invalid."""
    why = (
        "must be '<resource>.<group>' (e.g. 'postgresqlinstances.anynines.com'), a bare '<resource>', "
        "or {group, resource}"
    )
    if isinstance(item, str):
        resource, sep, group = item.partition(".")
        group_or_none: str | None = group if sep else None
    elif (
        isinstance(item, dict)
        and set(item) <= {"group", "resource"}
        and isinstance(item.get("resource"), str)
        and isinstance(item.get("group", ""), str)
    ):
        resource, group_or_none = item["resource"], item.get("group", "")
    else:
        return why
    if not _RESOURCE.match(resource) or (group_or_none and not _GROUP.match(group_or_none)):
        return why
    return ApiSelector(resource=resource, group=group_or_none, shown=item)


def _oidc(r: Reader) -> OidcClient:
    token_url = r.string("tokenUrl", required=True, check=check_url(("https",)))
    client_id = r.string(
        "clientId", required=True, check=lambda v: None if v.strip() == v and v else "must be a non-empty client id"
    )
    secret = r.secret("clientSecret", required=True)
    scope = r.string("scope", None, check=lambda v: None if v.strip() else "must be space-separated scope names")
    issuer = r.string("issuerUrl", None, check=check_url(("https",)))
    check_issuer = r.boolean("checkIssuer", True)
    r.finish()
    return OidcClient(
        token_url=token_url or "",
        client_id=client_id or "",
        client_secret=secret or Secret(""),
        scope=scope,
        issuer_url=issuer or issuer_of_token_url(token_url or ""),
        check_issuer=check_issuer,
    )


def _cluster(top: TopReader, warnings: list[str]) -> TenantClusterConfig:
    eks_name = top.string(
        "eksClusterName",
        None,
        check=lambda v: (
            None if _EKS_NAME.match(v) else "must be an EKS cluster name (letters, digits, '-' and '_', at most 100)"
        ),
    )
    also = " (or: cat tenant.kubeconfig | pulumi config set --secret kubeconfig)"
    if top.has("eksClusterName"):
        if top.has("kubeconfig"):
            top.problem("kubeconfig", "[secret]", "set either kubeconfig or eksClusterName, not both")
            top.take("kubeconfig")
        return TenantClusterConfig(kubeconfig=None, eks_cluster_name=eks_name)
    kubeconfig = top.secret("kubeconfig", required=False, also=also, check=check_kubeconfig)
    if top.peek("kubeconfig") in (None, ""):
        warnings.append(
            "no tenant cluster configured (kubeconfig or eksClusterName): only the binding and its central side "
            "are created — use the providerKubeconfig output to prepare instances before the tenant cluster "
            f"exists, then set the cluster (`{secret_hint(top.key('kubeconfig'))}{also}`) and run `pulumi up` again "
            "to install the konnector"
        )
        return TenantClusterConfig(kubeconfig=None, eks_cluster_name=None)
    return TenantClusterConfig(kubeconfig=kubeconfig, eks_cluster_name=None)


# ------------------------------------------------------------------------------- the central stack
def resolve_central(cfg: TenantConfig, outputs: Mapping[str, Any]) -> tuple[CentralFacts, tuple[Api, ...]]:
    """Validate the central stack's outputs and resolve `apis` against its `bindingApis`.

    Raises ConfigError with every problem: missing or malformed outputs, and each configured API
    the central stack does not export (naming the ones it does).
    """
    problems: list[Problem] = list(cfg.deferred)  # the tenant config's own problems (see load)
    central = read_for_tenant(outputs)
    if central.empty():
        why = (
            f"has none of the outputs a tenant binds with ({', '.join(CENTRAL_OUTPUTS)}): is the central stack "
            f"deployed (`pulumi stack output -s {cfg.central_stack}`) and the name right?"
        )
        raise ConfigError(cfg.stack, [*problems, Problem(f"{NAMESPACE}:centralStack", cfg.central_stack, why)])
    facts = _central_facts(cfg, central, problems)
    apis = _resolve_apis(cfg, facts.binding_apis, problems) if facts.binding_apis else ()
    _check_release(cfg, central.klutch_release, problems)
    if problems:
        raise ConfigError(cfg.stack, problems)
    return facts, apis


def _central_facts(cfg: TenantConfig, central: TenantReads, problems: list[Problem]) -> CentralFacts:
    """The central stack's outputs checked one by one; each bad one is a problem of `centralStack`, and
    its fact empty."""

    def bad(field: str, why: str) -> None:
        name = CentralOutputs.output_name(field)
        problems.append(Problem(f"{NAMESPACE}:centralStack", cfg.central_stack, f"its output '{name}' {why}"))

    def url(field: str, why_missing: str) -> str:
        value = getattr(central, field)
        if value is None:
            bad(field, f"is missing: {why_missing}")
        elif not isinstance(value, str) or check_url(("https",))(value):
            bad(field, f"= {show(value)} is not an https URL")
        else:
            return value
        return ""

    export_url = url("export_url", "the backend's /export URL")
    command = central.kubectl_bind_command
    interactive = command or f"the central stack's {CentralOutputs.output_name('kubectl_bind_command')} output"
    bind_url = url(
        "bind_noninteractive_url",
        f"the central backend offers no non-interactive bind (backend.kind open-source); "
        f"bind this tenant interactively: {interactive}",
    )
    crd_urls = _crd_urls(central.kube_bind_crd_urls, bad)
    image = cfg.konnector_image or central.konnector_image
    if not cfg.konnector_image and (not isinstance(image, str) or _check_image(image)):
        bad("konnector_image", f"= {show(image)} is not a container image (or set {NAMESPACE}:konnectorImage)")
        image = ""
    ca_pem = central.tls_ca_pem
    if ca_pem is not None and (not isinstance(ca_pem, str) or "-----BEGIN CERTIFICATE-----" not in ca_pem):
        bad("tls_ca_pem", "is not a PEM certificate")
        ca_pem = None
    if command is not None and not isinstance(command, str):
        bad("kubectl_bind_command", "is not a string")
        command = None
    return CentralFacts(
        stack=cfg.central_stack,
        export_url=export_url,
        bind_url=bind_url,
        konnector_image=image,
        binding_apis=_binding_apis(central.binding_apis, bad),
        crd_urls=crd_urls,
        ca_pem=ca_pem,
        kubectl_bind_command=command,
    )


def _check_release(cfg: TenantConfig, central: Any, problems: list[Problem]) -> None:
    """The tenant's kube-bind objects (group, version, konnector names) follow its klutchRelease: it must be
    the central stack's. (A central stack that does not say is not checked.)"""
    if isinstance(central, str) and central != cfg.release.name:
        output = CentralOutputs.output_name("klutch_release")
        problems.append(
            Problem(
                f"{NAMESPACE}:klutchRelease",
                cfg.release.name,
                f"differs from the {output} output {central!r} of central stack '{cfg.central_stack}'; "
                f"use the central stack's release: `pulumi config set klutchRelease {central}`",
            )
        )


def _crd_urls(value: Any, bad: Callable[[str, str], None]) -> tuple[str, ...]:
    """The central stack's kube-bind CRD files: http(s) URLs (the release's pinned files or a mirror)."""
    good = (
        isinstance(value, list)
        and value
        and all(isinstance(u, str) and not check_url(("https", "http"))(u) for u in value)
    )
    if not good:
        bad("kube_bind_crd_urls", f"= {show(value)} is not a list of http(s) URLs of the kube-bind CRD files")
        return ()
    return tuple(value)


def _binding_apis(value: Any, bad: Callable[[str, str], None]) -> tuple[Api, ...]:
    ok = (
        isinstance(value, list)
        and value
        and all(
            isinstance(a, dict)
            and isinstance(a.get("resource"), str)
            and a["resource"]
            and isinstance(a.get("group", ""), str)
            for a in value
        )
    )
    if not ok:
        bad("binding_apis", f"= {show(value)} is not a non-empty list of {{group, resource}}")
        return ()
    return tuple(dict.fromkeys(Api(a.get("group", ""), a["resource"]) for a in value))


def _resolve_apis(cfg: TenantConfig, exported: tuple[Api, ...], problems: list[Problem]) -> tuple[Api, ...]:
    if not cfg.apis:
        return exported
    valid = ", ".join(a.name for a in exported)
    out: list[Api] = []
    for i, selector in enumerate(cfg.apis):
        matches = [
            a
            for a in exported
            if a.resource == selector.resource and (selector.group is None or a.group == selector.group)
        ]
        key = f"{NAMESPACE}:apis[{i}]"
        if not matches:
            problems.append(
                Problem(key, selector.shown, f"is not exported by central stack '{cfg.central_stack}'; valid: {valid}")
            )
        elif len(matches) > 1:
            problems.append(
                Problem(key, selector.shown, "is ambiguous; write one of " + ", ".join(repr(a.name) for a in matches))
            )
        elif matches[0] in out:
            problems.append(Problem(key, selector.shown, f"names {matches[0].name} again"))
        else:
            out.append(matches[0])
    return tuple(out)


__all__ = [
    "Api",
    "CentralFacts",
    "ConfigError",
    "NAMESPACE",
    "TenantConfig",
    "load",
    "parse",
    "resolve_central",
    "secret_paths",
]
