"""klutch-status: the health decisions over fake API objects, the exit codes, and where the names come from."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes.client.exceptions import ApiException

from klutch import catalog
from klutch.config import central as central_config
from klutch.ops import health, live, status
from klutch.ops.health import Row
from tests.harness import BASE_SECRET_KEYS, merged

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
RELEASE = catalog.RELEASES["v1.5.0"]
EXPECTED = status.expected_from_config(
    central_config.parse(
        merged({"klutchRelease": "v1.5.0", "dataServices": merged()["dataServices"]}),
        set(BASE_SECRET_KEYS),
        stack="test",
    )
)


# ----------------------------------------------------------------------------- fake API objects
def cond(**status: bool) -> dict[str, Any]:
    return {"conditions": [{"type": t, "status": str(v)} for t, v in status.items()]}


def obj(name: str, namespace: str | None = None, spec: dict | None = None, status: dict | None = None) -> dict:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"metadata": meta, "spec": spec or {}, "status": status or {}}


def deployment(name: str, namespace: str, image: str, replicas: int = 1) -> dict[str, Any]:
    spec = {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}
    return obj(name, namespace, spec, {**cond(Available=True), "availableReplicas": replicas or None})


def package(kind: str, name: str, pkg: str, healthy: bool = True) -> dict[str, Any]:
    return obj(name, spec={"package": pkg}, status=cond(Installed=True, Healthy=healthy))


def pem_certificate(not_after: datetime) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "klutch.e2e.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(not_after - timedelta(days=90))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def tls_secret(name: str, not_after: datetime) -> dict[str, Any]:
    data = {"tls.crt": base64.b64encode(pem_certificate(not_after).encode()).decode()}
    return {**obj(name, "bind"), "data": data}


def provider_config(name: str, healthy: bool | None, url: str = "https://broker.internal:3000") -> dict[str, Any]:
    return obj(name, spec={"url": url}, status={} if healthy is None else {"health": {"lastStatus": healthy}})


def healthy_objects() -> dict[str, Any]:
    """What a healthy v1.5.0 stack with postgresql behind envoy-gateway has on its cluster."""
    packages = {
        "Provider": [package("Provider", catalog.PROVIDER_NAME, RELEASE.provider_package)],
        "Function": [package("Function", catalog.function_name(f), f) for f in RELEASE.functions],
        "Configuration": [package("Configuration", catalog.CONFIGURATION_NAME, RELEASE.configuration_package)],
    }
    crds = [
        obj(f"{plural}.klutch.anynines.com", spec={"group": "klutch.anynines.com"}, status=cond(Established=True))
        for plural in ("apiservicebindings", "apiserviceexports", "clusterbindings")
    ]
    return {
        "crossplane": deployment("crossplane", "crossplane-system", "xpkg.upbound.io/crossplane/crossplane:v1.20.11"),
        "packages": packages,
        "provider_configs": [provider_config(n, True) for n in EXPECTED.provider_configs],
        "crds": crds,
        "backend": deployment(RELEASE.backend_name, "bind", EXPECTED.backend_image or ""),
        "certificate": obj("anynines-backend-tls", "bind", status=cond(Ready=True)),
        "tls_secret": tls_secret("anynines-backend-tls", NOW + timedelta(days=60)),
        "gateway": obj("kube-bind", "bind", status={"addresses": [{"type": "Hostname", "value": "lb.example.net"}]}),
        "exports": [obj("postgresqlinstances", "kube-bind-tenant-a", status=cond(Ready=True))],
    }


class FakeCluster:
    """The reads of `live.Cluster`, answered from `healthy_objects()`-shaped data."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects, self.server = objects, "https://central.test:6443"

    def deployment(self, name: str, namespace: str) -> dict | None:
        return self.objects["crossplane" if namespace == "crossplane-system" else "backend"]

    def custom_items(self, group: str, version: str, plural: str) -> list[dict]:
        by_plural = {"providerconfigs": "provider_configs", "apiserviceexports": "exports"}
        if plural in by_plural:
            return self.objects[by_plural[plural]]
        return self.objects["packages"][{"providers": "Provider", "functions": "Function"}.get(plural, "Configuration")]

    def custom(self, group: str, version: str, plural: str, name: str, namespace: str) -> dict | None:
        return self.objects["gateway" if plural == "gateways" else "certificate"]

    def certificate_secret(self, name: str, namespace: str) -> dict | None:
        return self.objects["tls_secret"]

    def ingress(self, name: str, namespace: str) -> dict | None:
        return None

    def crds(self, groups: tuple[str, ...]) -> list[dict]:
        return [c for c in self.objects["crds"] if c["spec"]["group"] in groups]


