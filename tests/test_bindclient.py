"""The bind client against a real HTTP server on 127.0.0.1 (ephemeral port, joined after each test).

`FakeBackend` plays the IdP's token endpoint and the backend's /bind-noninteractive; each test
scripts the answers and then checks what the client sent. Retries never really sleep: the policy's
`sleep` records the delays, and the timeout is a fraction of a second.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from klutch.offline.curated import PLACEHOLDER_CA_PEM, mock_kubeconfig
from klutch.tenant import bindclient
from klutch.tenant.bindclient import BindError, Credentials, Policy

CLIENT_ID = "acme-binder"
CLIENT_SECRET = "client-secret-value-c0ffee"
TOKEN = "access-token-value-7d1f"
CLUSTER_ID = "acme-dev"
APIS = [
    {"group": "anynines.com", "resource": "postgresqlinstances"},
    {"group": "anynines.com", "resource": "servicebindings"},
]
CENTRAL_NAMESPACE = "cluster-acme-dev-x7k2p"
CLAIMS = [{"group": "", "resource": "secrets", "version": "v1", "selector": {"owner": "Provider"}}]


def provider_kubeconfig(namespace: str | None = CENTRAL_NAMESPACE) -> str:
    return mock_kubeconfig("https://central.example.com:6443", "central", namespace=namespace, token="sa-token")


def binding_response(apis: list[dict[str, str]] = APIS, *, namespace: str | None = CENTRAL_NAMESPACE) -> dict[str, Any]:
    """A BindingResponse as the backend sends it: base64 kubeconfig, one export request per API."""
    return {
        "kubeconfig": base64.b64encode(provider_kubeconfig(namespace).encode()).decode(),
        "requests": [
            {
                "apiVersion": "klutch.anynines.com/v1alpha1",
                "kind": "APIServiceExportRequest",
                "metadata": {"name": f"{a['resource']}-req"},
                "spec": {
                    "resources": [
                        {
                            **a,
                            "versions": ["v1"],
                            "permissionClaims": CLAIMS if a["resource"] == "servicebindings" else [],
                        }
                    ]
                },
            }
            for a in apis
        ],
        "authentication": {"oauth2CodeGrant": {"sessionID": "s", "id": "i"}},
    }


class FakeBackend:
    """IdP token endpoint (`/token`) and kube-bind backend (`/bind-noninteractive`) on 127.0.0.1."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.token_answers: list[tuple] = [(200, {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300})]
        self.bind_answers: list[tuple] = [(200, binding_response())]
        self.release = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                backend.requests.append(
                    {"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body}
                )
                answers = {"/token": backend.token_answers, "/bind-noninteractive": backend.bind_answers}.get(self.path)
                if answers is None:
                    return self._send(404, b"not found", {})
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if answer[0] == "hang":  # never answers (until the test ends)
                    backend.release.wait(5)
                    return None
                status, payload, *rest = answer
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self._send(status, data, rest[0] if rest else {})

            def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = False  # server_close() joins every handler thread
        self.httpd.block_on_close = True
        self.scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-backend"
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.url("/token"), CLIENT_ID, CLIENT_SECRET)

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBackend]:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    before = set(threading.enumerate())
    server = FakeBackend()
    yield server
    server.close()
    assert set(threading.enumerate()) <= before, "the fake backend left threads running"


@pytest.fixture
def delays() -> list[float]:
    return []


@pytest.fixture
def policy(delays: list[float]) -> Policy:
    return Policy(attempts=3, timeout=0.3, backoff=0.01, max_delay=5.0, sleep=delays.append)


def run_bind(backend: FakeBackend, policy: Policy, **kwargs: Any) -> bindclient.Binding:
    return bindclient.bind(
        backend.url("/bind-noninteractive"),
        kwargs.pop("credentials", backend.credentials),
        CLUSTER_ID,
        APIS,
        policy=policy,
        **kwargs,
    )


