"""Every Klutch release of the catalog, each backend, and the upgrade from v1.0.0 to v1.5.0.

The upgrade is asserted as the engine would plan it: resources are matched by URN between the two
evaluations of one stack; a URN only in the old one is a delete, only in the new one a create, and a
changed input an update — a replace where Kubernetes cannot change it in place (name, namespace,
apiVersion group, kind).
"""

from __future__ import annotations

from functools import cache

import pytest

from klutch import catalog
from klutch.central import kubebind
from klutch.offline import manifests, render
from klutch.offline.mockengine import Evaluation, Registration
from tests import harness

NS = harness.NS
CASES = [
    (release, kind, services)
    for release, r in catalog.RELEASES.items()
    for kind in r.backends
    for services in ((), r.data_services[:1], r.data_services)
]
CRD_TYPE = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
REPLACING = ("metadata.name", "metadata.namespace", "kind")


@cache
def run(release: str, kind: str | None = None, services: tuple[str, ...] = ("postgresql",)) -> Evaluation:
    backend = {"backend": {"kind": kind}} if kind else {}
    return harness.run({"klutchRelease": release, "dataServices": harness.services(*services), **backend})


@pytest.mark.parametrize(
    ("release", "kind", "services"), CASES, ids=lambda v: str(len(v)) if isinstance(v, tuple) else v
)
def test_every_release_backend_and_service_set_evaluates_to_valid_manifests(release, kind, services):
    ev = run(release, kind, services)
    assert manifests.check_all(ev, "1.33") == []
    templates = ev.kinds("APIServiceExportTemplate")
    assert len(templates) == len(services) + 3
    server = catalog.RELEASES[release].backend(kind)
    assert {t.get("apiVersion") for t in templates} == {server.export_template_api_version}
    assert ev.output("klutchRelease") == release


def test_v150_packages_function_first_and_provider_configs_with_service_type_and_health_endpoints():
    ev = run("v1.5.0", services=("keyvalue",))
    release = catalog.RELEASES["v1.5.0"]
    assert ev.k8s("Provider", "provider-anynines").get("spec.package") == release.provider_package
    assert release.provider_package == "public.ecr.aws/w5n9a2g2/klutch/provider-anynines:v1.5.0"
    configuration = ev.k8s("Configuration", "anynines-dataservices")
    function = ev.k8s("Function", "function-patch-and-transform")
    assert function.get("spec.package") == "xpkg.upbound.io/crossplane-contrib/function-patch-and-transform:v0.9.2"
    assert configuration.get("spec.package") == "public.ecr.aws/w5n9a2g2/klutch/dataservices:v1.5.0"
    assert ev.depends_on(configuration, function)  # the Function is Healthy before the Configuration
    broker = ev.k8s("ProviderConfig", "keyvalue-service-broker")
    backup = ev.k8s("ProviderConfig", "keyvalue-backup-manager")
    assert (broker.get("spec.serviceType"), broker.get("spec.healthCheckEndpoint")) == (
        "servicebroker",
        "/osb_ext/v1/healthy",
    )
    assert (backup.get("spec.serviceType"), backup.get("spec.healthCheckEndpoint")) == ("backupmanager", "/v2/healthy")
    assert ev.k8s("ClusterRole", "klutch-binder")
    assert ev.output("konnectorImage") == "public.ecr.aws/w5n9a2g2/klutch/konnector:v1.5.0"


def test_v150_kube_bind_crds_are_pinned_to_the_release_commit():
    ev = run("v1.5.0")
    files = ev.one("kubernetes:yaml/v2:ConfigGroup").get("files")
    assert len(files) == 6 and all("/164af973b034ed0a7284a51a33c4a9a3fe794ef5/" in f for f in files)
    assert not any("/main/" in f or "/refs/heads/" in f for f in files)
    assert files[-1].endswith("/release/bases/install/kube-bind-crds.yaml")  # the anynines template CRD
    assert ev.output("kubeBindCrdUrls") == files[:5]  # tenants need no template CRD


@pytest.mark.parametrize(
    ("kind", "image", "group", "probe", "noninteractive", "authorize"),
    [
        ("anynines", "anynines/kubebind-backend:v1.6.0", "bind.anynines.com", "/healthz", True, False),
        ("open-source", "klutch/example-backend:v1.5.0", "example-backend.klutch.anynines.com", "/export", False, True),
    ],
)
def test_the_backend_choice_decides_image_templates_probes_flags_and_outputs(
    kind, image, group, probe, noninteractive, authorize
):
    ev = run("v1.5.0", kind)
    [container] = ev.k8s("Deployment", "anynines-backend", "bind").get("spec.template.spec.containers")
    assert container["image"].endswith(image)
    assert container["readinessProbe"]["httpGet"]["path"] == container["livenessProbe"]["httpGet"]["path"] == probe
    assert any(a.startswith("--oidc-authorize-url=https://") for a in container["args"]) is authorize
    assert {t.get("apiVersion") for t in ev.kinds("APIServiceExportTemplate")} == {f"{group}/v1alpha1"}
    assert ("bindNonInteractiveUrl" in ev.outputs) is noninteractive