def snapshot(objects: dict[str, Any] | None = None) -> health.Snapshot:
    return live.read_snapshot(FakeCluster(objects or healthy_objects()), EXPECTED)  # type: ignore[arg-type]


def by_name(rows: list[Row]) -> dict[str, Row]:
    return {f"{r.component} {r.name}": r for r in rows}


# ----------------------------------------------------------------------------- health decisions
def test_a_healthy_stack_has_every_row_healthy():
    rows = health.assess(EXPECTED, snapshot(), NOW)
    assert all(r.healthy for r in rows), [r for r in rows if not r.healthy]
    names = by_name(rows)
    assert {
        "Crossplane crossplane-system/crossplane",
        "Provider provider-anynines",
        "Function function-patch-and-transform",
        "Configuration anynines-dataservices",
        "ProviderConfig postgresql-service-broker",
        "ProviderConfig postgresql-backup-manager",
        "kube-bind CRD apiserviceexports.klutch.anynines.com",
        "Backend bind/anynines-backend",
        "Certificate bind/anynines-backend-tls",
        "Gateway bind/kube-bind",
        "Tenant kube-bind-tenant-a",
    } <= set(names)
    assert names["Certificate bind/anynines-backend-tls"].detail == "expires 2027-01-31 (60 days)"
    assert names["Gateway bind/kube-bind"].detail == "lb.example.net"
    assert names["Provider provider-anynines"].detail == RELEASE.provider_package


def test_a_backend_scaled_to_zero_is_unhealthy_though_kubernetes_calls_it_available():
    row = health.deployment_row("Backend", "bind/anynines-backend", deployment("b", "bind", "img", replicas=0))
    assert (row.healthy, row.state) == (False, "Available=True replicas 0/0")


def test_a_backend_with_another_image_than_the_stack_says_so():
    row = health.deployment_row("Backend", "x", deployment("b", "bind", "old:v1"), image="new:v2")
    assert row.healthy and row.detail == "old:v1 (the stack sets new:v2)"


def test_an_unhealthy_package_fails_and_a_declared_package_that_is_missing_fails():
    live_packages = {"Provider": [package("Provider", catalog.PROVIDER_NAME, "p:v1", healthy=False)]}
    rows = by_name(health.package_rows(EXPECTED.packages, live_packages))
    provider = rows["Provider provider-anynines"]
    assert (provider.healthy, provider.state, provider.detail) == (False, "Installed=True Healthy=False", "p:v1")
    assert rows["Configuration anynines-dataservices"] == Row(
        "Configuration", "anynines-dataservices", False, "missing", "not found on the cluster"
    )
    assert not rows["Function function-patch-and-transform"].healthy


def test_provider_configs_are_healthy_by_their_last_check_and_show_the_url_without_credentials():
    live_configs = [
        provider_config("a", True, "https://admin:hunter2@broker.internal:3000/v2?token=x#f"),
        provider_config("b", False),
        provider_config("c", None),
    ]
    rows = by_name(health.provider_config_rows(["a", "d"], live_configs))
    assert rows["ProviderConfig a"] == Row(
        "ProviderConfig", "a", True, "HEALTHY=true", "https://broker.internal:3000/v2"
    )
    assert (rows["ProviderConfig b"].healthy, rows["ProviderConfig b"].state) == (False, "HEALTHY=false")
    assert (
        rows["ProviderConfig c"].state == "HEALTHY=unknown (not checked yet)" and not rows["ProviderConfig c"].healthy
    )
    assert rows["ProviderConfig d"].state == "missing"


def test_kube_bind_crds_must_be_established_and_exist():
    crd = obj("x.klutch.anynines.com", spec={"group": "klutch.anynines.com"}, status=cond(Established=False))
    [row] = health.crd_rows(("klutch.anynines.com",), [crd])
    assert (row.healthy, row.state) == (False, "Established=False")
    [none] = health.crd_rows(("klutch.anynines.com",), [])
    assert not none.healthy and none.state == "missing"


