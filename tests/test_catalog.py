"""The one catalog: releases, data services, the provider-anynines names every layer derives from."""

from __future__ import annotations

import re

import pytest

from klutch import catalog
from tests import harness

V100_TABLE = {  # the manual procedure's "Data-service Value" and "Resource Value" tables
    "redis": "redisinstances",
    "messaging": "messaginginstances",
    "logme2": "logme2instances",
    "prometheus": "prometheusinstances",
    "search": "searchinstances",
    "mongodb": "mongodbinstances",
    "mariadb": "mariadbinstances",
    "postgresql": "postgresqlinstances",
}


def test_v100_release_serves_the_manual_procedures_table():
    v100 = catalog.RELEASES["v1.0.0"]
    assert v100.name == "v1.0.0"
    assert v100.data_services == tuple(V100_TABLE)
    assert {k: catalog.DATA_SERVICES[k].plural for k in v100.data_services} == V100_TABLE
    assert {catalog.DATA_SERVICES[k].group for k in v100.data_services} == {"anynines.com"}
    assert v100.provider_package == "public.ecr.aws/w5n9a2g2/anynines/provider-anynines:v1.2.0"
    assert v100.configuration_package == "public.ecr.aws/w5n9a2g2/anynines/dataservices:v1.2.0"
    assert v100.functions == () and v100.provider_config_service_type is False
    assert (v100.crossplane_min, v100.crossplane_max) == ((1, 15), (1, 20))


@pytest.mark.parametrize("release", list(catalog.RELEASES.values()), ids=list(catalog.RELEASES))
def test_every_release_is_consistent(release):
    assert set(release.data_services) <= set(catalog.DATA_SERVICES)
    assert len(set(release.data_services)) == len(release.data_services)
    # Klutch supports Crossplane 1.x from 1.15 on; Crossplane 2 is not supported by any release
    assert (1, 15) <= release.crossplane_min <= release.crossplane_max < (2, 0)
    for package in (release.provider_package, release.configuration_package, *release.functions):
        assert re.fullmatch(r"[a-z0-9.-]+(/[a-z0-9._-]+)+:v\d+\.\d+\.\d+", package), package
    assert len({catalog.function_name(f) for f in release.functions}) == len(release.functions)


def test_default_crossplane_chart_is_inside_the_default_release_range():
    major, minor, _ = (int(x) for x in catalog.CHARTS["crossplane"].version.split("."))
    v100 = catalog.RELEASES["v1.0.0"]
    assert v100.crossplane_min <= (major, minor) <= v100.crossplane_max
    chart = catalog.CHARTS["crossplane"]
    assert (chart.chart, chart.repo, chart.namespace) == (
        "crossplane",
        "https://charts.crossplane.io/stable",
        "crossplane-system",
    )


def test_provider_endpoint_names_are_what_the_compositions_expect():
    assert [e.config_key for e in catalog.PROVIDER_ENDPOINTS] == ["serviceBroker", "backupManager"]
    assert catalog.SERVICE_BROKER.provider_config_name("postgresql") == "postgresql-service-broker"
    assert catalog.BACKUP_MANAGER.provider_config_name("postgresql") == "postgresql-backup-manager"
    assert catalog.SERVICE_BROKER.secret_name("redis") == "redis-service-broker-creds"
    assert catalog.BACKUP_MANAGER.secret_name("redis") == "redis-backup-manager-creds"
    assert [e.service_type for e in catalog.PROVIDER_ENDPOINTS] == ["servicebroker", "backupmanager"]


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("xpkg.upbound.io/crossplane-contrib/function-patch-and-transform:v0.9.2", "function-patch-and-transform"),
        ("xpkg.crossplane.io/crossplane-contrib/function-go-templating:v0.10.0", "function-go-templating"),
        ("registry.example.com/fn@sha256:0123", "fn"),
    ],
)
def test_function_name_is_the_repository_name(package, name):
    assert catalog.function_name(package) == name


def test_readme_data_service_table_matches_the_catalog():
    reference = (harness.ROOT / "docs" / "configuration.md").read_text()
    section = reference.split("## `dataServices`", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (a9s [^|]+) \| `([a-z0-9]+)` \| `([a-z0-9]+)` \|", section, re.MULTILINE)
    v100 = catalog.RELEASES["v1.0.0"]
    assert rows == [(catalog.DATA_SERVICES[k].title, k, catalog.DATA_SERVICES[k].plural) for k in v100.data_services]


def test_pod_security_levels_and_digests_are_well_formed():
    assert {c.pod_security for c in catalog.CHARTS.values()} <= set(catalog.POD_SECURITY_LEVELS)
    assert catalog.CHARTS["crossplane"].pod_security == "baseline"  # its pods set no seccomp profile
    for release in catalog.RELEASES.values():
        for backend in release.backends.values():
            assert backend.digest is None or re.fullmatch(r"sha256:[0-9a-f]{64}", backend.digest), backend
            assert backend.pinned_image == (f"{backend.image}@{backend.digest}" if backend.digest else backend.image)
