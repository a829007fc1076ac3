"""`klutch-keycloak-setup`: the IdP side of the OIDC step, on Keycloak, run once by the operator.

Creates, in one realm (created too with `--create-realm`):

- the backend's confidential client (`--client-id`, default `kube-bind`: the central stack's
  `oidc.clientId`) with the standard flow and the redirect URI `https://<backendHost>/callback`;
- an audience mapper on it that puts the client id into its tokens' `aud`;
- per `--tenant NAME`, a confidential client with only the client-credentials grant (a service account)
  and the same audience mapper, so its tokens are accepted by the backend's `/bind-noninteractive`.

`<backendHost>` is `--backend-host`, else the central stack's `backendHost` output, else its
`backend.host` config (both read with `pulumi` in the current directory). When none is known yet
(no `backend.host`, before the first `pulumi up`), the client gets no redirect URI; running the same
command after the `up` adds it.

Idempotent: what exists as wanted is left alone, and a second run says it changed nothing. An existing
client whose settings conflict with these is an error that lists them; it is never overwritten. The
values for the central and tenant stacks are printed; client secrets only go to `--secrets-dir` (one
file per client id, mode 0600) or, with `--show-secrets`, to stdout. The admin password is read from
`KEYCLOAK_ADMIN_PASSWORD`, never from the command line. A private CA: `--ca-file` or `SSL_CERT_FILE`.

Built on python-keycloak (its admin client handles the admin login and the REST calls).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from keycloak import KeycloakAdmin
from keycloak.exceptions import KeycloakConnectionError, KeycloakError

MAPPER_NAME = "kube-bind audience"
AUDIENCE_MAPPER = "oidc-audience-mapper"
TIMEOUT = 20  # seconds per admin request


class SetupError(Exception):
    """What went wrong and what to do; printed without a traceback."""


class Admin(Protocol):
    """The part of python-keycloak's KeycloakAdmin this script uses (the unit tests fake it)."""

    def get_realm(self, realm_name: str) -> dict: ...
    def create_realm(self, payload: dict, skip_exists: bool = False) -> Any: ...
    def change_current_realm(self, realm_name: str) -> None: ...
    def get_client_id(self, client_id: str) -> str | None: ...
    def get_client(self, client_id: str) -> dict: ...
    def create_client(self, payload: dict, skip_exists: bool = False) -> str: ...
    def update_client(self, client_id: str, payload: dict) -> Any: ...
    def get_mappers_from_client(self, client_id: str) -> list: ...
    def add_mapper_to_client(self, client_id: str, payload: dict) -> Any: ...
    def get_client_secrets(self, client_id: str) -> dict: ...


@dataclass(frozen=True)
class Wanted:
    realm: str
    create_realm: bool
    backend_client: str
    backend_host: str | None
    tenants: tuple[str, ...]


@dataclass
class Outcome:
    changes: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------- what is wanted
def _confidential_client(client_id: str) -> dict[str, Any]:
    """What the backend's and every tenant's client share: an enabled, confidential OpenID Connect client."""
    return {
        "clientId": client_id,
        "protocol": "openid-connect",
        "enabled": True,
        "publicClient": False,
        "bearerOnly": False,
    }


def backend_client(client_id: str, host: str | None) -> dict[str, Any]:
    return {
        **_confidential_client(client_id),
        "standardFlowEnabled": True,
        "redirectUris": [f"https://{host}/callback"] if host else [],
    }


def tenant_client(client_id: str) -> dict[str, Any]:
    return {
        **_confidential_client(client_id),
        "serviceAccountsEnabled": True,
        "standardFlowEnabled": False,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
    }


def audience_mapper(audience: str) -> dict[str, Any]:
    return {
        "name": MAPPER_NAME,
        "protocol": "openid-connect",
        "protocolMapper": AUDIENCE_MAPPER,
        "config": {"included.client.audience": audience, "access.token.claim": "true", "id.token.claim": "true"},
    }


