"""A test double of the kube-bind backend's non-interactive bind, for the tenant project's real-engine test.

HTTPS on 127.0.0.1 (a random port) with its own self-signed certificate (which the central stack's
`tlsCaPem` output hands to the tenant), in a thread of the test process, stopped by its context manager:

- `POST /token`: the IdP's OAuth2 client-credentials grant (client id and secret as HTTP Basic, or in
  the form); answers `{"access_token", "token_type": "Bearer", "expires_in": 300}`.
- `POST /bind-noninteractive`: checks the bearer token, then does on the CENTRAL cluster what the
  backend does for a new tenant: namespace `cluster-<clusterID>`, a ServiceAccount with a Role for the
  kube-bind objects the tenant program writes there, and a token Secret filled by the real token
  controller. It answers a BindingResponse: `kubeconfig` (base64) reaching the central API server as
  that ServiceAccount with the tenant namespace as its context's namespace, and one
  APIServiceExportRequest per requested API (`requests[]`, the shape klutch.tenant.bindclient parses).
- A small controller (what the backend's reconciler does): every APIServiceNamespace in a tenant
  namespace gets its central namespace, `<tenant namespace>-<name>`, created and written to
  `status.namespace`.

Failure modes: `fail_times_with(503, n)` answers the next n bind requests with 503; `always(401)`
answers every bind request with 401. `bind_requests` records each bind request's JSON body.

With `token_check` (a real IdP's tokens, e.g. `klutch.sandbox.keycloak.TokenCheck`), a bearer token is
accepted when the check returns its claims (recorded in `verified`) and refused with 401 naming why
when it raises ValueError (recorded in `refused`); the double's own `/token` then plays no part.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from klutch import catalog
from klutch.sandbox.controlplane import ControlPlane, openssl

TOKEN_WAIT = 60.0
PERIOD = 0.5


def serving_certificate(directory: Path) -> None:
    """ca.crt/ca.key and server.crt/server.key (SAN IP:127.0.0.1) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=fake-kube-bind-ca",
            cwd=directory)  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=directory)
    (directory / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-out", "server.crt", "-extfile", "server.ext", cwd=directory)  # fmt: skip


class FakeBackend:
    """The backend double; `central` is the central cluster it creates the tenants' namespaces on."""

    def __init__(
        self,
        central: ControlPlane,
        workdir: Path,
        client_id: str,
        client_secret: str,
        release: str = catalog.DEFAULT_RELEASE,
        token_check: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self.central = central
        self.token_check = token_check
        self.verified: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.client_id, self.client_secret = client_id, client_secret
        self.release = catalog.RELEASES[release]
        self.pki = workdir / "fake-backend-pki"
        serving_certificate(self.pki)
        self.tokens: set[str] = set()
        self.bind_requests: list[dict[str, Any]] = []
        self.token_requests = 0
        self.errors: list[str] = []
        self._failures: list[int] = []  # statuses of the next bind requests
        self._always: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    path = urllib.parse.urlparse(self.path).path
                    if path == "/token":
                        status, answer = backend._token(self.headers.get("Authorization", ""), body)
                    elif path == "/bind-noninteractive":
                        status, answer = backend._bind(self.headers.get("Authorization", ""), body)
                    else:
                        status, answer = 404, {"error": "not found"}
                except Exception as e:  # the test reads `errors`; the client sees a 500
                    backend.errors.append(f"{self.path}: {e!r}")
                    status, answer = 500, {"error": str(e)}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pki / "server.crt"), str(self.pki / "server.key"))
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._threads = [
            threading.Thread(target=self._server.serve_forever, name="fake-backend", daemon=True),
            threading.Thread(target=self._reconcile_namespaces, name="fake-backend-ns", daemon=True),
        ]

    # ------------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def bind_url(self) -> str:
        return f"{self.url}/bind-noninteractive"

    @property
    def ca_pem(self) -> str:
        return (self.pki / "ca.crt").read_text()

    # ------------------------------------------------------------------ failure modes
    def fail_times_with(self, status: int, times: int) -> None:
        with self._lock:
            self._failures = [status] * times

    def always(self, status: int | None) -> None:
        """Every bind request answers `status` (None: back to normal)."""
        with self._lock:
            self._always = status

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeBackend:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    # ------------------------------------------------------------------ endpoints
    def _token(self, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self.token_requests += 1
        form = dict(urllib.parse.parse_qsl(body.decode()))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            client_id, client_secret = urllib.parse.unquote(user), urllib.parse.unquote(password)
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            return 401, {"error": "invalid_client"}
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300}

    def _bind(self, authorization: str, body: bytes) -> tuple[int, dict[str, Any]]:
        request = json.loads(body)
        self.bind_requests.append(request)
        with self._lock:
            forced = self._always if self._always is not None else (self._failures.pop(0) if self._failures else None)
        if forced is not None:
            return forced, {"error": f"forced HTTP {forced}"}
        token = authorization.removeprefix("Bearer ")
        if not authorization.startswith("Bearer "):
            return 401, {"error": "no bearer token"}
        if self.token_check is not None:
            try:
                self.verified.append(self.token_check(token))
            except ValueError as e:
                self.refused.append(str(e))
                return 401, {"error": f"invalid token: {e}"}
        elif token not in self.tokens:
            return 401, {"error": "invalid token"}
        cluster_id = request["clusterID"]
        namespace = f"cluster-{cluster_id}"
        kubeconfig = self._tenant_credentials(namespace)
        group, version = self.release.kube_bind_group, self.release.kube_bind_version
        requests = [
            {
                "apiVersion": f"{group}/{version}",
                "kind": "APIServiceExportRequest",
                "metadata": {"name": f"{api['resource']}.{api['group']}", "namespace": namespace},
                "spec": {
                    "resources": [
                        {
                            "group": api["group"],
                            "resource": api["resource"],
                            "versions": ["v1"],
                            "permissionClaims": [
                                {"group": "", "resource": "secrets", "version": "v1", "selector": {"owner": "Provider"}}
                            ]
                            if api["resource"] == "servicebindings"
                            else [],
                        }
                    ]
                },
            }
            for api in request["apis"]
        ]
        authentication = {"oauth2CodeGrant": {"sessionID": secrets.token_hex(8), "id": cluster_id}}
        encoded = base64.b64encode(kubeconfig.encode()).decode()
        return 200, {"kubeconfig": encoded, "requests": requests, "authentication": authentication}

    # ------------------------------------------------------------------ the central side
    def _tenant_credentials(self, namespace: str) -> str:
        """The tenant's namespace, ServiceAccount, Role and token on the central cluster; its kubeconfig."""
        plane, group = self.central, self.release.kube_bind_group
        plane.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        meta = {"name": "kube-binder", "namespace": namespace}
        plane.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta})
        rules = [
            {
                "apiGroups": [group],
                "resources": ["apiserviceexportrequests", "apiservicenamespaces"],
                "verbs": ["create", "get", "list", "watch", "patch", "update", "delete"],
            },
            {
                "apiGroups": [group],
                "resources": ["apiserviceexportrequests/status", "apiservicenamespaces/status"],
                "verbs": ["get"],
            },  # fmt: skip
        ]
        plane.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules})
        plane.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": meta,
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kube-binder"},
                "subjects": [{"kind": "ServiceAccount", "name": "kube-binder", "namespace": namespace}],
            }
        )
        plane.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": {
                    "name": "kube-binder-token",
                    "namespace": namespace,
                    "annotations": {"kubernetes.io/service-account.name": "kube-binder"},
                },
            }
        )
        return self._kubeconfig(namespace, self._await_token(namespace))

    def _await_token(self, namespace: str) -> str:
        """The token the token controller writes into the tenant's `kube-binder-token` Secret."""
        deadline = time.monotonic() + TOKEN_WAIT
        while True:
            data = (
                self.central.api("GET", f"/api/v1/namespaces/{namespace}/secrets/kube-binder-token").get("data") or {}
            )
            if data.get("token"):
                return base64.b64decode(data["token"]).decode()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the token controller did not fill {namespace}/kube-binder-token")
            time.sleep(0.2)

    def _kubeconfig(self, namespace: str, token: str) -> str:
        """A kubeconfig of the central cluster for the tenant's ServiceAccount token, in its namespace."""
        plane = self.central
        ca = base64.b64encode(plane.ca_pem.encode()).decode()
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "central",
                "clusters": [
                    {"name": "central", "cluster": {"server": plane.server, "certificate-authority-data": ca}}
                ],
                "users": [{"name": namespace, "user": {"token": token}}],
                "contexts": [
                    {"name": "central", "context": {"cluster": "central", "user": namespace, "namespace": namespace}}
                ],  # fmt: skip
            }
        )

    def _reconcile_namespaces(self) -> None:
        group, version = self.release.kube_bind_group, self.release.kube_bind_version
        while not self._stop.wait(PERIOD):
            try:
                items = self.central.api("GET", f"/apis/{group}/{version}/apiservicenamespaces")["items"]
            except (OSError, urllib.error.HTTPError, ValueError):
                continue  # the CRD is not there yet
            for item in items:
                meta = item["metadata"]
                if (item.get("status") or {}).get("namespace") or meta.get("deletionTimestamp"):
                    continue
                target = f"{meta['namespace']}-{meta['name']}"
                try:
                    self.central.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})
                    self.central.api(
                        "PATCH",
                        f"/apis/{group}/{version}/namespaces/{meta['namespace']}/apiservicenamespaces/"
                        f"{meta['name']}/status",
                        {"status": {"namespace": target}},
                        content_type="application/merge-patch+json",
                    )
                except (OSError, AssertionError, urllib.error.HTTPError) as e:
                    self.errors.append(f"APIServiceNamespace {meta['namespace']}/{meta['name']}: {e!r}")
