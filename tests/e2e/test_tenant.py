"""The tenant project (`tenant/`, klutch-tenant) under the real engine: a non-interactive bind against a fake
kube-bind backend, with its objects on a local tenant cluster and a local central cluster.

Choices (what is real, what is a double):
- The central cluster runs the real central stack (`envoy`, project klutch-central, release v1.5.0, envoy-gateway,
  anynines backend), deployed as in test_central in the SAME file backend (same PULUMI_HOME and state) as
  the tenant stacks: its kube-bind CRDs are the ones the tenant's objects land in.
- The central stack the tenant reads through its StackReference (`organization/klutch-central/dev`) is
  a DOUBLE of it: a tiny Pulumi program of project `klutch-central` in that backend exporting exactly the
  outputs the tenant reads (`klutch.outputs.TENANT_READS`). The real central program cannot point a tenant
  at the fake backend: it computes `bindNonInteractiveUrl`/`exportUrl` as `https://<backend.host>/...`,
  `backend.host` must be a DNS name (no port, no IP), and the tenant config has no URL override. So the
  double copies the real stack's `klutchRelease`, `konnectorImage`, `bindingApis` and `kubeBindCrdUrls` (the local chart
  repository's kube-bind file) and replaces only the URLs (the fake backend's 127.0.0.1:<port>),
  `kubectlBindCommand` (built from them) and `tlsCaPem` (the fake backend's CA, as a central backend with
  a self-signed CA exports it). This avoids depending on DNS.
- The backend is `klutch.sandbox.fake_backend.FakeBackend`: the IdP's token endpoint and /bind-noninteractive,
  creating the tenant's namespace, ServiceAccount, Role and token on the central cluster, and assigning
  central namespaces to APIServiceNamespaces.
- Real: the Pulumi CLI and engine, the Python language host, the dynamic Binding provider (the product's
  bind client over HTTPS), the Kubernetes provider, both API servers, the token controller, kwok.
  The dynamic provider's plugin, `pulumi-resource-pulumi-python` (a shell shim a Pulumi distribution ships
  beside the Python language host: `python -u -m pulumi.dynamic`), is not in the e2e toolchain; the fixture
  writes an equivalent shim onto the stacks' PATH.

One module-scoped setup (the central stacks, the fake backend, both clusters) serves every test. The `acme`
tenant stack goes through `AcmeStory.STEPS` in order: prepare-only (no tenant cluster), the full bind, an
`apis` change, a token URL change, 503s before success, and finally its destroy. A client the IdP refuses,
a token the backend refuses (both without a traceback) and an unexported API use stacks of their own.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from klutch import catalog
from klutch.outputs import tenant_output_names
from klutch.sandbox.cli import ROOT, Pulumi, offline_env, project_copy
from klutch.sandbox.controlplane import ControlPlane, running
from klutch.sandbox.fake_backend import FakeBackend
from klutch.sandbox.local import TOOLCHAIN
from klutch.tenant.binding import TYPE as BINDING_TYPE
from tests.e2e.helpers import Lab, succeeded
from tests.e2e.stacks import HOST, SERVICES, configure, existing_cluster_config

pytestmark = pytest.mark.e2e
RELEASE = catalog.DEFAULT_RELEASE
REL = catalog.RELEASES[RELEASE]
GROUP = REL.kube_bind_group
CLIENT_ID, CLIENT_SECRET = "acme-binder", "acme-binder-secret"
CLUSTER_ID = "acme-dev"
CENTRAL_NS = f"cluster-{CLUSTER_ID}"
APIS = ["postgresqlinstances.anynines.com", "servicebindings.anynines.com"]


@dataclass
class Setup:
    central: ControlPlane
    tenant: ControlPlane
    backend: FakeBackend
    workspace: dict[str, Path]
    plugin_dirs: list[Path]
    central_stack: str
    pulumi: Pulumi  # the acme tenant stack, which goes through `AcmeStory.STEPS`
    real_outputs: dict[str, Any]  # the real central stack's
    double_outputs: dict[str, Any]  # the outputs of the central double the tenant stacks read
    done: list[str] = field(default_factory=list)  # the steps of the story the acme stack went through


def plane(name: str, tmp: pytest.TempPathFactory) -> ControlPlane:
    return ControlPlane(
        name=name, bin_dir=TOOLCHAIN / "bin", stages_dir=TOOLCHAIN / "kwok-stages", workdir=tmp.mktemp(name)
    )


# The dynamic-provider plugin a Pulumi distribution ships beside the Python language host (sdk/python/dist);
# the toolchain build does not install it, and the tenant's Binding is a dynamic resource.
DYNAMIC_SHIM = """#!/bin/sh
venv="${PULUMI_RUNTIME_VIRTUALENV%/}"
case "$venv" in ""|/*) : ;; *) venv="$PWD/$venv" ;; esac
if [ -n "$venv" ] && [ -x "$venv/bin/python" ]; then
    exec "$venv/bin/python" -u -m pulumi.dynamic "$@"
fi
exec "${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic "$@"
"""


def dynamic_plugin_dir(directory: Path) -> Path:
    shim = directory / "pulumi-resource-pulumi-python"
    shim.write_text(DYNAMIC_SHIM)
    shim.chmod(0o755)
    return directory


def central_double(workspace: dict[str, Path], plugin_dirs: list[Path], outputs: dict[str, Any]) -> str:
    """A `klutch-central` stack exporting `outputs` (the tenant's StackReference target); its name."""
    cwd = workspace["base"] / "central-double"
    cwd.mkdir()
    (cwd / "Pulumi.yaml").write_text(
        "name: klutch-central\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: ../.venv\n"
    )
    if not (workspace["base"] / ".venv").exists():
        (workspace["base"] / ".venv").symlink_to(ROOT / ".venv")
    (cwd / "__main__.py").write_text(
        textwrap.dedent(
            f"""\
            import json
            import pulumi

            for name, value in json.loads({json.dumps(json.dumps(outputs))}).items():
                pulumi.export(name, value)
            """
        )
    )
    pulumi = Pulumi(cwd=cwd, env=offline_env(plugin_dirs, workspace["home"], workspace["state"]), stack="dev")
    pulumi.init()
    pulumi.up()
    return "organization/klutch-central/dev"


def tenant_stack(setup: Setup, stack: str, cluster_id: str, apis: list[str], kubeconfig: bool) -> Pulumi:
    ws = setup.workspace
    cwd = project_copy(ROOT / "tenant", ws["base"] / f"tenant-{stack}")
    pulumi = Pulumi(cwd=cwd, env=offline_env(setup.plugin_dirs, ws["home"], ws["state"]), stack=stack)
    pulumi.init()
    stack_file = cwd / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(stack_file.read_text()) or {}
    document["config"] = {
        "pulumi:disable-default-providers": ["kubernetes"],
        "klutch-tenant:klutchRelease": RELEASE,
        "klutch-tenant:centralStack": setup.central_stack,
        "klutch-tenant:clusterId": cluster_id,
        "klutch-tenant:oidc": {"tokenUrl": setup.backend.token_url, "clientId": CLIENT_ID},
        "klutch-tenant:apis": apis,
        "klutch-tenant:namespaces": ["apps"],
    }
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    pulumi.config("klutch-tenant:oidc.clientSecret", CLIENT_SECRET, secret=True, path=True)
    if kubeconfig:
        set_kubeconfig(pulumi, setup.tenant)
    return pulumi


def set_kubeconfig(pulumi: Pulumi, tenant: ControlPlane) -> None:
    pulumi.run("config", "set", "--secret", "klutch-tenant:kubeconfig", input=tenant.kubeconfig_path.read_text())


@pytest.fixture(scope="module")
def setup(lab: Lab) -> Iterator[Setup]:
    tenant = plane("tenant", lab.tmp)
    plugin_dirs = [dynamic_plugin_dir(lab.tmp.mktemp("dynamic")), *lab.plugin_dirs]
    with lab.cluster("envoy-gateway") as central, running(tenant):
        real = lab.central_project("envoy", plugin_dirs)
        configure(real, central, existing_cluster_config(central, lab.chart_repo, RELEASE, "envoy-gateway"))
        succeeded(real.up(check=False), f"doubles: {central.doubles.errors[-5:]}")
        backend = FakeBackend(central, lab.tmp.mktemp("backend"), CLIENT_ID, CLIENT_SECRET)
        with backend:
            real_outputs = real.outputs()
            outputs = {
                "klutchRelease": real_outputs["klutchRelease"],
                "exportUrl": f"{backend.url}/export",
                "bindNonInteractiveUrl": backend.bind_url,
                "konnectorImage": real_outputs["konnectorImage"],
                "bindingApis": real_outputs["bindingApis"],
                "kubeBindCrdUrls": real_outputs["kubeBindCrdUrls"],
                "tlsCaPem": backend.ca_pem,
                "kubectlBindCommand": f"kubectl bind {backend.url}/export --konnector-image={REL.konnector_image}",
            }
            central_stack = central_double(lab.workspace, plugin_dirs, outputs)
            s = Setup(
                central,
                tenant,
                backend,
                lab.workspace,
                plugin_dirs,
                central_stack,
                pulumi=None,  # type: ignore[arg-type]  # the acme stack, created from the setup below
                real_outputs=real_outputs,
                double_outputs=outputs,
            )
            s.pulumi = tenant_stack(s, "acme", CLUSTER_ID, APIS, kubeconfig=False)
            yield s


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


def names(plane: ControlPlane, resource: str, namespace: str | None = None) -> list[str]:
    return sorted(o["metadata"]["name"] for o in plane.items(resource, namespace))


def up(setup: Setup) -> Any:
    return succeeded(setup.pulumi.up(check=False), f"backend: {setup.backend.errors[-5:]}")


def test_the_central_double_exports_what_the_tenant_reads_and_copies_the_real_stack(setup: Setup, lab: Lab):
    real, double = setup.real_outputs, setup.double_outputs
    # what the real stack says, and why the double is needed: its URLs name backend.host
    assert real["bindNonInteractiveUrl"] == f"https://{HOST}/bind-noninteractive"
    assert real["kubeBindCrdUrls"] == [f"{lab.chart_repo.url}/kube-bind-{RELEASE}.yaml"]
    assert real["bindingApis"] == catalog.binding_apis(REL, SERVICES)
    assert set(double) == set(tenant_output_names())
    for name in ("klutchRelease", "konnectorImage", "bindingApis", "kubeBindCrdUrls"):
        assert double[name] == real[name], name


class AcmeStory:
    """The life of the `acme` tenant stack, one test per step, in the order of `STEPS`: each step starts
    from what the previous ones left (the stack's config and state, the binding, the objects on both
    clusters). A step whose predecessors did not all pass is skipped rather than run on a state it does
    not expect (so `-k` on a later step alone skips it). The refusal tests use stacks of their own."""

    STEPS = (
        "test_prepare_only_binds_and_prepares_the_central_side",  # no tenant cluster: bind, central side
        "test_with_the_tenant_cluster_up_installs_the_konnector_and_bindings",  # kubeconfig set
        "test_an_apis_change_replaces_the_binding",  # apis: APIS + backups
        "test_a_token_url_change_changes_nothing_until_the_next_bind",
        "test_a_bind_answered_503_twice_is_retried_and_succeeds",  # apis: APIS again
        "test_a_tenant_destroy_removes_both_sides_and_keeps_the_crds_and_the_central_namespace",
    )

    @classmethod
    def step(cls, test: Callable[[Setup], None]) -> Callable[[Setup], None]:
        before = cls.STEPS[: cls.STEPS.index(test.__name__)]

        @functools.wraps(test)
        def run(setup: Setup) -> None:
            missing = [name for name in before if name not in setup.done]
            if missing:
                pytest.skip(f"the acme stack has not been through {missing[0]}")
            test(setup)
            setup.done.append(test.__name__)

        return run


@AcmeStory.step
def test_prepare_only_binds_and_prepares_the_central_side(setup: Setup) -> None:
    done = up(setup)
    assert "no tenant cluster configured" in done.stdout + done.stderr
    assert len(setup.backend.bind_requests) == 1
    assert setup.backend.bind_requests[0] == {
        "clusterID": CLUSTER_ID,
        "apis": [{"group": "anynines.com", "resource": r.split(".")[0]} for r in APIS],
    }
    assert names(setup.central, f"apiserviceexportrequests.{GROUP}", CENTRAL_NS) == sorted(APIS)
    assert names(setup.central, f"apiservicenamespaces.{GROUP}", CENTRAL_NS) == ["apps"]
    assert not setup.tenant.exists("namespace", REL.konnector_namespace)
    outputs = setup.pulumi.outputs()
    assert outputs["centralNamespace"] == CENTRAL_NS
    assert outputs["namespaceMap"] == {"apps": f"{CENTRAL_NS}-apps"}
    setup.pulumi.preview("--expect-no-changes")


@AcmeStory.step
def test_with_the_tenant_cluster_up_installs_the_konnector_and_bindings(setup: Setup) -> None:
    set_kubeconfig(setup.pulumi, setup.tenant)
    up(setup)
    assert len(setup.backend.bind_requests) == 1  # adding the cluster does not re-bind
    tenant, central = setup.tenant, setup.central
    # the tenant cluster
    assert tenant.exists("namespace", REL.konnector_namespace)
    secret = tenant.get("secret", REL.konnector_kubeconfig_secret, REL.konnector_namespace)
    kubeconfig = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
    assert kubeconfig["clusters"][0]["cluster"]["server"] == central.server
    assert kubeconfig["contexts"][0]["context"]["namespace"] == CENTRAL_NS
    crds = [c for c in tenant.items("customresourcedefinitions") if c["spec"]["group"] == GROUP]
    assert {c["spec"]["names"]["kind"] for c in crds} >= {"APIServiceBinding", "APIServiceExportRequest"}
    for crd in crds:
        assert conditions(crd)["Established"] == "True", crd["metadata"]["name"]
    bindings = tenant.items(f"apiservicebindings.{GROUP}")
    assert sorted(b["metadata"]["name"] for b in bindings) == sorted(APIS)
    for binding in bindings:
        assert "namespace" not in binding["metadata"]  # cluster-scoped
        assert binding["spec"]["kubeconfigSecretRef"] == {
            "name": REL.konnector_kubeconfig_secret,
            "namespace": REL.konnector_namespace,
            "key": "kubeconfig",
        }
    claims = {b["metadata"]["name"]: b["spec"]["permissionClaims"] for b in bindings}
    assert claims["postgresqlinstances.anynines.com"] == []
    assert [c["state"] for c in claims["servicebindings.anynines.com"]] == ["Accepted"]
    deployment = tenant.get("deployment", REL.konnector_name, REL.konnector_namespace)
    assert conditions(deployment)["Available"] == "True"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == REL.konnector_image
    # the central cluster, with the backend's credentials
    requests = central.items(f"apiserviceexportrequests.{GROUP}", CENTRAL_NS)
    assert sorted(r["metadata"]["name"] for r in requests) == sorted(APIS)
    for request in requests:
        [resource] = request["spec"]["resources"]
        assert f"{resource['resource']}.{resource['group']}" == request["metadata"]["name"]
        assert resource["versions"] == ["v1"]
    [apps] = central.items(f"apiservicenamespaces.{GROUP}", CENTRAL_NS)
    assert apps["status"]["namespace"] == f"{CENTRAL_NS}-apps"
    outputs = setup.pulumi.outputs()
    assert outputs["namespaceMap"] == {"apps": f"{CENTRAL_NS}-apps"}
    assert outputs["boundApis"] == APIS
    assert outputs["konnectorImage"] == REL.konnector_image
    assert setup.backend.errors == []
    provider = yaml.safe_load(outputs["providerKubeconfig"])
    assert provider["contexts"][0]["context"]["namespace"] == CENTRAL_NS
    setup.pulumi.preview("--expect-no-changes")


def uids(plane: ControlPlane, resource: str, namespace: str | None = None) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in plane.items(resource, namespace)}


@AcmeStory.step
def test_an_apis_change_replaces_the_binding(setup: Setup) -> None:
    apis = [*APIS, "backups.anynines.com"]
    setup.pulumi.config("klutch-tenant:apis", json.dumps(apis))
    before = len(setup.backend.bind_requests)
    kept = {
        "namespaces": uids(setup.central, f"apiservicenamespaces.{GROUP}", CENTRAL_NS),
        "requests": uids(setup.central, f"apiserviceexportrequests.{GROUP}", CENTRAL_NS),
        "bindings": uids(setup.tenant, f"apiservicebindings.{GROUP}"),
    }
    preview = setup.pulumi.preview("--diff").stdout
    assert re.search(r"^\s*\+-pulumi-python:dynamic/klutch:Binding: \(replace\)", preview, re.M), preview[-3000:]
    done = up(setup)
    assert re.search(r"pulumi-python:dynamic/klutch:Binding binding replaced", done.stdout), done.stdout[-3000:]
    assert len(setup.backend.bind_requests) == before + 1
    assert setup.backend.bind_requests[-1]["apis"][-1] == {"group": "anynines.com", "resource": "backups"}
    assert names(setup.tenant, f"apiservicebindings.{GROUP}") == sorted(apis)
    assert names(setup.central, f"apiserviceexportrequests.{GROUP}", CENTRAL_NS) == sorted(apis)
    # The re-bind returned the same namespace and credentials: what existed is kept (same uids), only the
    # new API's objects are created.
    assert uids(setup.central, f"apiservicenamespaces.{GROUP}", CENTRAL_NS) == kept["namespaces"]
    assert kept["requests"].items() <= uids(setup.central, f"apiserviceexportrequests.{GROUP}", CENTRAL_NS).items()
    assert kept["bindings"].items() <= uids(setup.tenant, f"apiservicebindings.{GROUP}").items()
    setup.pulumi.preview("--expect-no-changes")


@AcmeStory.step
def test_a_token_url_change_changes_nothing_until_the_next_bind(setup: Setup) -> None:
    before = (len(setup.backend.bind_requests), setup.backend.token_requests)
    # the same IdP under another name: the URLs are used at bind time only
    url = setup.backend.token_url.replace("127.0.0.1", "localhost")
    setup.pulumi.run("config", "set", "--path", "--plaintext", "klutch-tenant:oidc.tokenUrl", "--", url)
    setup.pulumi.preview("--expect-no-changes")  # no update: nothing that reads the binding looks replaced
    up(setup)
    assert (len(setup.backend.bind_requests), setup.backend.token_requests) == before


@AcmeStory.step
def test_a_bind_answered_503_twice_is_retried_and_succeeds(setup: Setup) -> None:
    setup.pulumi.config("klutch-tenant:apis", json.dumps(APIS))
    before = len(setup.backend.bind_requests)
    setup.backend.fail_times_with(503, 2)
    up(setup)
    assert len(setup.backend.bind_requests) == before + 3
    assert names(setup.tenant, f"apiservicebindings.{GROUP}") == sorted(APIS)
    assert names(setup.central, f"apiserviceexportrequests.{GROUP}", CENTRAL_NS) == sorted(APIS)
    setup.pulumi.preview("--expect-no-changes")


TRACEBACK = re.compile(r'^\s*(Traceback \(most recent call last\)|File ")', re.M)


def refused(setup: Setup, done: Any, *hints: str) -> str:
    """The output of a command the program refused: non-zero, each hint, no traceback, no credential."""
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    for hint in hints:
        assert hint in out, f"{hint!r} not in\n{out[-3000:]}"
    assert not TRACEBACK.search(out), out[-3000:]
    assert CLIENT_SECRET not in out and not any(token in out for token in setup.backend.tokens)
    return out


def created_nothing(setup: Setup, pulumi: Pulumi, cluster_id: str) -> None:
    """No binding and no Kubernetes object in the state (components and providers are no objects), and no
    tenant namespace on the central cluster."""
    types = [r["type"] for r in pulumi.resources()]
    assert [t for t in types if t == BINDING_TYPE or (t.startswith("kubernetes:") and "providers" not in t)] == []
    assert not setup.central.exists("namespace", f"cluster-{cluster_id}")


def test_a_refused_bind_fails_with_the_hint_and_creates_nothing(setup: Setup):
    pulumi = tenant_stack(setup, "denied", "denied-dev", APIS, kubeconfig=True)
    before = len(setup.backend.bind_requests)
    # The IdP refuses the client: preview and up say so before any bind request.
    pulumi.config("klutch-tenant:oidc.clientSecret", "not-the-secret", secret=True, path=True)
    idp = "was refused by the IdP (HTTP 401, invalid_client) for client 'acme-binder': the client id or secret is wrong"
    refused(setup, pulumi.preview(check=False), "resource 'binding' has a problem: token request to", idp)
    refused(setup, pulumi.up(check=False), idp)
    assert len(setup.backend.bind_requests) == before
    created_nothing(setup, pulumi, "denied-dev")
    # The backend refuses the token (401): up fails on the bind, with the hint and nothing else.
    pulumi.config("klutch-tenant:oidc.clientSecret", CLIENT_SECRET, secret=True, path=True)
    setup.backend.always(401)
    try:
        done = pulumi.up(check=False)
    finally:
        setup.backend.always(None)
    refused(
        setup,
        done,
        "klutch.tenant.bindclient.BindError: bind request to",
        "was refused by the kube-bind backend (HTTP 401) for client 'acme-binder'",
        "audience 'kube-bind'",
    )
    assert len(setup.backend.bind_requests) == before + 1
    created_nothing(setup, pulumi, "denied-dev")


def test_an_api_the_central_stack_does_not_export_fails_preview_and_creates_nothing(setup: Setup):
    pulumi = tenant_stack(setup, "stray", "stray-dev", ["redisinstances.anynines.com"], kubeconfig=True)
    before = len(setup.backend.bind_requests)
    hint = (
        "klutch-tenant:apis[0] = 'redisinstances.anynines.com': is not exported by central stack "
        f"'{setup.central_stack}'; valid: "
    )
    refused(setup, pulumi.preview(check=False), hint)
    refused(setup, pulumi.run("up", "--yes", check=False), hint)  # the same refusal stops `up` before any bind
    assert len(setup.backend.bind_requests) == before
    created_nothing(setup, pulumi, "stray-dev")


@AcmeStory.step
def test_a_tenant_destroy_removes_both_sides_and_keeps_the_crds_and_the_central_namespace(setup: Setup) -> None:
    crds = uids(setup.tenant, "customresourcedefinitions")
    kube_bind_crds = {name: uid for name, uid in crds.items() if name.endswith(f".{GROUP}")}
    assert len(kube_bind_crds) >= 2
    done = succeeded(setup.pulumi.run("destroy", "--yes", "--skip-preview", check=False))
    out = done.stdout + done.stderr
    assert f"klutch binding of cluster id '{CLUSTER_ID}' deleted from this stack" in out, out[-3000:]
    assert f"kubectl delete namespace {CENTRAL_NS}" in out
    assert setup.pulumi.resources() == []
    # the tenant side is gone, the kube-bind CRDs stay (retained on delete)
    assert setup.tenant.items(f"apiservicebindings.{GROUP}") == []
    assert not setup.tenant.exists("namespace", REL.konnector_namespace)
    assert not setup.tenant.exists("clusterrole", REL.konnector_cluster_role)
    assert kube_bind_crds.items() <= uids(setup.tenant, "customresourcedefinitions").items()
    # the central side: this stack's export requests and namespaces are gone, the tenant's namespace stays
    assert setup.central.items(f"apiserviceexportrequests.{GROUP}", CENTRAL_NS) == []
    assert setup.central.items(f"apiservicenamespaces.{GROUP}", CENTRAL_NS) == []
    assert setup.central.exists("namespace", CENTRAL_NS)
