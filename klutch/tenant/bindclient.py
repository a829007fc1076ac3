"""The non-interactive kube-bind client: client-credentials token → POST /bind-noninteractive → binding.

What the manual procedure's closed `helper bootstrap-env` does over HTTP (public equivalent: a9s-cli-v2
`klutch/bind_noninteractive.go`), written with the standard library only (`urllib`, `ssl`), so
that the Pulumi dynamic provider process needs nothing beyond the program's own dependencies:

1. OAuth2 client-credentials grant at the IdP's token URL (client id/secret as HTTP Basic, RFC 6749
   §2.3.1; optional scope) → access token.
2. `POST <bindNonInteractiveUrl>` with `Authorization: Bearer <token>` and the JSON body
   `{"clusterID": "...", "apis": [{"group": ..., "resource": ...}, ...]}`.
3. The BindingResponse: `kubeconfig` is base64 of the kubeconfig bytes (a Go `[]byte`), scoped to
   the tenant's namespace on the central cluster (its current context's namespace); `requests[]`
   are APIServiceExportRequests whose `spec.resources[]` say what each API exports and which
   permission claims the tenant must accept.

Every request has a timeout. Connection errors, timeouts, HTTP 5xx and 429 are retried a bounded
number of times with exponential backoff (429/503 honour `Retry-After`). A 401/403, any other 4xx,
a TLS verification failure or a malformed response fails at once with a message that says what to
check. No message ever contains the client secret, the token or the kubeconfig.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from klutch.config.kubeconfig import KubeconfigError, KubeconfigFacts, parse_kubeconfig
from klutch.kube.names import qualified_resource

USER_AGENT = "klutch-tenant-bind/1"
_AUTH_CHECKS = (
    "likely the IdP does not add the audience 'kube-bind' to this client's tokens (add an audience mapper to "
    "the client), or oidc.tokenUrl belongs to another realm than the central stack's oidc.issuerUrl; check both"
)


class BindError(RuntimeError):
    """The bind failed; the message says what was refused, by whom, the likely cause and the fix."""


@dataclass(frozen=True)
class Endpoint:
    """One side of the bind, as messages name it."""

    request: str  # "token request", "bind request"
    url: str
    who: str  # who answers: "the IdP", "the kube-bind backend"
    setting: str  # the setting that names the URL
    backend: bool  # the kube-bind backend (whose CA the central stack may export), not the IdP

    @property
    def what(self) -> str:
        return f"{self.request} to {self.url}"


def _token_endpoint(url: str) -> Endpoint:
    return Endpoint("token request", url, "the IdP", "oidc.tokenUrl", backend=False)


def _bind_endpoint(url: str) -> Endpoint:
    return Endpoint(
        "bind request", url, "the kube-bind backend", "the central stack's bindNonInteractiveUrl output", backend=True
    )


@dataclass(frozen=True)
class Credentials:
    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None


@dataclass(frozen=True)
class Policy:
    """Timeouts and retries. Tests inject a short timeout and a recording `sleep`."""

    attempts: int = 5  # per HTTP exchange (token, bind), including the first
    timeout: float = 30.0  # seconds, for connect and for each read
    backoff: float = 2.0  # first retry delay in seconds; doubles per retry
    max_delay: float = 60.0  # cap for backoff and for a server's Retry-After
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None) -> float:
        wanted = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
        return max(0.0, min(self.max_delay, wanted))


@dataclass(frozen=True)
class Export:
    """One exported API of the response: what its APIServiceBinding and export request need."""

    group: str
    resource: str
    versions: tuple[str, ...]
    permission_claims: tuple[Mapping[str, Any], ...]
    parameters: Mapping[str, Any] | None
    request: str  # name of the export request it came in ("" when the response gave none)

    @property
    def name(self) -> str:
        return qualified_resource(self.resource, self.group)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "resource": self.resource,
            "versions": list(self.versions),
            "permissionClaims": [dict(c) for c in self.permission_claims],
            "parameters": dict(self.parameters) if self.parameters is not None else None,
            "request": self.request,
        }


@dataclass(frozen=True)
class Binding:
    """A parsed BindingResponse."""

    kubeconfig: str = field(repr=False)  # the provider-side kubeconfig (the manual procedure's provider.kfg.yaml)
    namespace: str  # the tenant's namespace on the central cluster
    server: str
    exports: tuple[Export, ...]

    def exports_for(self, apis: Iterable[Mapping[str, str]]) -> tuple[Export, ...]:
        """The export of each requested API, in request order; BindError if the backend left one out."""
        by_key = {(e.group, e.resource): e for e in self.exports}
        wanted = [(a.get("group", ""), a["resource"]) for a in apis]
        missing = [qualified_resource(r, g) for g, r in wanted if (g, r) not in by_key]
        if missing:
            returned = ", ".join(e.name for e in self.exports) or "none"
            raise BindError(
                f"the backend returned no export request for {', '.join(missing)} (it returned: {returned}); "
                "check that the central stack exports these APIs (APIServiceExportTemplates)"
            )
        return tuple(by_key[k] for k in wanted)


# ------------------------------------------------------------------------------- the flow
def bind(
    url: str,
    credentials: Credentials,
    cluster_id: str,
    apis: Iterable[Mapping[str, str]],
    *,
    ca_pem: str | None = None,
    policy: Policy = Policy(),
) -> Binding:
    """Token, bind request, parsed response. Raises BindError."""
    apis = [{"group": a.get("group", ""), "resource": a["resource"]} for a in apis]
    token = fetch_token(credentials, ca_pem=ca_pem, policy=policy)
    body = json.dumps({"clusterID": cluster_id, "apis": apis}).encode()
    end = _bind_endpoint(url)
    request = _post(url, body, content_type="application/json", authorization=f"Bearer {token}")
    status, answer = _exchange(request, end, ca_pem, policy)
    _check_bind_answer(end, status, answer, credentials.client_id, apis)
    return parse_response(answer, url)


def fetch_token(credentials: Credentials, *, ca_pem: str | None = None, policy: Policy = Policy()) -> str:
    """An access token from the client-credentials grant."""
    form = {"grant_type": "client_credentials"}
    if credentials.scope:
        form["scope"] = credentials.scope
    user, password = (urllib.parse.quote(v, safe="") for v in (credentials.client_id, credentials.client_secret))
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    end = _token_endpoint(credentials.token_url)
    status, body = _exchange(
        _post(
            credentials.token_url,
            urllib.parse.urlencode(form).encode(),
            content_type="application/x-www-form-urlencoded",
            authorization=f"Basic {basic}",
        ),
        end,
        ca_pem,
        policy,
    )
    _check_token_answer(end, status, body, credentials.client_id)
    return _access_token(end, body)


def _check_token_answer(end: Endpoint, status: int, body: bytes, client_id: str) -> None:
    """BindError for a token request the IdP refused or failed, saying what to check."""
    if status in (400, 401, 403):
        error = _oauth_error(body)
        hint = (
            "the client id or secret is wrong, or oidc.tokenUrl names another realm than the one the central "
            "backend trusts; check oidc.clientId and oidc.tokenUrl, and set the secret with "
            "`pulumi config set --secret --path oidc.clientSecret <secret>`"
        )
        if error in ("unauthorized_client", "unsupported_grant_type"):  # Keycloak: also for a wrong secret
            hint += (
                "; if they are right, enable the client-credentials grant for this client "
                "(Keycloak: 'Service accounts roles')"
            )
        raise BindError(
            f"{end.what} was refused by {end.who} (HTTP {status}{', ' + error if error else ''}) "
            f"for client '{client_id}': {hint}"
        )
    if not 200 <= status < 300:
        raise BindError(
            f"{end.what} failed at {end.who} (HTTP {status}): {_excerpt(body)}; check {end.setting} "
            "(the IdP's OAuth2 token endpoint)"
        )


def _access_token(end: Endpoint, body: bytes) -> str:
    """The access token of a token response."""
    try:
        doc = json.loads(body)
        token = doc["access_token"]
        if not isinstance(token, str) or not token:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise BindError(
            f"{end.what} answered without an access_token; check that {end.setting} is the IdP's OAuth2 token endpoint"
        ) from None
    return token


def _check_bind_answer(end: Endpoint, status: int, answer: bytes, client_id: str, apis: list[dict[str, str]]) -> None:
    """BindError for a bind request the backend did not answer with a binding, saying what to check."""
    said = f" (it answered {_excerpt(answer)})"
    if status == 401:
        raise BindError(
            f"{end.what} was refused by {end.who} (HTTP 401) for client '{client_id}'{said}: it did not accept "
            f"the access token from oidc.tokenUrl; {_AUTH_CHECKS}"
        )
    if status == 403:
        raise BindError(
            f"{end.what} was refused by {end.who} (HTTP 403) for client '{client_id}'{said}: the token is valid "
            f"but does not allow this bind; {_AUTH_CHECKS}, and that no other client bound this clusterId"
        )
    if status == 404:
        unknown = [qualified_resource(a["resource"], a["group"]) for a in apis if a["resource"].encode() in answer]
        if unknown:
            raise BindError(
                f"{end.what} was refused by {end.who} (HTTP 404){said}: it exports no {', '.join(unknown)}; "
                "bind only APIs of the central stack's bindingApis output (set apis), or enable the data "
                "service in the central stack"
            )
        raise BindError(
            f"{end.what} failed (HTTP 404){said}: {end.who} has no /bind-noninteractive endpoint there; check "
            f"{end.setting}, or bind interactively with its kubectlBindCommand output"
        )
    if not 200 <= status < 300:
        raise BindError(f"{end.what} failed at {end.who} (HTTP {status}){said}; check {end.setting}")


def parse_response(body: bytes, url: str = "the backend") -> Binding:
    """The BindingResponse: kubeconfig (base64), its namespace, and one Export per exported API."""

    def malformed(why: str) -> BindError:
        return BindError(
            f"malformed binding response from {url}: {why}; check that bindNonInteractiveUrl "
            "points at the kube-bind backend's /bind-noninteractive"
        )

    try:
        doc = json.loads(body)
    except ValueError:
        raise malformed(f"not JSON ({_excerpt(body)})") from None
    if not isinstance(doc, dict):
        raise malformed("not a JSON object")
    kubeconfig, facts = _kubeconfig(doc.get("kubeconfig"), malformed)
    requests = doc.get("requests")
    if not isinstance(requests, list):
        raise malformed("no requests list")
    exports = [export for i, request in enumerate(requests) for export in _exports(i, request, malformed)]
    return Binding(kubeconfig=kubeconfig, namespace=facts.namespace, server=facts.server, exports=tuple(exports))


def _kubeconfig(encoded: Any, malformed: Callable[[str], BindError]) -> tuple[str, KubeconfigFacts]:
    """The response's kubeconfig (base64 of the bytes), which must name the tenant's namespace."""
    if not isinstance(encoded, str) or not encoded:
        raise malformed("no kubeconfig")
    try:
        kubeconfig = base64.b64decode(encoded, validate=True).decode()
        facts = parse_kubeconfig(kubeconfig)
    except (binascii.Error, UnicodeDecodeError):
        raise malformed("kubeconfig is not base64 of a kubeconfig") from None
    except KubeconfigError as e:
        raise malformed(f"unusable kubeconfig ({e})") from None
    if not facts.namespace:
        raise malformed(
            f"the kubeconfig's current context '{facts.context}' has no namespace (the tenant's "
            "namespace on the central cluster)"
        )
    return kubeconfig, facts


def _exports(i: int, request: Any, malformed: Callable[[str], BindError]) -> list[Export]:
    """The exports of `requests[i]`, one per resource of its spec."""
    spec = request.get("spec") if isinstance(request, dict) else None
    resources = spec.get("resources") if isinstance(spec, dict) else None
    if not isinstance(resources, list) or not resources:
        raise malformed(f"requests[{i}] has no spec.resources")
    metadata = request.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    parameters = spec.get("parameters")
    exports = []
    for j, res in enumerate(resources):
        claims = (res.get("permissionClaims") or []) if isinstance(res, dict) else None
        if (
            not isinstance(res, dict)
            or not isinstance(res.get("resource"), str)
            or not res["resource"]
            or not isinstance(res.get("group", ""), str)
            or not isinstance(res.get("versions") or [], list)
            or not isinstance(claims, list)
            or not all(isinstance(c, dict) for c in claims)
        ):
            raise malformed(
                f"requests[{i}].spec.resources[{j}] is not a resource with group, resource, "
                "versions and permissionClaims"
            )
        exports.append(
            Export(
                group=res.get("group", ""),
                resource=res["resource"],
                versions=tuple(res.get("versions") or ()),
                permission_claims=tuple(claims),
                parameters=parameters if isinstance(parameters, dict) else None,
                request=name if isinstance(name, str) else "",
            )
        )
    return exports


# ------------------------------------------------------------------------------- HTTP
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET and may carry credentials elsewhere: report it instead."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> None:
        return None


def _post(url: str, data: bytes, *, content_type: str, authorization: str) -> Callable[[], urllib.request.Request]:
    """A maker of the same POST request (JSON answer expected), one fresh Request per attempt."""
    headers = {
        "Authorization": authorization,
        "Content-Type": content_type,
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    return lambda: urllib.request.Request(url, data=data, method="POST", headers=headers)


def _context(ca_pem: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_pem:
        try:
            ctx.load_verify_locations(cadata=ca_pem)  # the central backend's self-signed CA, besides the system's
        except (ssl.SSLError, ValueError) as e:
            raise BindError(f"the central stack's tlsCaPem is not a usable PEM certificate ({e})") from None
    return ctx


def _trusted(ca_pem: str | None) -> str:
    """The CAs a request trusts, as messages name them: tlsCaPem's by subject and SHA-256 fingerprint."""
    if not ca_pem:
        return "the system's trusted CAs (the central stack exports no tlsCaPem)"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=ca_pem)
    subjects = [dict(rdn[0] for rdn in c.get("subject", ())) for c in ctx.get_ca_certs()]
    fingerprints = [hashlib.sha256(der).hexdigest()[:16] for der in ctx.get_ca_certs(binary_form=True)]
    named = ", ".join(
        f"{s.get('commonName', '?')!r} (SHA-256 {f}…)" for s, f in zip(subjects, fingerprints, strict=True)
    )
    return f"the central stack's tlsCaPem (CA {named}) and the system's trusted CAs"