# ------------------------------------------------------------------------------- success
def test_bind_sends_token_request_then_bearer_json_bind_request(backend, policy, delays):
    binding = run_bind(backend, policy)

    assert [r["path"] for r in backend.requests] == ["/token", "/bind-noninteractive"]
    token_call, bind_call = backend.requests
    assert token_call["method"] == "POST"
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_call["headers"]["Authorization"] == f"Basic {basic}"
    assert token_call["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert token_call["body"] == b"grant_type=client_credentials"

    assert bind_call["method"] == "POST"
    assert bind_call["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert bind_call["headers"]["Content-Type"] == "application/json"
    assert json.loads(bind_call["body"]) == {"clusterID": CLUSTER_ID, "apis": APIS}
    assert CLIENT_SECRET.encode() not in bind_call["body"]
    assert delays == []

    assert binding.namespace == CENTRAL_NAMESPACE
    assert binding.server == "https://central.example.com:6443"
    assert yaml.safe_load(binding.kubeconfig)["contexts"][0]["context"]["namespace"] == CENTRAL_NAMESPACE
    assert [e.name for e in binding.exports] == ["postgresqlinstances.anynines.com", "servicebindings.anynines.com"]
    sb = binding.exports[1]
    assert sb.versions == ("v1",) and list(sb.permission_claims) == CLAIMS and sb.request == "servicebindings-req"
    assert "sa-token" not in repr(binding)  # the kubeconfig never shows in a repr or log line


def test_scope_is_sent_when_configured(backend, policy):
    creds = Credentials(backend.url("/token"), CLIENT_ID, CLIENT_SECRET, scope="openid kube-bind")
    run_bind(backend, policy, credentials=creds)
    assert backend.calls("/token")[0]["body"] == b"grant_type=client_credentials&scope=openid+kube-bind"


# ------------------------------------------------------------------------------- retries
def test_503_is_retried_with_backoff_then_succeeds(backend, policy, delays):
    backend.bind_answers[:0] = [(503, {"error": "unavailable"})]
    binding = run_bind(backend, policy)
    assert len(backend.calls("/bind-noninteractive")) == 2
    assert delays == [0.01]
    assert binding.namespace == CENTRAL_NAMESPACE


def test_429_honours_retry_after_seconds(backend, policy, delays):
    backend.bind_answers[:0] = [(429, {"error": "slow down"}, {"Retry-After": "2"})]
    run_bind(backend, policy)
    assert len(backend.calls("/bind-noninteractive")) == 2
    assert delays == [2.0]


def test_retry_after_is_capped_and_accepts_http_dates():
    p = Policy(max_delay=5.0, backoff=1.0)
    assert p.delay(1, 120.0) == 5.0
    assert p.delay(3, None) == 4.0
    assert p.delay(4, None) == 5.0
    future = format_datetime(time_in(30), usegmt=True)
    assert 25 <= bindclient._retry_after(future) <= 31
    assert bindclient._retry_after("soon") is None


def time_in(seconds: float):
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(seconds=seconds)


def test_5xx_forever_gives_up_after_the_bounded_attempts(backend, policy, delays):
    backend.bind_answers[:] = [(502, b"bad gateway")]
    with pytest.raises(BindError, match=r"failed after 3 attempts \(last: HTTP 502"):
        run_bind(backend, policy)
    assert len(backend.calls("/bind-noninteractive")) == 3
    assert delays == [0.01, 0.02]  # exponential backoff between the attempts, none after the last


def test_token_endpoint_5xx_is_retried_too(backend, policy, delays):
    backend.token_answers[:0] = [(500, {"error": "server_error"})]
    run_bind(backend, policy)
    assert len(backend.calls("/token")) == 2 and delays == [0.01]


def test_timeout_bounds_every_request(backend, delays):
    # The backend holds each request for 5 s and then closes it unanswered: only the client's own
    # timeout ends an attempt as "timed out".
    backend.bind_answers[:] = [("hang",)]
    with pytest.raises(BindError, match=r"failed after 2 attempts \(last: timed out, timeout 0.2s each\)"):
        run_bind(backend, Policy(attempts=2, timeout=0.2, backoff=0.01, sleep=delays.append))
    assert len(backend.calls("/bind-noninteractive")) == 2 and delays == [0.01]


def test_an_unreachable_idp_is_retried_then_reported(policy, delays):
    with pytest.raises(
        BindError,
        match=r"^token request to http://127.0.0.1:9/token failed after 3 attempts \(last: connection failed .*\): "
        r"the IdP at 127.0.0.1:9 did not answer; check oidc.tokenUrl, ",
    ):
        bindclient.bind(
            "http://127.0.0.1:9/bind-noninteractive",
            Credentials("http://127.0.0.1:9/token", "c", "s"),
            CLUSTER_ID,
            APIS,
            policy=policy,
        )
    assert len(delays) == 2


def test_an_unreachable_backend_is_retried_then_reported(backend, policy, delays):
    with pytest.raises(BindError) as err:
        bindclient.bind("http://127.0.0.1:9/bind-noninteractive", backend.credentials, CLUSTER_ID, APIS, policy=policy)
    assert re.fullmatch(
        r"bind request to http://127.0.0.1:9/bind-noninteractive failed after 3 attempts \(last: connection failed "
        r"\(.*\), timeout 0.3s each\): the kube-bind backend at 127.0.0.1:9 did not answer; check the central "
        r"stack's bindNonInteractiveUrl output, that the kube-bind backend is running, and that this machine "
        r"reaches it \(DNS, firewall, proxy\); then run `pulumi up` again",
        str(err.value),
    ), str(err.value)
    assert delays == [0.01, 0.02]


# ------------------------------------------------------------------------------- fail at once
def refusal(backend: FakeBackend, policy: Policy, **kwargs: Any) -> str:
    """The message of a bind that fails; no credential is in it."""
    with pytest.raises(BindError) as err:
        run_bind(backend, policy, **kwargs)
    message = str(err.value)
    assert CLIENT_SECRET not in message and TOKEN not in message
    return message


def test_a_401_of_the_backend_names_the_backend_the_client_and_the_audience(backend, policy, delays):
    backend.bind_answers[:] = [(401, {"error": "invalid token"})]
    assert refusal(backend, policy) == (
        f"bind request to {backend.url('/bind-noninteractive')} was refused by the kube-bind backend (HTTP 401) "
        f"for client '{CLIENT_ID}' (it answered '{{\"error\": \"invalid token\"}}'): it did not accept the "
        "access token from oidc.tokenUrl; likely the IdP does not add the audience 'kube-bind' to this client's "
        "tokens (add an audience mapper to the client), or oidc.tokenUrl belongs to another realm than the "
        "central stack's oidc.issuerUrl; check both"
    )
    assert len(backend.calls("/bind-noninteractive")) == 1 and delays == []


def test_a_403_of_the_backend_says_the_token_is_valid_but_not_allowed(backend, policy, delays):
    backend.bind_answers[:] = [(403, {"error": "forbidden"})]
    message = refusal(backend, policy)
    assert message.startswith(
        f"bind request to {backend.url('/bind-noninteractive')} was refused by the kube-bind backend (HTTP 403) "
        f"for client '{CLIENT_ID}' (it answered '{{\"error\": \"forbidden\"}}'): the token is valid but does "
        "not allow this bind; likely the IdP does not add the audience 'kube-bind'"
    )
    assert message.endswith("check both, and that no other client bound this clusterId")
    assert delays == []


def test_a_404_naming_an_api_says_the_backend_exports_no_such_api(backend, policy, delays):
    backend.bind_answers[:] = [(404, {"error": "no APIServiceExportTemplate for servicebindings.anynines.com"})]
    message = refusal(backend, policy)
    assert (
        'was refused by the kube-bind backend (HTTP 404) (it answered \'{"error": "no APIServiceExportTemplate '
        "for servicebindings.anynines.com\"}'): it exports no servicebindings.anynines.com; bind only APIs of the "
        "central stack's bindingApis output (set apis), or enable the data service in the central stack"
    ) in message
    assert "postgresqlinstances" not in message.split("exports no")[1]
    assert delays == []


def test_rejected_token_fails_at_once_without_retries(backend, policy, delays):
    backend.token_answers[:] = [(403, {"error": "access_denied"})]
    assert "was refused by the IdP (HTTP 403, access_denied) for client 'acme-binder'" in refusal(backend, policy)
    assert backend.calls("/bind-noninteractive") == [] and delays == []


def test_bad_client_credentials_fail_at_the_token_endpoint(backend, policy, delays):
    backend.token_answers[:] = [(401, {"error": "invalid_client", "error_description": "bad secret"})]
    assert refusal(backend, policy) == (
        f"token request to {backend.url('/token')} was refused by the IdP (HTTP 401, invalid_client) for client "
        "'acme-binder': the client id or secret is wrong, or oidc.tokenUrl names another realm than the one the "
        "central backend trusts; check oidc.clientId and oidc.tokenUrl, and set the secret with "
        "`pulumi config set --secret --path oidc.clientSecret <secret>`"
    )
    assert backend.calls("/bind-noninteractive") == [] and delays == []


def test_client_without_client_credentials_grant_is_named(backend, policy):
    backend.token_answers[:] = [(400, {"error": "unauthorized_client"})]
    assert refusal(backend, policy).endswith(
        "(HTTP 400, unauthorized_client) for client 'acme-binder': the client id or secret is wrong, or oidc.tokenUrl "
        "names another realm than the one the central backend trusts; check oidc.clientId and oidc.tokenUrl, and set "
        "the secret with `pulumi config set --secret --path oidc.clientSecret <secret>`; if they are right, enable the "
        "client-credentials grant for this client (Keycloak: 'Service accounts roles')"
    )


def test_keycloak_wrong_secret_names_the_secret_the_client_and_the_token_url(backend, policy):
    # Keycloak answers a wrong client secret with 401 unauthorized_client, the code of a missing grant
    description = "Invalid client or Invalid client credentials"
    backend.token_answers[:] = [(401, {"error": "unauthorized_client", "error_description": description})]
    with pytest.raises(BindError) as err:
        run_bind(backend, policy)
    message = str(err.value)
    assert f"token request to {backend.credentials.token_url} was refused by the IdP (HTTP 401" in message
    assert f"for client '{CLIENT_ID}': the client id or secret is wrong" in message
    assert "enable the client-credentials grant" in message and CLIENT_SECRET not in message


def test_token_answer_without_access_token(backend, policy):
    backend.token_answers[:] = [(200, {"token_type": "Bearer"})]
    with pytest.raises(BindError, match="answered without an access_token"):
        run_bind(backend, policy)


def test_missing_endpoint_points_at_the_interactive_path(backend, policy, delays):
    with pytest.raises(BindError, match="backend has no /bind-noninteractive endpoint there; .*kubectlBindCommand"):
        bindclient.bind(backend.url("/nope"), backend.credentials, CLUSTER_ID, APIS, policy=policy)
    assert delays == []


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"<html>gateway</html>", "not JSON"),
        ([1, 2], "not a JSON object"),
        ({"requests": []}, "no kubeconfig"),
        ({"kubeconfig": "%%%", "requests": []}, "kubeconfig is not base64 of a kubeconfig"),
        ({"kubeconfig": base64.b64encode(b"hello").decode(), "requests": []}, "unusable kubeconfig"),
        (binding_response(namespace=None), "the kubeconfig's current context 'central' has no namespace"),
        ({**binding_response(), "requests": None}, "no requests list"),
        ({**binding_response(), "requests": [{"spec": {}}]}, r"requests\[0\] has no spec.resources"),
        (
            {**binding_response(), "requests": [{"spec": {"resources": [{"group": "x"}]}}]},
            r"requests\[0\].spec.resources\[0\] is not a resource",
        ),
    ],
)
def test_malformed_responses_fail_at_once(backend, policy, delays, payload, why):
    backend.bind_answers[:] = [(200, payload)]
    with pytest.raises(BindError, match=f"malformed binding response from http://127.0.0.1:.*: {why}"):
        run_bind(backend, policy)
    assert len(backend.calls("/bind-noninteractive")) == 1 and delays == []


