"""The OIDC step with a real Keycloak: the documented setup script, the issuer preflight of both programs,
and a tenant bind whose client-credentials token comes from Keycloak and is verified as the backend does.

One Keycloak for the session (`keycloak` fixture, klutch/sandbox/keycloak.py), one module-scoped setup:
- a central cluster (with the kube-bind CRDs the tenant's central-side objects need) and a tenant cluster;
- a real central stack (`kc`, klutch-central) configured like test_central's, whose `oidc` values come
  from the documented block of docs/configuration.md (`<!-- idp:keycloak -->`), run verbatim with bash in
  its project directory, twice; only `preview` runs there (the preflight is what is under test here; the
  deploy is test_central's);
- the fake kube-bind backend (klutch/sandbox/fake_backend.py) checking bearer tokens with `TokenCheck`
  (signature against the realm's JWKS, iss, aud, exp), behind a double of the central stack's outputs
  as in test_tenant (a real `backend.host` cannot name 127.0.0.1:<port>).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from klutch import catalog
from klutch.sandbox.cli import ROOT, Pulumi, project_copy
from klutch.sandbox.controlplane import ControlPlane, running
from klutch.sandbox.doubles import kube_bind_crds
from klutch.sandbox.fake_backend import FakeBackend
from klutch.sandbox.keycloak import Keycloak, TokenCheck
from tests.e2e.helpers import Lab, succeeded
from tests.e2e.stacks import HOST, SERVICES, configure, existing_cluster_config
from tests.e2e.test_tenant import central_double, dynamic_plugin_dir, plane, set_kubeconfig

pytestmark = pytest.mark.e2e
RELEASE = catalog.DEFAULT_RELEASE
REL = catalog.RELEASES[RELEASE]
GROUP = REL.kube_bind_group
MARKER = "<!-- idp:keycloak -->"
REALM, BACKEND_CLIENT, TENANT_CLIENT = "klutch", "kube-bind", "acme-binder"  # as in the documented block
APIS = ["postgresqlinstances.anynines.com", "servicebindings.anynines.com"]


def documented_block() -> str:
    text = (ROOT / "docs" / "configuration.md").read_text()
    match = re.search(re.escape(MARKER) + r"\s*```bash\n(.*?)```", text, re.S)
    assert match, f"docs/configuration.md has no bash block after {MARKER}"
    return match.group(1)


@dataclass
class Setup:
    keycloak: Keycloak
    central: ControlPlane
    tenant: ControlPlane
    backend: FakeBackend
    central_stack: Pulumi  # the real central program, previewed
    reference: str  # the double the tenant stacks read
    workspace: dict[str, Path]
    plugin_dirs: list[Path]

    def env(self) -> dict[str, str]:
        """The CLI's environment: offline, and trusting Keycloak's CA (SSL_CERT_FILE)."""
        return dict(self.central_stack.env)

    def secret(self, client: str) -> str:
        return (self.central_stack.cwd / "idp-secrets" / client).read_text()


def install_kube_bind_crds(central: ControlPlane) -> None:
    """The CRDs the tenant's central-side objects need (the central stack is previewed here, not deployed)."""
    templates = [b.export_template_api_version for b in REL.backends.values()]
    for crd in kube_bind_crds(GROUP, REL.kube_bind_version, templates):
        central.apply(crd)
    central.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=120s")


@pytest.fixture(scope="module")
def setup(keycloak: Keycloak, lab: Lab) -> Iterator[Setup]:
    chart_repo, workspace = lab.chart_repo, lab.workspace
    tenant = plane("kc-tenant", lab.tmp)
    plugin_dirs = [dynamic_plugin_dir(lab.tmp.mktemp("kc-dynamic")), *lab.plugin_dirs]
    with lab.cluster("kc-central") as central, running(tenant):
        install_kube_bind_crds(central)
        stack = lab.central_project("kc", plugin_dirs)
        stack.env["SSL_CERT_FILE"] = str(keycloak.ca_bundle)
        config = existing_cluster_config(central, chart_repo, RELEASE, "envoy-gateway")
        del config["oidc"]
        configure(stack, central, config)
        stack.run("config", "rm", "klutch-central:oidc")  # the documented block sets it, as an operator does
        check = TokenCheck(keycloak, REALM, BACKEND_CLIENT)
        backend = FakeBackend(central, lab.tmp.mktemp("kc-backend"), "", "", token_check=check)
        with backend:
            outputs = {
                "exportUrl": f"{backend.url}/export",
                "bindNonInteractiveUrl": backend.bind_url,
                "konnectorImage": REL.konnector_image,
                "bindingApis": catalog.binding_apis(REL, SERVICES),
                "kubeBindCrdUrls": [f"{chart_repo.url}/kube-bind-{RELEASE}.yaml"],
                "tlsCaPem": backend.ca_pem,
                "kubectlBindCommand": f"kubectl bind {backend.url}/export --konnector-image={REL.konnector_image}",
            }
            reference = central_double(workspace, plugin_dirs, outputs)
            yield Setup(keycloak, central, tenant, backend, stack, reference, workspace, plugin_dirs)


