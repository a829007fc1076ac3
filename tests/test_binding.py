"""The Binding dynamic resource: its provider's CRUD, and that the pickled provider loads out of process."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest
import yaml
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

from klutch.sdk import compat
from klutch.tenant import binding as binding_module
from klutch.tenant.bindclient import BindError, Policy
from klutch.tenant.binding import BindingProvider
from tests.test_bindclient import APIS, CENTRAL_NAMESPACE, CLAIMS, CLIENT_ID, CLIENT_SECRET, CLUSTER_ID, TOKEN
from tests.test_bindclient import backend as backend

ROOT = Path(__file__).resolve().parent.parent


def props(server) -> dict:
    """Inputs as the engine hands them to the provider (the client secret wrapped as a secret)."""
    return {
        "__provider": "serialized",
        "clusterId": CLUSTER_ID,
        "apis": APIS,
        "bindUrl": server.url("/bind-noninteractive"),
        "tokenUrl": server.url("/token"),
        "clientId": CLIENT_ID,
        "clientSecret": {rpc._special_sig_key: rpc._special_secret_sig, "value": CLIENT_SECRET},
        "scope": None,
        "caPem": None,
    }


def fast() -> BindingProvider:
    return BindingProvider(policy=Policy(attempts=2, timeout=0.5, backoff=0.0, sleep=lambda _: None))


# ------------------------------------------------------------------------------- CRUD
def test_create_binds_and_returns_kubeconfig_namespace_and_one_export_per_api(backend):
    result = fast().create(props(backend))

    assert result.id == f"{CLUSTER_ID}@{CENTRAL_NAMESPACE}"
    assert backend.calls("/bind-noninteractive")[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    outs = result.outs
    assert outs["namespace"] == CENTRAL_NAMESPACE
    assert yaml.safe_load(outs["kubeconfig"])["contexts"][0]["context"]["namespace"] == CENTRAL_NAMESPACE
    assert [(e["group"], e["resource"], e["versions"]) for e in outs["exports"]] == [
        ("anynines.com", "postgresqlinstances", ["v1"]),
        ("anynines.com", "servicebindings", ["v1"]),
    ]
    assert outs["exports"][1]["permissionClaims"] == CLAIMS
    # the public inputs are kept for diff; the client secret is not
    assert outs["clusterId"] == CLUSTER_ID and outs["apis"] == APIS and "clientSecret" not in outs


def test_create_fails_when_the_backend_left_an_api_out(backend):
    from tests.test_bindclient import binding_response

    backend.bind_answers[:] = [(200, binding_response(APIS[:1]))]
    with pytest.raises(BindError, match="no export request for servicebindings.anynines.com"):
        fast().create(props(backend))


def test_a_refused_create_is_reported_by_the_provider_host_as_its_message_alone(backend, monkeypatch):
    backend.bind_answers[:] = [(401, {"error": "invalid token"})]
    monkeypatch.setattr(sys, "tracebacklimit", 1000, raising=False)  # restored after the test
    monkeypatch.setattr(compat, "in_dynamic_provider_host", lambda: True)
    try:
        fast().create(props(backend))
    except BindError:
        reported = traceback.format_exc()  # what the host sends the CLI (tests/test_compat.py)
    lines = reported.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "klutch.tenant.bindclient.BindError: bind request to http://127.0.0.1:"
    ), reported
    assert "was refused by the kube-bind backend (HTTP 401) for client 'acme-binder'" in lines[0]
    assert CLIENT_SECRET not in reported and TOKEN not in reported


def test_outside_the_provider_host_a_refusal_keeps_its_frames(backend):
    backend.bind_answers[:] = [(403, {"error": "forbidden"})]
    with pytest.raises(BindError, match=r"refused by the kube-bind backend \(HTTP 403\)"):
        fast().create(props(backend))
    assert getattr(sys, "tracebacklimit", None) is None  # a test or program process is never changed


def test_check_before_a_new_bind_reports_an_idp_refusal_as_a_check_failure(backend):
    backend.token_answers[:] = [(401, {"error": "invalid_client"})]
    news = props(backend)
    result = fast().check({}, news)
    assert result.inputs == news
    [failure] = result.failures
    assert failure.property == ""
    assert failure.reason.startswith(
        f"token request to {backend.url('/token')} was refused by the IdP (HTTP 401, invalid_client) for client "
        "'acme-binder': the client id or secret is wrong"
    )
    assert backend.calls("/bind-noninteractive") == []  # a check never binds


def test_check_asks_the_idp_only_before_a_new_bind_with_known_inputs(backend):
    news = props(backend)
    assert fast().check({}, news).failures == []
    assert len(backend.calls("/token")) == 1
    olds = {k: v for k, v in news.items() if k != "clientSecret"}
    assert fast().check(olds, {**news, "tokenUrl": "http://127.0.0.1:9/token"}).failures == []  # bound already
    assert fast().check({}, {**news, "clientSecret": rpc.UNKNOWN}).failures == []  # a preview's unknown input
    assert fast().check(olds, {**news, "apis": APIS[:1]}).failures == []  # a replacement binds again
    assert len(backend.calls("/token")) == 2 and backend.calls("/bind-noninteractive") == []


def test_only_cluster_id_or_apis_are_a_change_and_they_replace_the_binding():
    old = {
        "clusterId": "acme",
        "apis": APIS,
        "bindUrl": "https://a/bind",
        "tokenUrl": "https://idp/t",
        "clientId": "c",
        "scope": None,
        "caPem": None,
        "kubeconfig": "k",
        "namespace": "n",
        "exports": [],
    }
    diff = BindingProvider().diff

    assert diff("id", old, {**old, "clusterId": "acme2"}).replaces == ["clusterId"]
    assert diff("id", old, {**old, "apis": APIS[:1]}).replaces == ["apis"]
    same_apis_reordered = diff("id", old, {**old, "apis": list(reversed(APIS))})
    assert same_apis_reordered.changes is False and same_apis_reordered.replaces == []
    bind_time_only = {"bindUrl": "https://b/bind", "tokenUrl": "https://b/token", "clientId": "c2", "scope": "s2"}
    moved = diff("id", old, {**old, **bind_time_only, "caPem": "pem2", "clientSecret": "rotated"})
    assert moved.changes is False and moved.replaces == []
    assert diff("id", old, {**old, "__provider": "new pickle"}).changes is False


def test_delete_says_what_the_backend_cannot_release(capsys):
    BindingProvider().delete("id", {"clusterId": "acme", "namespace": "cluster-acme-x"})
    err = capsys.readouterr().err
    assert "offers no unbind endpoint" in err
    assert "the new binding uses that namespace: leave it" in err
    assert "tenant namespace 'cluster-acme-x'" in err
    assert "`kubectl delete namespace cluster-acme-x`" in err


# ------------------------------------------------------------------------------- the provider process
LOAD = textwrap.dedent("""
    import base64, os, sys, dill
    os.chdir(sys.argv[1])
    provider = dill.loads(base64.b64decode(sys.stdin.read()))
    print("loaded", type(provider).__module__, type(provider).__name__, callable(provider.create))