def test_a_backend_the_release_does_not_have_is_refused_naming_the_ones_it_has():
    with pytest.raises(Exception) as e:
        harness.parse({"klutchRelease": "v1.0.0", "backend": {"kind": "open-source"}})
    assert f"{NS}:backend.kind = 'open-source': must be one of 'anynines' (the backends of Klutch v1.0.0)" in str(
        e.value
    )


def test_an_unknown_release_lists_the_known_ones():
    with pytest.raises(Exception) as e:
        harness.parse({"klutchRelease": "v2.0.0"})
    assert f"{NS}:klutchRelease = 'v2.0.0': must be one of 'v1.0.0', 'v1.5.0'" in str(e.value)


# ------------------------------------------------------------------------------ the upgrade
def _plan(old: Evaluation, new: Evaluation) -> dict[str, set[str]]:
    before = {r.urn: r for r in old.resources if not r.read}
    after = {r.urn: r for r in new.resources if not r.read}
    plan: dict[str, set[str]] = {"create": set(), "delete": set(), "update": set(), "replace": set()}
    plan["create"] = {after[u].name for u in after.keys() - before.keys()}
    plan["delete"] = {before[u].name for u in before.keys() - after.keys()}
    for urn in before.keys() & after.keys():
        a, b = before[urn], after[urn]
        if a.inputs != b.inputs:
            plan["replace" if _replaces(a, b) else "update"].add(b.name)
    return plan


def _replaces(a: Registration, b: Registration) -> bool:
    group = lambda r: str(r.get("apiVersion") or "").rsplit("/", 1)[0]  # noqa: E731
    return any(a.get(p) != b.get(p) for p in REPLACING) or group(a) != group(b)


def _upgrade(kind: str | None = None) -> dict[str, set[str]]:
    services = ("postgresql", "mongodb")
    return _plan(run("v1.0.0", None, services), run("v1.5.0", kind, services))


def test_upgrade_updates_packages_and_provider_configs_in_place_and_creates_the_function():
    plan = _upgrade()
    assert plan["create"] == {"crossplane-function-function-patch-and-transform"}
    for name in ("crossplane-provider", "crossplane-configuration", "kube-bind-backend", "kube-bind-crds"):
        assert any(n.startswith(name) for n in plan["update"]), (name, plan)
    assert {n for n in plan["update"] if "postgresql-service-broker" in n or "mongodb-backup-manager" in n}


def test_upgrade_replaces_only_the_binder_role_and_deletes_nothing():
    plan = _upgrade()
    assert plan["replace"] == {"kube-bind-binder"}
    assert plan["delete"] == set()


def test_upgrade_to_the_open_source_backend_moves_the_templates_to_the_new_group():
    # A template's apiVersion is part of its resource type: the engine creates the new-group templates
    # and deletes the old ones. Deleting a template affects only future binds, never a bound tenant.
    plan = _upgrade("open-source")
    templates = {
        f"kube-bind-export-{r}"
        for r in ("postgresqlinstances", "mongodbinstances", "servicebindings", "backups", "restores")
    }
    assert plan["delete"] == templates and templates <= plan["create"]
    assert plan["replace"] == {"kube-bind-binder"}


def test_upgrade_keeps_every_kube_bind_crd_resource():
    old, new = run("v1.0.0", None, ("postgresql",)), run("v1.5.0", None, ("postgresql",))
    crds_before = old.one("kubernetes:yaml/v2:ConfigGroup")
    crds_after = new.one("kubernetes:yaml/v2:ConfigGroup")
    assert crds_before.urn == crds_after.urn  # one component: CRD children keep their names, updated in place
    assert crds_after.retain_on_delete and not crds_after.delete_before_replace
    assert crds_after.get("files") != crds_before.get("files")


def test_backend_spec_functions_follow_the_chosen_backend():
    release = catalog.RELEASES["v1.5.0"]
    for kind, server in release.backends.items():
        container = kubebind.backend_container(release, server, ["--x"])
        assert container["image"] == server.image, kind


def test_new_stacks_get_the_newest_release_and_every_shipped_stack_names_its_own():
    newest = max(catalog.RELEASES, key=lambda name: tuple(int(p) for p in name.lstrip("v").split(".")))
    assert catalog.DEFAULT_RELEASE == newest == "v1.5.0"
    assert harness.parse({"klutchRelease": None}).release.name == newest
    shipped = render.committed_stacks()
    assert {stack for _, _, stack in shipped} >= {"dev", "prod", "kind", "example"}
    for project, directory, stack in shipped:
        assert f"{project.name}:klutchRelease: v" in (directory / f"Pulumi.{stack}.yaml").read_text(), stack