@pytest.mark.parametrize(
    "ready, days, healthy, detail",
    [
        (True, 60, True, "expires 2027-01-31 (60 days)"),
        (True, 5, False, "expires 2026-12-07 12:00 UTC, in under 14 days: renewal is failing"),
        (True, -1, False, "expired 2026-12-01 12:00 UTC"),
        (False, 60, False, "expires 2027-01-31 (60 days)"),
    ],
)
def test_the_certificate_is_ready_and_not_about_to_expire(ready, days, healthy, detail):
    objects = healthy_objects()
    objects["certificate"] = obj("anynines-backend-tls", "bind", status=cond(Ready=ready))
    objects["tls_secret"] = tls_secret("anynines-backend-tls", NOW + timedelta(days=days))
    [row] = health.certificate_rows(EXPECTED, snapshot(objects), NOW)
    assert (row.healthy, row.state, row.detail) == (healthy, f"Ready={ready}", detail)


def test_a_missing_certificate_and_the_stacks_own_ca_are_rows():
    expected = health.Expected(**{**EXPECTED.__dict__, "ca_secret": "klutch-backend-ca"})
    snap = health.Snapshot(ca_secret=tls_secret("klutch-backend-ca", NOW + timedelta(days=3650)))
    cert, ca = health.certificate_rows(expected, snap, NOW)
    assert (cert.healthy, cert.state) == (False, "missing")
    assert ca == Row("CA", "bind/klutch-backend-ca", True, "present", "expires 2036-11-29 (3650 days)")