def run_documented_block(setup: Setup) -> subprocess.CompletedProcess:
    env = {**setup.env(), "KEYCLOAK_URL": setup.keycloak.url, "KEYCLOAK_ADMIN_PASSWORD": setup.keycloak.admin_password}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", documented_block()],
        cwd=setup.central_stack.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    succeeded(done)
    assert setup.keycloak.admin_password not in done.stdout + done.stderr
    return done


def test_the_documented_setup_runs_twice_and_the_second_run_changes_nothing(setup: Setup):
    first = run_documented_block(setup)
    for line in (
        f"changed: realm '{REALM}': created",
        f"changed: client '{BACKEND_CLIENT}': created",
        f"changed: client '{BACKEND_CLIENT}': audience mapper added",
        f"changed: client '{TENANT_CLIENT}': created",
        f"changed: client '{TENANT_CLIENT}': audience mapper added",
        f"pulumi config set --path oidc.issuerUrl {setup.keycloak.issuer(REALM)}",
        f"pulumi config set --path oidc.tokenUrl {setup.keycloak.token_url(REALM)}",
    ):
        assert line in first.stdout, first.stdout
    secrets = {c: setup.secret(c) for c in (BACKEND_CLIENT, TENANT_CLIENT)}
    assert all(secrets.values()) and not any(s in first.stdout for s in secrets.values())
    for client in secrets:
        assert (setup.central_stack.cwd / "idp-secrets" / client).stat().st_mode & 0o777 == 0o600
    # Keycloak holds what the backend needs: the redirect URI of backend.host (read from the stack)
    admin = setup.keycloak.admin(REALM)
    backend_client = admin.get_client(admin.get_client_id(BACKEND_CLIENT))
    assert backend_client["redirectUris"] == [f"https://{HOST}/callback"]
    assert backend_client["standardFlowEnabled"] and not backend_client["publicClient"]
    tenant_client = admin.get_client(admin.get_client_id(TENANT_CLIENT))
    assert tenant_client["serviceAccountsEnabled"] and not tenant_client["standardFlowEnabled"]
    second = run_documented_block(setup)
    assert not [line for line in second.stdout.splitlines() if line.startswith("changed:")], second.stdout
    assert "nothing changed: everything was already in place" in second.stdout, second.stdout
    assert {c: setup.secret(c) for c in secrets} == secrets
    # the central stack now has the realm's values, the secret encrypted in its stack file
    oidc = json.loads(setup.central_stack.run("config", "get", "klutch-central:oidc").stdout)
    assert oidc == {
        "issuerUrl": setup.keycloak.issuer(REALM),
        "clientId": BACKEND_CLIENT,
        "clientSecret": secrets[BACKEND_CLIENT],
    }
    assert secrets[BACKEND_CLIENT] not in (setup.central_stack.cwd / "Pulumi.kc.yaml").read_text()


def test_the_setup_script_names_a_wrong_password_and_a_conflicting_client(setup: Setup):
    def script(*args: str, password: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [".venv/bin/klutch-keycloak-setup", "--server", setup.keycloak.url, "--realm", REALM, *args],
            cwd=setup.central_stack.cwd,
            env={**setup.env(), "KEYCLOAK_ADMIN_PASSWORD": password},
            capture_output=True,
            text=True,
            timeout=120,
        )

    wrong = script(password="not-the-admin-password")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert f"error: Keycloak at {setup.keycloak.url} refused the admin login of 'admin'" in wrong.stderr
    conflict = script("--tenant", BACKEND_CLIENT, password=setup.keycloak.admin_password)
    assert conflict.returncode == 1 and "Traceback" not in conflict.stderr
    assert f"error: client '{BACKEND_CLIENT}' exists with conflicting settings: " in conflict.stderr
    assert "standardFlowEnabled is True, needs False" in conflict.stderr


def test_the_central_preflight_passes_for_the_realm(setup: Setup):
    done = succeeded(setup.central_stack.preview(check=False))
    out = done.stdout + done.stderr
    assert "klutch-central:oidc.issuerUrl" not in out  # no warning, no problem: the issuer answered as configured


