"""Mirrors for air-gapped installations: validated like every key, and applied to every chart, CRD file and image."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from klutch import catalog
from klutch.config.reader import ConfigError
from klutch.offline.mockengine import Evaluation
from tests import harness

NS = harness.NS
HELM = "kubernetes:helm.sh/v3:Release"
MIRRORS = {
    "charts": {"crossplane": "https://charts.internal/stable", "envoy-gateway": "oci://registry.internal/charts"},
    "kubeBindCrds": ["https://files.internal/klutch/kube-bind-crds.yaml"],
    "registries": {
        "public.ecr.aws/w5n9a2g2": "registry.internal:5000/klutch",
        "xpkg.upbound.io": "registry.internal/xpkg",
    },
}


@cache
def run(release: str = "v1.5.0") -> Evaluation:
    return harness.run({"klutchRelease": release, "mirrors": MIRRORS, "dataServices": harness.services("postgresql")})


def problems(mirrors: Any) -> list[str]:
    with pytest.raises(ConfigError) as e:
        harness.parse({"klutchRelease": "v1.5.0", "mirrors": mirrors})
    return [str(p) for p in e.value.problems]


def test_charts_come_from_their_mirror_at_the_pinned_version():
    ev = run()
    releases = {r.get("name"): r for r in ev.by_type(HELM)}
    crossplane, envoy, cert_manager = releases["crossplane"], releases["envoy-gateway"], releases["cert-manager"]
    assert (crossplane.get("chart"), crossplane.get("repositoryOpts.repo")) == (
        "crossplane",
        "https://charts.internal/stable",
    )
    assert envoy.get("chart") == "oci://registry.internal/charts/gateway-helm" and not envoy.get("repositoryOpts.repo")
    assert envoy.get("version") == catalog.CHARTS["envoy-gateway"].version
    assert cert_manager.get("repositoryOpts.repo") == catalog.CHARTS["cert-manager"].repo  # not mirrored


def test_every_image_the_program_sets_is_pulled_through_the_mirror_with_its_tag():
    ev = run()
    assert ev.k8s("Provider", "provider-anynines").get("spec.package") == (
        "registry.internal:5000/klutch/klutch/provider-anynines:v1.5.0"
    )
    assert ev.k8s("Function", "function-patch-and-transform").get("spec.package") == (
        "registry.internal/xpkg/crossplane-contrib/function-patch-and-transform:v0.9.2"
    )
    [backend] = ev.k8s("Deployment", "anynines-backend", "bind").get("spec.template.spec.containers")
    assert backend["image"] == "registry.internal:5000/klutch/anynines/kubebind-backend:v1.6.0"
    assert ev.output("konnectorImage") == "registry.internal:5000/klutch/klutch/konnector:v1.5.0"


def test_the_crd_mirror_replaces_every_file_for_central_and_tenants():
    ev = run()
    assert ev.one("kubernetes:yaml/v2:ConfigGroup").get("files") == MIRRORS["kubeBindCrds"]
    assert ev.output("kubeBindCrdUrls") == MIRRORS["kubeBindCrds"]


def test_a_local_chart_path_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "charts" / "crossplane").mkdir(parents=True)
    cfg = harness.parse({"klutchRelease": "v1.5.0", "mirrors": {"charts": {"crossplane": "charts/crossplane"}}})
    assert cfg.mirrors.chart("crossplane").chart == "charts/crossplane" and not cfg.mirrors.chart("crossplane").repo
    assert problems({"charts": {"crossplane": "charts/missing"}}) == [
        f"{NS}:mirrors.charts.crossplane = 'charts/missing': is neither a URL nor an existing local path "
        f"(relative to {tmp_path})"
    ]


def test_bad_mirrors_are_reported_together_naming_key_value_and_what_is_allowed():
    found = problems(
        {
            "charts": {"crosplane": "https://x.internal", "cert-manager": "ftp://x.internal"},
            "kubeBindCrds": ["https://user:pw@files.internal/crds.yaml"],
            "registries": {"docker.io/library": "registry.internal", "public.ecr.aws/w5n9a2g2": "https://r.internal"},
            "images": {},
        }
    )
    assert any(
        p.startswith(f"{NS}:mirrors.charts.cert-manager = 'ftp://x.internal': must be an absolute") for p in found
    )
    assert any(p.startswith(f"{NS}:mirrors.charts.crosplane") and "did you mean 'crossplane'?" in p for p in found)
    assert any(p.startswith(f"{NS}:mirrors.kubeBindCrds[0]") and "credentials" in p for p in found)
    assert any(
        p.startswith(f"{NS}:mirrors.registries.docker.io/library") and "matches no image the program sets" in p
        for p in found
    )
    assert any(p.startswith(f"{NS}:mirrors.registries.public.ecr.aws/w5n9a2g2 = 'https://r.internal'") for p in found)
    assert any(p.startswith(f"{NS}:mirrors.images") and "unknown key" in p for p in found)
    assert len(found) == 6


def test_without_mirrors_the_catalog_sources_are_used():
    ev = harness.run({"klutchRelease": "v1.5.0"})
    release = catalog.RELEASES["v1.5.0"]
    assert ev.k8s("Provider", "provider-anynines").get("spec.package") == release.provider_package
    assert ev.one("kubernetes:yaml/v2:ConfigGroup").get("files") == list(release.crd_urls(release.backend()))