""")


def load_elsewhere(provider: BindingProvider, cwd: Path) -> str:
    """Unpickle the serialized provider in a fresh, isolated interpreter (no PYTHONPATH, no cwd on sys.path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", LOAD, str(cwd)],
        input=serialize_provider(provider),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("where", ["tenant", "elsewhere"])
def test_pickled_provider_loads_in_the_provider_process(tmp_path, where):
    # The provider process runs in the project directory (tenant/) with the project's virtualenv,
    # where the klutch package is installed: the class is found by reference, wherever the process runs.
    out = load_elsewhere(BindingProvider(), ROOT / "tenant" if where == "tenant" else tmp_path)
    assert out.splitlines() == ["loaded klutch.tenant.binding BindingProvider True"]


def test_pickled_provider_refers_to_the_class_rather_than_carrying_its_code():
    blob = base64.b64decode(serialize_provider(BindingProvider()))
    assert b"klutch.tenant.binding" in blob and b"BindingProvider" in blob
    assert b"def create" not in blob and len(blob) < 2000


def test_serialized_provider_is_stable_and_holds_no_secret():
    a, b = serialize_provider(BindingProvider()), serialize_provider(BindingProvider())
    assert a == b  # no spurious diff of __provider between runs
    assert CLIENT_SECRET.encode() not in base64.b64decode(a)
    assert binding_module.TYPE == "pulumi-python:dynamic/klutch:Binding"