def test_the_gateway_or_ingress_needs_an_address():
    ingress = obj("anynines-backend", "bind", status={"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}})
    assert health.front_rows(EXPECTED, [("Ingress", ingress)]) == [
        Row("Ingress", "bind/anynines-backend", True, "address", "192.0.2.7")
    ]
    [row] = health.front_rows(EXPECTED, [("Gateway", obj("kube-bind", "bind"))])
    assert (row.healthy, row.state) == (False, "no address")
    [missing] = health.front_rows(EXPECTED, [])
    assert (missing.component, missing.healthy) == ("Gateway", False)


def test_tenants_are_grouped_by_namespace_and_an_export_not_ready_fails_its_tenant():
    exports = [
        obj("postgresqlinstances", "kube-bind-a", status=cond(Ready=True)),
        obj("backups", "kube-bind-a"),
        obj("mongodbinstances", "kube-bind-b", status=cond(Ready=False)),
    ]
    a, b = health.tenant_rows(exports)
    assert a == Row("Tenant", "kube-bind-a", True, "2 APIs", "backups, postgresqlinstances")
    assert b == Row("Tenant", "kube-bind-b", False, "1 API", "not ready: kube-bind-b/mongodbinstances")
    assert health.tenant_rows([]) == [Row("Tenants", "-", True, "none bound")]


def test_failing_rows_come_first():
    objects = healthy_objects()
    objects["backend"] = deployment(RELEASE.backend_name, "bind", "img", replicas=0)
    rows = health.assess(EXPECTED, snapshot(objects), NOW)
    assert [r.name for r in rows if not r.healthy] == ["bind/anynines-backend"]
    assert rows[0].name == "bind/anynines-backend"


# ----------------------------------------------------------------------------- names from the stack
def test_expected_names_come_from_the_release_and_the_config():
    assert EXPECTED.packages == (
        health.Package("Provider", "provider-anynines", RELEASE.provider_package),
        health.Package("Function", "function-patch-and-transform", RELEASE.functions[0]),
        health.Package("Configuration", "anynines-dataservices", RELEASE.configuration_package),
    )
    assert EXPECTED.provider_configs == ("postgresql-service-broker", "postgresql-backup-manager")
    assert EXPECTED.kube_bind_groups == ("bind.anynines.com", "klutch.anynines.com")
    assert (EXPECTED.controller, EXPECTED.ca_secret) == ("envoy-gateway", None)
    assert EXPECTED.backend_image == RELEASE.backend().image


def test_mirrors_and_a_self_signed_backend_change_what_is_expected():
    raw = merged({"klutchRelease": "v1.5.0", "mirrors": {"registries": {"public.ecr.aws/w5n9a2g2": "reg.internal/k"}}})
    raw["backend"] = {}
    raw["exposure"] = {"controller": "ingress-nginx"}
    expected = status.expected_from_config(central_config.parse(raw, set(BASE_SECRET_KEYS), stack="test"))
    assert expected.packages[0].package == "reg.internal/k/klutch/provider-anynines:v1.5.0"
    assert expected.backend_image == "reg.internal/k/anynines/kubebind-backend:v1.6.0"
    assert (expected.controller, expected.ca_secret) == ("ingress-nginx", "klutch-backend-ca")


# ----------------------------------------------------------------------------- the command
@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict[str, Any]:
    objects = healthy_objects()
    monkeypatch.setattr(status, "Cluster", lambda kubeconfig: FakeCluster(objects))
    monkeypatch.setattr(status, "read_stack", lambda cwd, stack: (stack or "dev", "kubeconfig: text", EXPECTED))
    return objects


def test_a_healthy_cluster_exits_0_with_one_table(fake_cluster, capsys):
    assert status.main(["--stack", "prod"]) == 0
    out = capsys.readouterr().out
    assert "klutch-central prod at https://central.test:6443" in out
    assert "FAIL" not in out and out.rstrip().endswith("checks pass")


def test_an_unhealthy_provider_and_a_backend_at_zero_exit_1_naming_both_first(fake_cluster, capsys):
    fake_cluster["packages"]["Provider"] = [package("Provider", "provider-anynines", "p", healthy=False)]
    fake_cluster["backend"] = deployment(RELEASE.backend_name, "bind", "img", replicas=0)
    assert status.main([]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "FAIL" in line or "unhealthy" in line]
    assert "provider-anynines" in lines[0] and "bind/anynines-backend" in lines[1]
    assert lines[-1] == "unhealthy: 2 of 13 checks fail: Provider provider-anynines; Backend bind/anynines-backend"


def test_without_a_stack_the_cluster_says_what_is_there(fake_cluster, capsys, tmp_path, monkeypatch):
    def no_stack(cwd, stack):
        raise AssertionError("the stack is not read")

    monkeypatch.setattr(status, "read_stack", no_stack)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1")
    fake_cluster["provider_configs"] = []
    assert status.main(["--kubeconfig", str(kubeconfig)]) == 0
    out = capsys.readouterr().out
    assert "klutch-central at https://central.test:6443" in out and "ProviderConfig" not in out
    assert "Gateway" in out and "provider-anynines" in out


def test_json_parses_and_lists_the_failing_rows_first(fake_cluster, capsys):
    fake_cluster["provider_configs"][0]["status"]["health"]["lastStatus"] = False
    assert status.main(["--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["stack"], report["cluster"], report["healthy"]) == ("dev", "https://central.test:6443", False)
    assert report["rows"][0] == {
        "component": "ProviderConfig",
        "name": "postgresql-service-broker",
        "healthy": False,
        "state": "HEALTHY=false",
        "detail": "https://broker.internal:3000",
    }
    assert all(r["healthy"] for r in report["rows"][1:])


def test_an_unreachable_cluster_exits_2_with_one_line(monkeypatch, capsys, tmp_path):
    def refuse(kubeconfig: str) -> None:
        raise live.Unreachable("cannot reach the cluster at https://10.0.0.1:6443: connection refused")

    monkeypatch.setattr(status, "Cluster", refuse)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("{}")
    assert status.main(["--kubeconfig", str(kubeconfig)]) == 2
    captured = capsys.readouterr()
    assert captured.err == "klutch-status: cannot reach the cluster at https://10.0.0.1:6443: connection refused\n"
    assert captured.out == ""


@pytest.mark.parametrize(
    "error, message",
    [
        (ApiException(status=403, reason="Forbidden"), "the cluster at https://c:6443 answered 403 Forbidden"),
        (
            urllib3.exceptions.MaxRetryError(
                None,
                "/",
                urllib3.exceptions.NewConnectionError("HTTPSConnection(host='c')", "refused"),  # type: ignore[arg-type]
            ),
            "cannot reach the cluster at https://c:6443: HTTPSConnection(host='c'): refused",
        ),
        (TimeoutError("timed out"), "cannot reach the cluster at https://c:6443: timed out"),
    ],
)
def test_read_errors_become_one_line(error, message):
    cluster = live.Cluster.__new__(live.Cluster)
    cluster.server = "https://c:6443"

    def read(*args: Any, **kwargs: Any) -> None:
        raise error

    with pytest.raises(live.Unreachable) as raised:
        cluster._call(read)
    assert str(raised.value) == message


def test_a_missing_object_or_kind_reads_as_none():
    cluster = live.Cluster.__new__(live.Cluster)
    cluster.server = "https://c:6443"

    def read(*args: Any, **kwargs: Any) -> None:
        raise ApiException(status=404, reason="Not Found")

    assert cluster._call(read) is None


def test_a_kubeconfig_that_is_not_one_exits_2(tmp_path, capsys):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    assert status.main(["--kubeconfig", str(kubeconfig)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("klutch-status: the kubeconfig is not usable: ") and err.count("\n") == 1


# ----------------------------------------------------------------------------- reading the stack
class FakeWorkspace:
    """The three calls `read_stack` makes of the Automation API's LocalWorkspace."""

    selected: str | None = "dev"
    outputs: dict[str, Any] = {}
    config: dict[str, Any] = {}

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir

    def stack(self) -> Any:
        return type("Summary", (), {"name": self.selected})() if self.selected else None

    def stack_outputs(self, name: str) -> dict[str, Any]:
        return self.outputs

    def get_all_config(self, name: str) -> dict[str, Any]:
        return self.config


def value(v: Any, secret: bool = False) -> Any:
    from pulumi import automation as auto

    return auto.ConfigValue(json.dumps(v) if isinstance(v, dict) else v, secret)


@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch) -> type[FakeWorkspace]:
    from pulumi import automation as auto

    raw = merged({"klutchRelease": "v1.5.0"})
    FakeWorkspace.config = {
        **{f"klutch-central:{k}": value(v, k in BASE_SECRET_KEYS) for k, v in raw.items()},
        "aws:region": value("eu-central-1"),
    }
    FakeWorkspace.outputs = {"kubeconfig": auto.OutputValue("apiVersion: v1", True)}
    FakeWorkspace.selected = "dev"
    monkeypatch.setattr(auto, "LocalWorkspace", FakeWorkspace)
    return FakeWorkspace


def test_the_stack_gives_the_kubeconfig_and_what_to_expect(workspace, tmp_path):
    name, kubeconfig, expected = status.read_stack(tmp_path, None)
    assert (name, kubeconfig) == ("dev", "apiVersion: v1")
    assert expected == EXPECTED


def test_stack_problems_are_one_message(workspace, tmp_path):
    workspace.selected = None
    with pytest.raises(status.StackError, match="no stack is selected in .*: pass --stack NAME"):
        status.read_stack(tmp_path, None)
    workspace.outputs = {}
    with pytest.raises(status.StackError, match=r"stack prod has no `kubeconfig` output: run `pulumi up`"):
        status.read_stack(tmp_path, "prod")
    workspace.config["klutch-central:exposure"] = value({"controller": "traefik"})
    with pytest.raises(
        status.StackError, match="(?s)invalid configuration for stack 'prod'.*exposure.controller = 'traefik'"
    ):
        status.read_stack(tmp_path, "prod")


@pytest.mark.parametrize("stderr", ["error: passphrase must be set\n", "warning: x\nerror: passphrase must be set\n"])
def test_a_failing_pulumi_command_is_its_error_line(monkeypatch, tmp_path, stderr):
    from pulumi import automation as auto

    def fail(work_dir: str) -> None:
        raise auto.CommandError(auto.CommandResult(stdout="", stderr=stderr, code=255))

    monkeypatch.setattr(auto, "LocalWorkspace", fail)
    with pytest.raises(status.StackError) as raised:
        status.read_stack(tmp_path, "prod")
    assert str(raised.value) == f"cannot read the stack in {tmp_path}: error: passphrase must be set"


def test_without_the_pulumi_cli_the_stack_cannot_be_read(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(status.StackError) as raised:
        status.read_stack(tmp_path, "prod")
    assert (
        str(raised.value)
        == f"cannot read the stack in {tmp_path}: the Pulumi CLI is not installed (pulumi is not on PATH)"
    )
