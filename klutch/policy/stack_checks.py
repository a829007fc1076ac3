"""The rules over the whole stack: node groups (IMDSv2, private), TLS on every exposed route, the one
cluster-admin binding."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from klutch import catalog
from klutch.policy.model import (
    GATEWAY_GROUP,
    LAUNCH_TEMPLATE,
    NODE_GROUP,
    SUBNET,
    Resource,
    Violation,
    containers,
    known,
)
from klutch.policy.resource_checks import repository

# ------------------------------------------------------------------------------- stack rules


def _deps(res: Resource, prop: str, resources: Mapping[str, Resource], type_: str) -> list[Resource]:
    return [
        resources[u] for u in res.property_dependencies.get(prop, ()) if u in resources and resources[u].type == type_
    ]


def node_group_imdsv2(resources: Sequence[Resource]) -> Iterator[Violation]:
    by_urn = {r.urn: r for r in resources}
    for res in resources:
        if res.type != NODE_GROUP:
            continue
        templates = _deps(res, "launchTemplate", by_urn, LAUNCH_TEMPLATE)
        if not res.get("launchTemplate"):
            yield res.urn, f"{res.where()}: no launch template, so the instance metadata service accepts IMDSv1"
        elif not templates:
            yield res.urn, f"{res.where()}: its launch template is not part of this stack; cannot verify IMDSv2"
        for t in templates:
            tokens = t.get("metadataOptions.httpTokens")
            if known(tokens) and tokens != "required":
                yield t.urn, f"{t.where()}: metadataOptions.httpTokens is {tokens!r}; IMDSv2 needs 'required'"


def node_group_private(resources: Sequence[Resource]) -> Iterator[Violation]:
    by_urn = {r.urn: r for r in resources}
    for res in resources:
        if res.type != NODE_GROUP:
            continue
        subnet_ids = res.get("subnetIds")
        subnets = _deps(res, "subnetIds", by_urn, SUBNET)
        if known(subnet_ids) and subnet_ids and not subnets:
            yield (
                res.urn,
                f"{res.where()}: its subnets are not part of this stack; cannot verify they assign no public IPs",
            )
        for s in subnets:
            if s.get("mapPublicIpOnLaunch") is True:
                yield s.urn, f"{s.where()}: node group {res.name} runs in a subnet with mapPublicIpOnLaunch true"
        for t in _deps(res, "launchTemplate", by_urn, LAUNCH_TEMPLATE):
            for i, nic in enumerate(t.get("networkInterfaces") or []):
                if isinstance(nic, Mapping) and str(nic.get("associatePublicIpAddress")).lower() == "true":
                    yield t.urn, f"{t.where()}: networkInterfaces.{i}.associatePublicIpAddress is true"


def _hosts_covered(hosts: Iterable[str], tls_hosts: Iterable[str]) -> list[str]:
    """The hosts no TLS entry covers (exact or one-label wildcard)."""
    tls = list(tls_hosts)

    def covered(h: str) -> bool:
        return any(t == h or (t.startswith("*.") and h.split(".", 1)[-1] == t[2:]) for t in tls)

    return [h for h in hosts if not covered(h)]


def _is_https_redirect(route: Resource) -> bool:
    rules = route.get("spec.rules") or []
    return bool(rules) and all(
        any(
            isinstance(f, Mapping)
            and f.get("type") == "RequestRedirect"
            and (f.get("requestRedirect") or {}).get("scheme") == "https"
            for f in (rule.get("filters") or [])
        )
        for rule in rules
        if isinstance(rule, Mapping)
    )


def tls_everywhere(resources: Sequence[Resource]) -> Iterator[Violation]:
    """Every Ingress serves TLS for its hosts; every route is on an HTTPS listener or only redirects."""
    gateways = {
        (r.namespace or "default", r.k8s_name): r
        for r in resources
        if r.kind == "Gateway" and r.api_group == GATEWAY_GROUP
    }
    for res in resources:
        if res.kind == "Ingress" and res.api_group in ("networking.k8s.io", "extensions"):
            tls = [t for t in res.get("spec.tls") or [] if isinstance(t, Mapping)]
            if not tls:
                yield res.urn, f"{res.where()}: no spec.tls; serve it over HTTPS (cert-manager certificate)"
                continue
            hosts = [
                r.get("host")
                for r in res.get("spec.rules") or []
                if isinstance(r, Mapping) and isinstance(r.get("host"), str)
            ]
            missing = _hosts_covered(hosts, [h for t in tls for h in t.get("hosts") or [] if isinstance(h, str)])
            if missing:
                yield res.urn, f"{res.where()}: hosts {missing} are not covered by spec.tls"
        elif res.kind == "Gateway" and res.api_group == GATEWAY_GROUP:
            listeners = [x for x in res.get("spec.listeners") or [] if isinstance(x, Mapping)]
            if not any(x.get("protocol") in ("HTTPS", "TLS") for x in listeners):
                yield res.urn, f"{res.where()}: no HTTPS listener"
            for x in listeners:
                if x.get("protocol") == "HTTPS" and not (x.get("tls") or {}).get("certificateRefs"):
                    yield res.urn, f"{res.where()}: HTTPS listener {x.get('name')!r} has no tls.certificateRefs"
        elif res.kind in ("HTTPRoute", "GRPCRoute") and res.api_group == GATEWAY_GROUP:
            yield from _route_tls(res, gateways)


def _route_tls(route: Resource, gateways: Mapping[tuple[str, str], Resource]) -> Iterator[Violation]:
    redirect = route.kind == "HTTPRoute" and _is_https_redirect(route)
    for ref in route.get("spec.parentRefs") or []:
        if not isinstance(ref, Mapping) or ref.get("kind", "Gateway") != "Gateway":
            continue
        key = (ref.get("namespace") or route.namespace or "default", ref.get("name"))
        gateway = gateways.get(key)
        if gateway is None:
            yield (
                route.urn,
                f"{route.where()}: parent Gateway {key[0]}/{key[1]} is not in this stack; cannot verify TLS",
            )
            continue
        listeners = [
            x
            for x in gateway.get("spec.listeners") or []
            if isinstance(x, Mapping)
            and (not ref.get("sectionName") or x.get("name") == ref.get("sectionName"))
            and (not ref.get("port") or x.get("port") == ref.get("port"))
        ]
        if not listeners:
            yield (
                route.urn,
                f"{route.where()}: parentRef {ref.get('sectionName')!r} names no listener of {gateway.where()}",
            )
        for x in listeners:
            if x.get("protocol") not in ("HTTPS", "TLS") and not redirect:
                yield (
                    route.urn,
                    (
                        f"{route.where()}: attached to plain-{x.get('protocol')} listener {x.get('name')!r} of "
                        f"{gateway.where()}; attach it to the HTTPS listener (sectionName) or make it an https redirect"
                    ),
                )


def cluster_admin_only_backend(resources: Sequence[Resource]) -> Iterator[Violation]:
    """cluster-admin goes only to the kube-bind backend's ServiceAccount (Klutch requires that one).

    The backend is found by image repository (any tag, any mirror's registry prefix)."""
    backend_repos = {repository(b.image) for r in catalog.RELEASES.values() for b in r.backends.values()}
    backend_accounts = set()
    for res in resources:
        if res.kind in ("Deployment", "StatefulSet", "DaemonSet") and any(
            repository(str(c.get("image"))) in backend_repos for _, c in containers(res.props)
        ):
            backend_accounts.add(
                (res.namespace or "default", res.get("spec.template.spec.serviceAccountName") or "default")
            )
    bindings = [
        r
        for r in resources
        if r.kind in ("ClusterRoleBinding", "RoleBinding")
        and r.api_group == "rbac.authorization.k8s.io"
        and r.get("roleRef.kind") == "ClusterRole"
        and r.get("roleRef.name") == "cluster-admin"
    ]
    for b in bindings:
        for s in b.get("subjects") or []:
            if not isinstance(s, Mapping):
                continue
            subject = (s.get("namespace") or b.namespace or "default", s.get("name"))
            if s.get("kind") != "ServiceAccount" or subject not in backend_accounts:
                yield (
                    b.urn,
                    (
                        f"{b.where()}: grants cluster-admin to {s.get('kind')} {'/'.join(str(x) for x in subject)}; "
                        "only the kube-bind backend's ServiceAccount may have it"
                    ),
                )
    if len(bindings) > 1:
        names = ", ".join(b.where() for b in bindings)
        yield bindings[-1].urn, f"{len(bindings)} cluster-admin bindings ({names}); only the backend's one is allowed"