def test_an_api_the_backend_left_out_is_an_error(backend, policy):
    backend.bind_answers[:] = [(200, binding_response(APIS[:1]))]
    binding = run_bind(backend, policy)
    with pytest.raises(
        BindError,
        match="no export request for servicebindings.anynines.com .it returned: postgresqlinstances.anynines.com",
    ):
        binding.exports_for(APIS)
    assert [e.resource for e in binding.exports_for(APIS[:1])] == ["postgresqlinstances"]


def test_redirects_are_not_followed(backend, policy):
    backend.bind_answers[:] = [(307, b"", {"Location": "http://elsewhere.example.com/"})]
    with pytest.raises(
        BindError,
        match=r"redirected by the kube-bind backend \(HTTP 307 to http://elsewhere.example.com/\); set the central "
        r"stack's bindNonInteractiveUrl output to the final URL",
    ):
        run_bind(backend, policy)


# ------------------------------------------------------------------------------- TLS
@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a throw-away certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    return cert, key


def test_a_tls_failure_names_the_ca_in_use_and_is_not_retried(self_signed, backend, policy, delays, monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = FakeBackend(tls=self_signed)  # the backend over TLS; the IdP is `backend`, plain HTTP
    url = server.url("/bind-noninteractive")

    def bind_with(ca_pem: str | None) -> bindclient.Binding:
        return bindclient.bind(url, backend.credentials, CLUSTER_ID, APIS, ca_pem=ca_pem, policy=policy)

    try:
        with pytest.raises(BindError) as err:
            bind_with(None)
        assert str(err.value).startswith(f"bind request to {url}: TLS verification of the kube-bind backend's ")
        assert str(err.value).endswith(
            "against the system's trusted CAs (the central stack exports no tlsCaPem); if the central backend "
            "serves a self-signed certificate (no backend.host), the central stack must export its CA as tlsCaPem; "
            "with backend.host, check that its certificate is issued for that host"
        )
        with pytest.raises(BindError) as err:
            bind_with(PLACEHOLDER_CA_PEM)  # another CA than the one that issued the backend's certificate
        fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(PLACEHOLDER_CA_PEM)).hexdigest()[:16]
        assert (
            f"against the central stack's tlsCaPem (CA 'placeholder-ca' (SHA-256 {fingerprint}…)) and the "
            "system's trusted CAs; the backend's certificate is not issued by these CAs"
        ) in str(err.value)
        assert delays == []  # a certificate problem is not retried
        assert len(server.calls("/bind-noninteractive")) == 0
        assert bind_with(self_signed[0].read_text()).namespace == CENTRAL_NAMESPACE
    finally:
        server.close()


def test_a_tls_failure_at_the_idp_names_the_idp(self_signed, monkeypatch, policy):
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = FakeBackend(tls=self_signed)
    try:
        with pytest.raises(BindError, match=r"^token request to https://127.0.0.1:\d+/token: TLS verification of "
                           r"the IdP's certificate failed .*the IdP's certificate must be issued for the host of "
                           r"oidc.tokenUrl by a CA this machine trusts$"):  # fmt: skip
            run_bind(server, policy)
    finally:
        server.close()


def test_ca_is_added_to_the_system_trust_and_a_bad_one_is_reported():
    ctx = bindclient._context(PLACEHOLDER_CA_PEM)
    assert any(dict(x[0] for x in c["subject"]).get("commonName") == "placeholder-ca" for c in ctx.get_ca_certs())
    with pytest.raises(BindError, match="tlsCaPem is not a usable PEM certificate"):
        bindclient._context("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
