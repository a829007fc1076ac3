"""The issuer preflight (klutch.config.issuer): each decision, the real fetch against a local server, and
its place in both programs (before any resource; skipped under the mock engine; switched off)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from klutch.config import issuer
from klutch.config.issuer import Subject, Unreachable, check
from klutch.config.reader import ConfigError
from klutch.offline.mockengine import Evaluation, evaluate
from klutch.tenant import program as tenant_program
from tests import harness
from tests import test_tenant as tenant_tests

ISSUER = "https://idp.example.com/realms/klutch"
TOKEN_URL = f"{ISSUER}/protocol/openid-connect/token"
KEY, SWITCH = "klutch-central:oidc.issuerUrl", "klutch-central:oidc.checkIssuer"
CENTRAL = Subject(ISSUER, issuer_key=KEY, switch_key=SWITCH)
TENANT = Subject(
    ISSUER,
    issuer_key="klutch-tenant:oidc.issuerUrl",
    switch_key="klutch-tenant:oidc.checkIssuer",
    token_url=TOKEN_URL,
    token_key="klutch-tenant:oidc.tokenUrl",
)


def document(**overrides: Any) -> dict[str, Any]:
    doc = {
        "issuer": ISSUER,
        "token_endpoint": TOKEN_URL,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def answers(status: int, body: Any = None) -> issuer.Fetch:
    calls: list[str] = []

    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        calls.append(url)
        assert timeout == issuer.TIMEOUT
        return status, body if isinstance(body, bytes) else json.dumps(body).encode()

    fetch.calls = calls  # type: ignore[attr-defined]
    return fetch


def unreachable(why: str) -> issuer.Fetch:
    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        raise Unreachable(why)

    return fetch


# ------------------------------------------------------------------------------- decisions
def test_a_matching_issuer_passes_silently_and_fetches_the_discovery_document():
    fetch = answers(200, document())
    assert check(CENTRAL, fetch) == issuer.Verdict()
    assert fetch.calls == [f"{ISSUER}/.well-known/openid-configuration"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "named",
    [f"{ISSUER}/", ISSUER.replace("https:", "http:"), "https://idp.example.com/realms/other"],
    ids=["trailing-slash", "http-vs-https", "another-realm"],
)
def test_an_issuer_the_idp_names_differently_is_an_error_naming_both(named: str):
    verdict = check(CENTRAL, answers(200, document(issuer=named)))
    [problem] = verdict.problems
    assert problem.key == KEY and problem.value == ISSUER
    assert f"the IdP names its issuer {named!r}" in problem.allowed
    assert f"set oidc.issuerUrl to {named!r}" in problem.allowed
    assert verdict.warnings == ()


def test_a_configured_trailing_slash_is_fetched_without_it_and_then_refused():
    subject = Subject(f"{ISSUER}/", issuer_key=KEY, switch_key=SWITCH)
    fetch = answers(200, document())
    [problem] = check(subject, fetch).problems
    assert fetch.calls == [f"{ISSUER}/.well-known/openid-configuration"]  # type: ignore[attr-defined]
    assert str(problem).startswith(f"{KEY} = '{ISSUER}/': the IdP names its issuer '{ISSUER}'")


def test_a_wrong_realm_answered_404_is_an_error():
    [problem] = check(CENTRAL, answers(404, {"error": "Realm does not exist"})).problems
    assert "the IdP answers HTTP 404" in problem.allowed and "a wrong realm or path" in problem.allowed


@pytest.mark.parametrize("body", [b"<html>login</html>", {"jwks_uri": "x"}, [1]])
def test_an_answer_that_is_no_discovery_document_is_an_error(body: Any):
    [problem] = check(CENTRAL, answers(200, body)).problems
    assert "is not an OpenID Connect discovery document" in problem.allowed


@pytest.mark.parametrize("grants", [["authorization_code"], None], ids=["not-listed", "default-list"])
def test_no_client_credentials_grant_is_a_warning(grants: list[str] | None):
    verdict = check(CENTRAL, answers(200, document(grant_types_supported=grants)))
    assert verdict.problems == ()
    [warning] = verdict.warnings
    assert "does not list 'client_credentials' in grant_types_supported" in warning
    assert "non-interactive binds" in warning


@pytest.mark.parametrize(
    "fetch",
    [unreachable("[Errno 111] Connection refused"), unreachable("timed out"), answers(503, b"")],
    ids=["refused", "timeout", "5xx"],
)
def test_an_issuer_that_does_not_answer_is_a_warning_naming_the_switch(fetch: issuer.Fetch):
    verdict = check(CENTRAL, fetch)
    assert verdict.problems == ()
    [warning] = verdict.warnings
    assert warning.startswith(f"{KEY} '{ISSUER}' not checked:")
    assert "SSL_CERT_FILE" in warning and f"{SWITCH}: false turns this check off" in warning


def test_the_tenant_token_url_must_be_the_issuers_token_endpoint():
    other = "https://idp.example.com/realms/klutch/protocol/openid-connect/token2"
    [problem] = check(TENANT, answers(200, document(token_endpoint=other))).problems
    assert problem.key == "klutch-tenant:oidc.tokenUrl" and problem.value == TOKEN_URL
    assert f"the token endpoint of issuer '{ISSUER}' is {other!r}" in problem.allowed
    assert check(TENANT, answers(200, document())) == issuer.Verdict()


def test_keycloak_token_urls_tell_their_issuer():
    assert issuer.issuer_of_token_url(TOKEN_URL) == ISSUER
    assert issuer.issuer_of_token_url("https://idp.example.com/oauth2/token") is None


# ------------------------------------------------------------------------------- the real fetch
class _Discovery(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == "/realms/klutch/.well-known/openid-configuration"
        body = json.dumps(document()).encode() if found else b'{"error": "Realm does not exist"}'
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def idp() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discovery)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_returns_status_and_body_and_raises_unreachable(idp: str):
    status, body = issuer.fetch_https(f"{idp}/realms/klutch/.well-known/openid-configuration", 5)
    assert status == 200 and json.loads(body)["issuer"] == ISSUER
    assert issuer.fetch_https(f"{idp}/realms/nope/.well-known/openid-configuration", 5)[0] == 404
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Unreachable, match="refused"):
        issuer.fetch_https(f"https://127.0.0.1:{port}/.well-known/openid-configuration", 5)


def test_fetch_is_bounded_by_its_timeout():
    with socket.socket() as silent:  # accepts connections, never answers: only the timeout ends the fetch
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(Unreachable, match="timed out"):
            issuer.fetch_https(f"http://127.0.0.1:{silent.getsockname()[1]}/.well-known/openid-configuration", 0.5)


# ------------------------------------------------------------------------------- in the programs
def test_preflight_raises_the_problems_as_a_config_error_and_logs_warnings(monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr(issuer.pulumi.log, "warn", warned.append)
    monkeypatch.setattr(issuer, "under_mock_engine", lambda: False)  # as under `pulumi preview`
    with pytest.raises(ConfigError) as err:
        issuer.preflight("dev", CENTRAL, enabled=True, fetch=answers(200, document(issuer=f"{ISSUER}/")))
    assert str(err.value).startswith("invalid configuration for stack 'dev' (1 problem):")
    issuer.preflight("dev", CENTRAL, enabled=True, fetch=answers(200, document(grant_types_supported=[])))
    assert len(warned) == 1 and "client_credentials" in warned[0]


def test_preflight_switched_off_fetches_nothing():
    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        raise AssertionError("fetched")

    issuer.preflight("dev", CENTRAL, enabled=False, fetch=fetch)


def test_the_central_program_skips_it_offline_and_says_so():
    ev = harness.run()
    assert any("oidc.issuerUrl: issuer check skipped (offline evaluation" in m for s, m in ev.logs if s == "info")
    off = harness.run({"oidc": {"checkIssuer": "false"}})
    assert any("issuer check off (klutch-central:oidc.checkIssuer: false)" in m for _, m in off.logs)


def test_the_central_program_runs_it_before_any_resource(monkeypatch):
    registered: list[str] = []
    at_preflight: list[tuple[list[str], Subject, bool]] = []

    def hook(args: Any) -> None:
        registered.append(args.typ)

    def preflight(stack: str, subject: Subject, *, enabled: bool) -> None:
        at_preflight.append((list(registered), subject, enabled))

    monkeypatch.setattr(issuer, "preflight", preflight)
    harness.run(resource_hook=hook)
    assert at_preflight == [([], CENTRAL, True)] and registered


def run_tenant(oidc: dict[str, Any], hook: Any = tenant_tests.bind_mock) -> Evaluation:
    raw = tenant_tests.base_raw()
    raw["oidc"] = {**raw["oidc"], **oidc}
    return evaluate(
        tenant_program.main,
        {f"{tenant_tests.NS}:{k}": v for k, v in raw.items()},
        [f"{tenant_tests.NS}:{k}" for k in tenant_tests.SECRET_KEYS],
        project="klutch-tenant",
        stack="acme-dev",
        stack_outputs={tenant_tests.CENTRAL_STACK: tenant_tests.central_outputs()},
        resource_hook=hook,
    )


def test_the_tenant_program_checks_its_token_urls_issuer_before_the_stack_reference(monkeypatch):
    registered: list[str] = []
    at_preflight: list[tuple[list[str], Subject]] = []

    def hook(args: Any) -> Any:
        registered.append(args.typ)
        return tenant_tests.bind_mock(args)

    def preflight(stack: str, subject: Subject, *, enabled: bool) -> None:
        at_preflight.append((list(registered), subject))

    monkeypatch.setattr(issuer, "preflight", preflight)
    run_tenant({}, hook)
    assert at_preflight == [([], TENANT)] and "pulumi:pulumi:StackReference" in registered


def test_the_tenant_program_offline_and_with_an_unknown_issuer():
    logs = run_tenant({}).logs
    assert (
        "info",
        "klutch-tenant:oidc.issuerUrl: issuer check skipped (offline evaluation; preview and up run it)",
    ) in logs
    other = run_tenant({"tokenUrl": "https://idp.example.com/oauth2/token"}).warnings()
    assert any("its issuer is not known (not a Keycloak token URL)" in w and "oidc.issuerUrl" in w for w in other)
    assert not any("issuer is not known" in w for w in run_tenant({"checkIssuer": False}).warnings())


def test_check_issuer_must_be_a_boolean():
    with pytest.raises(ConfigError) as err:
        harness.parse({"oidc": {"checkIssuer": "maybe"}})
    assert any(p.key == "klutch-central:oidc.checkIssuer" for p in err.value.problems)
    assert harness.parse({"oidc": {"checkIssuer": False}}).oidc.check_issuer is False
    assert harness.parse().oidc.check_issuer is True