def conflicts(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Settings of an existing client that differ from the wanted ones (redirect URIs: missing ones
    are added, not conflicts)."""
    return [
        f"{key} is {existing.get(key)!r}, needs {value!r}"
        for key, value in wanted.items()
        if key != "redirectUris" and existing.get(key) != value
    ]


def mapper_conflicts(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    found = {"protocolMapper": existing.get("protocolMapper"), **(existing.get("config") or {})}
    needed = {"protocolMapper": wanted["protocolMapper"], **wanted["config"]}
    return [f"{k} is {found.get(k)!r}, needs {v!r}" for k, v in needed.items() if found.get(k) != v]


# ------------------------------------------------------------------------------- the run
def apply(admin: Admin, wanted: Wanted) -> Outcome:
    """Bring the realm to what is wanted; SetupError on a conflict."""
    outcome = Outcome()
    ensure_realm(admin, wanted, outcome)
    admin.change_current_realm(wanted.realm)
    clients = [(backend_client(wanted.backend_client, wanted.backend_host))]
    clients += [tenant_client(t) for t in wanted.tenants]
    for client in clients:
        internal = ensure_client(admin, client, outcome)
        ensure_mapper(admin, internal, client["clientId"], audience_mapper(wanted.backend_client), outcome)
        outcome.secrets[client["clientId"]] = admin.get_client_secrets(internal)["value"]
    return outcome


def ensure_realm(admin: Admin, wanted: Wanted, outcome: Outcome) -> None:
    try:
        admin.get_realm(wanted.realm)
    except KeycloakError as e:
        if e.response_code != 404:
            raise
        if not wanted.create_realm:
            raise SetupError(f"realm {wanted.realm!r} does not exist: create it, or pass --create-realm") from None
        admin.create_realm({"realm": wanted.realm, "enabled": True})
        outcome.changes.append(f"realm {wanted.realm!r}: created")
        return
    outcome.unchanged.append(f"realm {wanted.realm!r}")


def ensure_client(admin: Admin, wanted: Mapping[str, Any], outcome: Outcome) -> str:
    """The client's internal id, creating the client or adding a missing redirect URI."""
    name = wanted["clientId"]
    internal = admin.get_client_id(name)
    if internal is None:
        internal = admin.create_client(dict(wanted))
        outcome.changes.append(f"client {name!r}: created")
        return internal
    existing = admin.get_client(internal)
    if found := conflicts(existing, wanted):
        raise SetupError(
            f"client {name!r} exists with conflicting settings: {'; '.join(found)}. It is not changed: fix it "
            "in the admin console, or delete it and run this again"
        )
    uris = list(existing.get("redirectUris") or [])
    missing = [u for u in wanted.get("redirectUris", []) if u not in uris]
    if missing:
        admin.update_client(internal, {**existing, "redirectUris": uris + missing})
        outcome.changes.append(f"client {name!r}: redirect URI {', '.join(missing)} added")
    else:
        outcome.unchanged.append(f"client {name!r}")
    return internal


def ensure_mapper(admin: Admin, internal: str, name: str, wanted: Mapping[str, Any], outcome: Outcome) -> None:
    existing = [m for m in admin.get_mappers_from_client(internal) if m.get("name") == wanted["name"]]
    if not existing:
        admin.add_mapper_to_client(internal, dict(wanted))
        outcome.changes.append(f"client {name!r}: audience mapper added")
        return
    if found := mapper_conflicts(existing[0], wanted):
        raise SetupError(f"client {name!r} has a mapper {wanted['name']!r} with other settings: {'; '.join(found)}")
    outcome.unchanged.append(f"client {name!r}: audience mapper")


# ------------------------------------------------------------------------------- the command
def stack_backend_host() -> str | None:
    """The central stack's backendHost output, else its backend.host config, from `pulumi` in this directory."""
    for command in (["stack", "output", "backendHost"], ["config", "get", "--path", "backend.host"]):
        try:
            done = subprocess.run(["pulumi", *command], capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return None


def connect(server: str, user: str, password: str, verify: bool | str) -> KeycloakAdmin:
    """An admin client logged in to the master realm; SetupError for a wrong password or no server."""
    try:
        admin = KeycloakAdmin(
            server_url=server,
            username=user,
            password=password,
            realm_name="master",
            user_realm_name="master",
            verify=verify,
            timeout=TIMEOUT,
        )
        admin.get_realms()
    except KeycloakConnectionError as e:
        raise SetupError(f"cannot reach Keycloak at {server} ({e.__cause__ or e}); check --server") from None
    except KeycloakError as e:
        if e.response_code in (400, 401, 403):
            raise SetupError(
                f"Keycloak at {server} refused the admin login of {user!r} (HTTP {e.response_code}): check "
                "--admin-user and KEYCLOAK_ADMIN_PASSWORD (an admin of the master realm)"
            ) from None
        raise
    return admin


def report(outcome: Outcome, server: str, wanted: Wanted, secrets_dir: Path | None, show: bool) -> None:
    for line in outcome.changes:
        print(f"changed: {line}")
    for line in outcome.unchanged:
        print(f"unchanged: {line}")
    print(f"{len(outcome.changes)} changes" if outcome.changes else "nothing changed: everything was already in place")
    if wanted.backend_host is None:
        print("note: no backendHost known yet: run this again after the first `pulumi up` to add the redirect URI")
    issuer = f"{server.rstrip('/')}/realms/{wanted.realm}"
    secret_hint = f"< {secrets_dir}/{{id}}" if secrets_dir else "'<its secret>'"
    print("\ncentral stack (klutch-central):")
    print(f"  pulumi config set --path oidc.issuerUrl {issuer}")
    print(f"  pulumi config set --path oidc.clientId {wanted.backend_client}")
    print(f"  pulumi config set --secret --path oidc.clientSecret {secret_hint.format(id=wanted.backend_client)}")
    for tenant in wanted.tenants:
        print(f"tenant stack of client {tenant!r} (klutch-tenant):")
        print(f"  pulumi config set --path oidc.tokenUrl {issuer}/protocol/openid-connect/token")
        print(f"  pulumi config set --path oidc.clientId {tenant}")
        print(f"  pulumi config set --secret --path oidc.clientSecret {secret_hint.format(id=tenant)}")
    if secrets_dir:
        write_secrets(secrets_dir, outcome.secrets)
        print(f"client secrets: in {secrets_dir}/<client id> (mode 0600)")
    if show:
        for client, secret in outcome.secrets.items():
            print(f"secret of {client}: {secret}")


def write_secrets(directory: Path, secrets: Mapping[str, str]) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for client, secret in secrets.items():
        path = directory / client
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        path.chmod(0o600)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="klutch-keycloak-setup", description=__doc__.split("\n\n")[0])
    p.add_argument("--server", required=True, help="Keycloak's base URL, e.g. https://keycloak.example.com")
    p.add_argument("--realm", default="klutch", help="the realm of the clients (default: klutch)")
    p.add_argument("--create-realm", action="store_true", help="create the realm when it does not exist")
    p.add_argument(
        "--admin-user", default="admin", help="an admin of the master realm (password: KEYCLOAK_ADMIN_PASSWORD)"
    )
    p.add_argument("--client-id", default="kube-bind", help="the backend's client: the central stack's oidc.clientId")
    p.add_argument("--backend-host", help="default: the central stack's backendHost output, else its backend.host")
    p.add_argument("--tenant", action="append", default=[], help="a tenant's client id (repeatable)")
    p.add_argument("--secrets-dir", type=Path, help="write each client's secret to DIR/<client id> (mode 0600)")
    p.add_argument("--show-secrets", action="store_true", help="print the client secrets on stdout")
    p.add_argument("--ca-file", help="the CA of Keycloak's certificate (default: SSL_CERT_FILE, else the system's)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    password = os.environ.get("KEYCLOAK_ADMIN_PASSWORD")
    if not password:
        print("error: set KEYCLOAK_ADMIN_PASSWORD to the password of --admin-user", file=sys.stderr)
        return 2
    wanted = Wanted(
        realm=args.realm,
        create_realm=args.create_realm,
        backend_client=args.client_id,
        backend_host=args.backend_host or stack_backend_host(),
        tenants=tuple(dict.fromkeys(args.tenant)),
    )
    verify = args.ca_file or os.environ.get("SSL_CERT_FILE") or True
    try:
        outcome = apply(connect(args.server, args.admin_user, password, verify), wanted)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeycloakError as e:
        print(f"error: Keycloak at {args.server} answered {e.response_code}: {e.error_message!s:.300}", file=sys.stderr)
        return 1
    report(outcome, args.server, wanted, args.secrets_dir, args.show_secrets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
