"""The issuer preflight: before any resource is declared, ask the IdP whether `oidc.issuerUrl` is its issuer.

The kube-bind backend fetches `<issuer>/.well-known/openid-configuration` when it starts and exits when
the document is missing or names another issuer; tokens are checked against that exact string. Without
this check a wrong issuer shows only when the backend fails at the very end of a long `pulumi up`.

`check()` decides (pure, the fetch injected); `preflight()` runs it in a program:

- the IdP answers 4xx, or with something that is not a discovery document: error (a wrong realm or path);
- the document's `issuer` differs from the configured one in any character (a trailing slash, the realm,
  http vs https): error naming both; the same for a tenant's token URL and the document's `token_endpoint`;
- `client_credentials` missing from `grant_types_supported`: warning (non-interactive binds need it);
- unreachable, timed out, untrusted certificate or 5xx: warning, because the operator's machine may not
  reach an IdP that the cluster reaches;
- `oidc.checkIssuer: false` turns it off; under the mock engine (unit tests, the offline render) it is
  skipped, and says so, so that those stay offline.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import pulumi

from klutch.config.reader import ConfigError, Problem
from klutch.sdk.compat import under_mock_engine

DISCOVERY_PATH = "/.well-known/openid-configuration"
TIMEOUT = 5.0  # seconds: the preflight must not hold up a preview
CLIENT_CREDENTIALS = "client_credentials"
# OpenID Connect Discovery 1.0 §3: the grant types an issuer supports when it does not list them
DEFAULT_GRANT_TYPES = ("authorization_code", "implicit")
# Keycloak's token endpoint below its issuer (`<issuer>/protocol/openid-connect/token`)
KEYCLOAK_TOKEN_PATH = "/protocol/openid-connect/token"


class Unreachable(Exception):
    """The discovery document could not be fetched (no answer, a timeout or an untrusted certificate)."""


Fetch = Callable[[str, float], tuple[int, bytes]]  # (url, timeout) -> (HTTP status, body); raises Unreachable


@dataclass(frozen=True)
class Subject:
    """What to check, and the config keys messages name."""

    issuer_url: str
    issuer_key: str  # e.g. 'klutch-central:oidc.issuerUrl'
    switch_key: str  # the key that turns the check off
    token_url: str | None = None  # a tenant's token URL, which must be the issuer's token endpoint
    token_key: str | None = None


@dataclass(frozen=True)
class Verdict:
    problems: tuple[Problem, ...] = ()
    warnings: tuple[str, ...] = ()


def discovery_url(issuer_url: str) -> str:
    """OpenID Connect Discovery 1.0 §4: a terminating '/' of the issuer is removed before appending."""
    return issuer_url.rstrip("/") + DISCOVERY_PATH


def issuer_of_token_url(token_url: str) -> str | None:
    """The issuer whose token endpoint `token_url` is, where the URL's shape tells (Keycloak); else None."""
    if token_url.endswith(KEYCLOAK_TOKEN_PATH):
        return token_url[: -len(KEYCLOAK_TOKEN_PATH)]
    return None


def check(subject: Subject, fetch: Fetch, timeout: float = TIMEOUT) -> Verdict:
    """The preflight's decisions for one issuer (see the module docstring)."""
    url = discovery_url(subject.issuer_url)
    key, issuer = subject.issuer_key, subject.issuer_url
    try:
        status, body = fetch(url, timeout)
    except Unreachable as e:
        return Verdict(warnings=(_not_checked(subject, url, str(e)),))
    if status >= 500:
        return Verdict(warnings=(_not_checked(subject, url, f"HTTP {status}"),))
    if status != 200:
        why = f"the IdP answers HTTP {status} for {url}: no OpenID provider has this issuer (a wrong realm or path?)"
        return Verdict(problems=(Problem(key, issuer, why),))
    doc = _document(body)
    if doc is None:
        why = f"{url} is not an OpenID Connect discovery document (no 'issuer'): is this the issuer URL?"
        return Verdict(problems=(Problem(key, issuer, why),))
    problems = []
    if doc["issuer"] != issuer:
        why = (
            f"the IdP names its issuer {doc['issuer']!r} ({url}); the backend accepts only tokens of exactly that "
            f"issuer: set {key.rpartition(':')[2]} to {doc['issuer']!r}"
        )
        problems.append(Problem(key, issuer, why))
    endpoint = doc.get("token_endpoint")
    if subject.token_url and subject.token_key and endpoint != subject.token_url:
        why = f"the token endpoint of issuer {doc['issuer']!r} is {endpoint!r} ({url})"
        problems.append(Problem(subject.token_key, subject.token_url, why))
    grants = doc.get("grant_types_supported", DEFAULT_GRANT_TYPES)
    warnings = ()
    if not isinstance(grants, list | tuple) or CLIENT_CREDENTIALS not in grants:
        warnings = (
            f"{key} {issuer!r}: the IdP does not list '{CLIENT_CREDENTIALS}' in grant_types_supported ({url}); "
            "non-interactive binds (the tenant project) need the client-credentials grant",
        )
    return Verdict(problems=tuple(problems), warnings=warnings)


def _document(body: bytes) -> dict | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("issuer"), str) else None


def _not_checked(subject: Subject, url: str, why: str) -> str:
    return (
        f"{subject.issuer_key} {subject.issuer_url!r} not checked: {url} could not be read ({why}). The backend "
        "fetches it when it starts, so make sure the cluster reaches it; if it has a private CA, point "
        f"SSL_CERT_FILE at it; {subject.switch_key}: false turns this check off"
    )


def fetch_https(url: str, timeout: float) -> tuple[int, bytes]:
    """GET `url`, trusting the system's CAs (and `SSL_CERT_FILE`); raises Unreachable. The whole fetch,
    name resolution included (which urllib's timeout does not bound), gets `timeout` seconds."""
    result: list[tuple[int, bytes] | Unreachable] = []
    worker = threading.Thread(target=lambda: result.append(_get(url, timeout)), daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise Unreachable("timed out")
    if isinstance(result[0], Unreachable):
        raise result[0]
    return result[0]


def _get(url: str, timeout: float) -> tuple[int, bytes] | Unreachable:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "klutch-preflight/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ssl.create_default_context()) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except urllib.error.URLError as e:
        return Unreachable(str(e.reason))
    except (TimeoutError, OSError) as e:
        return Unreachable("timed out" if isinstance(e, TimeoutError) else str(e))


def preflight(stack: str, subject: Subject, *, enabled: bool, fetch: Fetch = fetch_https) -> None:
    """Run the check in a program: warnings logged, problems raised as a ConfigError (before any resource)."""
    if not enabled:
        pulumi.log.info(f"{subject.issuer_key}: issuer check off ({subject.switch_key}: false)")
        return
    if under_mock_engine():
        pulumi.log.info(f"{subject.issuer_key}: issuer check skipped (offline evaluation; preview and up run it)")
        return
    verdict = check(subject, fetch)
    for warning in verdict.warnings:
        pulumi.log.warn(warning)
    if verdict.problems:
        raise ConfigError(stack, list(verdict.problems))


__all__ = ["Subject", "Unreachable", "Verdict", "check", "discovery_url", "issuer_of_token_url", "preflight"]