def test_a_central_stack_naming_a_wrong_realm_fails_preview_and_creates_nothing(setup: Setup):
    stack = setup.central_stack
    wrong = setup.keycloak.issuer("klutch-typo")
    stack.run("config", "set", "--path", "klutch-central:oidc.issuerUrl", "--", wrong)
    try:
        for command in (("preview",), ("up", "--yes")):
            done = stack.run(*command, check=False)
            out = done.stdout + done.stderr
            assert done.returncode != 0
            assert f"klutch-central:oidc.issuerUrl = '{wrong}': the IdP answers HTTP 404" in out, out[-3000:]
            assert "no OpenID provider has this issuer" in out and "Traceback" not in out
    finally:
        stack.run("config", "set", "--path", "klutch-central:oidc.issuerUrl", "--", setup.keycloak.issuer(REALM))
    assert [r["type"] for r in stack.resources() if not r["type"].startswith("pulumi:")] == []
    assert not setup.central.exists("namespace", REL.backend_namespace)


def tenant_stack(setup: Setup, stack: str, client: str, secret: str) -> Pulumi:
    ws = setup.workspace
    cwd = project_copy(ROOT / "tenant", ws["base"] / f"tenant-{stack}")
    pulumi = Pulumi(cwd=cwd, env=setup.env(), stack=stack)
    pulumi.init()
    stack_file = cwd / f"Pulumi.{stack}.yaml"
    stack_file.write_text(
        yaml.safe_dump(
            {
                "config": {
                    "pulumi:disable-default-providers": ["kubernetes"],
                    "klutch-tenant:klutchRelease": RELEASE,
                    "klutch-tenant:centralStack": setup.reference,
                    "klutch-tenant:clusterId": stack,
                    "klutch-tenant:oidc": {"tokenUrl": setup.keycloak.token_url(REALM), "clientId": client},
                    "klutch-tenant:apis": APIS,
                }
            },
            sort_keys=False,
        )
    )
    pulumi.config("klutch-tenant:oidc.clientSecret", secret, secret=True, path=True)
    set_kubeconfig(pulumi, setup.tenant)
    return pulumi


def assert_nothing_created(setup: Setup, pulumi: Pulumi, cluster_id: str) -> None:
    """No Kubernetes object in the tenant stack's state, none on either cluster (the refusals run before
    the successful bind, so the tenant cluster has no kube-bind object at all yet)."""
    kinds = [r["type"] for r in pulumi.resources() if r["type"].startswith("kubernetes:")]
    assert [k for k in kinds if not k.startswith("pulumi:providers:")] == []
    assert not setup.central.exists("namespace", f"cluster-{cluster_id}")
    assert not setup.tenant.exists("namespace", REL.konnector_namespace)
    assert setup.tenant.items(f"apiservicebindings.{GROUP}") == []


def test_a_client_without_the_audience_mapper_is_refused_by_the_backend(setup: Setup):
    admin = setup.keycloak.admin(REALM)
    admin.create_client(
        {"clientId": "no-audience", "publicClient": False, "serviceAccountsEnabled": True, "standardFlowEnabled": False}
    )
    secret = admin.get_client_secrets(admin.get_client_id("no-audience"))["value"]
    pulumi = tenant_stack(setup, "kc-noaud", "no-audience", secret)
    before = len(setup.backend.verified)
    done = pulumi.up(check=False)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "(HTTP 401) for client 'no-audience'" in out, out[-3000:]
    assert "an audience mapper" in out and secret not in out
    assert len(setup.backend.verified) == before and "InvalidAudienceError" in setup.backend.refused[-1]
    assert_nothing_created(setup, pulumi, "kc-noaud")


def test_a_wrong_client_secret_is_refused_by_keycloak_naming_the_client_and_the_token_url(setup: Setup):
    pulumi = tenant_stack(setup, "kc-badsecret", TENANT_CLIENT, "not-the-secret")
    before = len(setup.backend.bind_requests)
    done = pulumi.up(check=False)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"token request to {setup.keycloak.token_url(REALM)} was refused by the IdP (HTTP 401" in out, out[-3000:]
    assert f"for client '{TENANT_CLIENT}': the client id or secret is wrong" in out
    assert "not-the-secret" not in out
    assert len(setup.backend.bind_requests) == before  # no token, no bind request
    assert_nothing_created(setup, pulumi, "kc-badsecret")


def test_the_tenant_binds_with_a_real_keycloak_token(setup: Setup):
    pulumi = tenant_stack(setup, "kc-acme", TENANT_CLIENT, setup.secret(TENANT_CLIENT))
    done = succeeded(pulumi.up(check=False), f"backend: {setup.backend.errors[-5:]} {setup.backend.refused}")
    out = done.stdout + done.stderr
    assert "klutch-tenant:oidc.issuerUrl" not in out  # the tenant's preflight passed silently
    [claims] = setup.backend.verified
    assert claims["iss"] == setup.keycloak.issuer(REALM)
    assert BACKEND_CLIENT in claims["aud"] and claims["azp"] == TENANT_CLIENT
    assert setup.central.exists("namespace", "cluster-kc-acme")
    bindings = setup.tenant.items(f"apiservicebindings.{GROUP}")
    assert sorted(b["metadata"]["name"] for b in bindings) == sorted(APIS)
    pulumi.preview("--expect-no-changes")