def _tls_failure(end: Endpoint, reason: ssl.SSLError, ca_pem: str | None) -> BindError:
    if not end.backend:
        fix = f"the IdP's certificate must be issued for the host of {end.setting} by a CA this machine trusts"
    elif ca_pem:
        fix = (
            "the backend's certificate is not issued by these CAs for this host: check on the central cluster that "
            "the backend's certificate (cert-manager Certificate) is Ready and issued by the stack's CA"
        )
    else:
        fix = (
            "if the central backend serves a self-signed certificate (no backend.host), the central stack must "
            "export its CA as tlsCaPem; with backend.host, check that its certificate is issued for that host"
        )
    return BindError(
        f"{end.what}: TLS verification of {end.who}'s certificate failed ({reason}) against {_trusted(ca_pem)}; {fix}"
    )


def _exchange(
    make: Callable[[], urllib.request.Request], end: Endpoint, ca_pem: str | None, policy: Policy
) -> tuple[int, bytes]:
    """(status, body) of one HTTP exchange, retrying transient failures; non-transient statuses are returned."""
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=_context(ca_pem)), _NoRedirect())
    last = ""
    for attempt in range(1, policy.attempts + 1):
        retry_after: float | None = None
        try:
            with opener.open(make(), timeout=policy.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            body = _read(e)
            if e.code != 429 and e.code < 500:
                if 300 <= e.code < 400:
                    raise BindError(
                        f"{end.what} was redirected by {end.who} (HTTP {e.code} to {e.headers.get('Location')}); "
                        f"set {end.setting} to the final URL"
                    ) from None
                return e.code, body
            last = f"HTTP {e.code}"
            retry_after = _retry_after(e.headers.get("Retry-After"))
        except urllib.error.URLError as e:
            if isinstance(e.reason, ssl.SSLError):
                raise _tls_failure(end, e.reason, ca_pem) from None
            last = "timed out" if isinstance(e.reason, TimeoutError) else f"connection failed ({e.reason})"
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
            last = "timed out" if isinstance(e, TimeoutError) else f"connection failed ({e})"
        if attempt < policy.attempts:
            policy.sleep(policy.delay(attempt, retry_after))
    host = urllib.parse.urlsplit(end.url).netloc
    raise BindError(
        f"{end.what} failed after {policy.attempts} attempts (last: {last}, timeout {policy.timeout:g}s each): "
        f"{end.who} at {host} did not answer; check {end.setting}, that {end.who} is running, and that this "
        "machine reaches it (DNS, firewall, proxy); then run `pulumi up` again"
    )


def _read(e: urllib.error.HTTPError) -> bytes:
    try:
        return e.read()
    except (OSError, http.client.HTTPException):
        return b""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _oauth_error(body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    return error if isinstance(error, str) and error.replace("_", "").isalnum() else ""


def _excerpt(body: bytes, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return repr(text[:limit] + ("…" if len(text) > limit else "")) if text else "empty body"
