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

from klutch.central.names import qualified_resource
from klutch.config.kubeconfig import KubeconfigError, KubeconfigFacts, parse_kubeconfig

USER_AGENT = "klutch-tenant-bind/1"
_AUTH_CHECKS = (
    "check (1) oidc.clientId / oidc.clientSecret, (2) that the IdP adds the audience 'kube-bind' to this "
    "client's tokens (an audience mapper), and (3) that the client may use the client-credentials grant "
    "(Keycloak: 'Service accounts roles' enabled)"
)


class BindError(RuntimeError):
    """The bind failed; the message says what happened and what to check."""


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
    what = f"bind request to {url}"
    request = _post(url, body, content_type="application/json", authorization=f"Bearer {token}")
    status, answer = _exchange(request, what, ca_pem, policy)
    _check_bind_answer(what, status, answer, credentials.client_id)
    return parse_response(answer, url)


def fetch_token(credentials: Credentials, *, ca_pem: str | None = None, policy: Policy = Policy()) -> str:
    """An access token from the client-credentials grant."""
    form = {"grant_type": "client_credentials"}
    if credentials.scope:
        form["scope"] = credentials.scope
    user, password = (urllib.parse.quote(v, safe="") for v in (credentials.client_id, credentials.client_secret))
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    what = f"token request to {credentials.token_url}"
    status, body = _exchange(
        _post(
            credentials.token_url,
            urllib.parse.urlencode(form).encode(),
            content_type="application/x-www-form-urlencoded",
            authorization=f"Basic {basic}",
        ),
        what,
        ca_pem,
        policy,
    )
    _check_token_answer(what, status, body, credentials.client_id)
    return _access_token(what, body)


def _check_token_answer(what: str, status: int, body: bytes, client_id: str) -> None:
    """BindError for a token request the IdP refused or failed, saying what to check."""
    if status in (400, 401, 403):
        error = _oauth_error(body)
        hint = (
            "check oidc.clientId and oidc.clientSecret, and that oidc.tokenUrl is the token endpoint "
            "of the realm the central backend trusts"
        )
        if error in ("unauthorized_client", "unsupported_grant_type"):  # Keycloak: also for a wrong secret
            hint += (
                "; if they are right, enable the client-credentials grant for this client "
                "(Keycloak: 'Service accounts roles')"
            )
        raise BindError(
            f"{what} was refused (HTTP {status}{', ' + error if error else ''}) for client '{client_id}': {hint}"
        )
    if not 200 <= status < 300:
        raise BindError(f"{what} failed (HTTP {status}): {_excerpt(body)}; check oidc.tokenUrl")


def _access_token(what: str, body: bytes) -> str:
    """The access token of a token response."""
    try:
        doc = json.loads(body)
        token = doc["access_token"]
        if not isinstance(token, str) or not token:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise BindError(
            f"{what} answered without an access_token; check that oidc.tokenUrl is the IdP's OAuth2 token endpoint"
        ) from None
    return token


def _check_bind_answer(what: str, status: int, answer: bytes, client_id: str) -> None:
    """BindError for a bind request the backend did not answer with a binding, saying what to check."""
    if status in (401, 403):
        who = f" for client '{client_id}'" if client_id else ""
        raise BindError(
            f"{what} was rejected (HTTP {status}){who}: the backend did not accept the access token; {_AUTH_CHECKS}"
        )
    if status == 404:
        raise BindError(
            f"{what} failed (HTTP 404): the backend has no /bind-noninteractive endpoint; check the "
            "central stack's bindNonInteractiveUrl, or bind interactively with its kubectlBindCommand"
        )
    if not 200 <= status < 300:
        raise BindError(f"{what} failed (HTTP {status}): {_excerpt(answer)}")


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


def _exchange(
    make: Callable[[], urllib.request.Request], what: str, ca_pem: str | None, policy: Policy
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
                        f"{what} was redirected (HTTP {e.code} to {e.headers.get('Location')}); configure the final URL"
                    ) from None
                return e.code, body
            last = f"HTTP {e.code}"
            retry_after = _retry_after(e.headers.get("Retry-After"))
        except urllib.error.URLError as e:
            if isinstance(e.reason, ssl.SSLError):
                raise BindError(
                    f"{what}: TLS verification failed ({e.reason}); if the central backend uses a "
                    "self-signed certificate, the central stack must export its CA as tlsCaPem"
                ) from None
            last = "timed out" if isinstance(e.reason, TimeoutError) else f"connection failed ({e.reason})"
        except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
            last = "timed out" if isinstance(e, TimeoutError) else f"connection failed ({e})"
        if attempt < policy.attempts:
            policy.sleep(policy.delay(attempt, retry_after))
    raise BindError(f"{what} failed after {policy.attempts} attempts (last: {last}, timeout {policy.timeout:g}s each)")


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
