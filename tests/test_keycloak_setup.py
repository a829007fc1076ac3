"""klutch-keycloak-setup (klutch.idp.keycloak) against an in-memory Keycloak admin API: what it creates,
that a second run changes nothing, conflicts, the redirect URI added later, errors without traceback,
and where secrets go. (The real Keycloak runs it in tests/e2e/test_keycloak.py.)"""

from __future__ import annotations

import copy
import itertools
import subprocess
from pathlib import Path
from typing import Any

import pytest
from keycloak.exceptions import KeycloakConnectionError, KeycloakGetError, KeycloakPostError

from klutch.idp import keycloak as setup
from klutch.idp.keycloak import SetupError, Wanted

HOST = "klutch.example.com"
WANTED = Wanted(realm="klutch", create_realm=True, backend_client="kube-bind", backend_host=HOST, tenants=("acme",))


class FakeAdmin:
    """The admin REST API of one Keycloak, in memory (the methods klutch.idp.keycloak.Admin names)."""

    def __init__(self) -> None:
        self.realms: dict[str, dict[str, dict[str, Any]]] = {"master": {}}  # realm -> internal id -> client
        self.realm = "master"
        self.ids = (f"id-{n}" for n in itertools.count())
        self.writes = 0

    def get_realm(self, realm_name: str) -> dict:
        if realm_name not in self.realms:
            raise KeycloakGetError(error_message=b'{"error":"Realm not found."}', response_code=404)
        return {"realm": realm_name}

    def create_realm(self, payload: dict, skip_exists: bool = False) -> None:
        self.writes += 1
        self.realms[payload["realm"]] = {}

    def change_current_realm(self, realm_name: str) -> None:
        self.realm = realm_name

    def get_client_id(self, client_id: str) -> str | None:
        return next((i for i, c in self.realms[self.realm].items() if c["clientId"] == client_id), None)

    def get_client(self, client_id: str) -> dict:
        return copy.deepcopy(self.realms[self.realm][client_id])

    def create_client(self, payload: dict, skip_exists: bool = False) -> str:
        self.writes += 1
        internal = next(self.ids)
        defaults = {"directAccessGrantsEnabled": True, "implicitFlowEnabled": False, "serviceAccountsEnabled": False}
        self.realms[self.realm][internal] = {
            **defaults,
            **payload,
            "id": internal,
            "secret": f"secret-of-{payload['clientId']}",
            "protocolMappers": [],
        }
        return internal

    def update_client(self, client_id: str, payload: dict) -> None:
        self.writes += 1
        self.realms[self.realm][client_id] = copy.deepcopy(payload)

    def get_mappers_from_client(self, client_id: str) -> list:
        return copy.deepcopy(self.realms[self.realm][client_id]["protocolMappers"])

    def add_mapper_to_client(self, client_id: str, payload: dict) -> None:
        self.writes += 1
        self.realms[self.realm][client_id]["protocolMappers"].append(copy.deepcopy(payload))

    def get_client_secrets(self, client_id: str) -> dict:
        return {"type": "secret", "value": self.realms[self.realm][client_id]["secret"]}

    def client(self, client_id: str) -> dict[str, Any]:
        return self.realms["klutch"][self.get_client_id(client_id) or ""]


def test_first_run_creates_the_realm_the_clients_and_their_audience_mappers():
    admin = FakeAdmin()
    outcome = setup.apply(admin, WANTED)
    assert outcome.changes == [
        "realm 'klutch': created",
        "client 'kube-bind': created",
        "client 'kube-bind': audience mapper added",
        "client 'acme': created",
        "client 'acme': audience mapper added",
    ]
    backend = admin.client("kube-bind")
    assert backend["redirectUris"] == [f"https://{HOST}/callback"]
    assert backend["standardFlowEnabled"] and not backend["publicClient"]
    tenant = admin.client("acme")
    assert tenant["serviceAccountsEnabled"] and not tenant["standardFlowEnabled"]
    assert not tenant["directAccessGrantsEnabled"] and not tenant["publicClient"]
    for client in (backend, tenant):
        [mapper] = client["protocolMappers"]
        assert mapper["protocolMapper"] == "oidc-audience-mapper"
        assert mapper["config"]["included.client.audience"] == "kube-bind"
        assert mapper["config"]["access.token.claim"] == "true"
    assert outcome.secrets == {"kube-bind": "secret-of-kube-bind", "acme": "secret-of-acme"}


def test_a_second_run_changes_nothing():
    admin = FakeAdmin()
    setup.apply(admin, WANTED)
    writes = admin.writes
    outcome = setup.apply(admin, WANTED)
    assert outcome.changes == [] and admin.writes == writes
    assert "client 'acme': audience mapper" in outcome.unchanged


def test_a_missing_realm_without_create_realm_is_an_error():
    with pytest.raises(SetupError, match="realm 'klutch' does not exist: create it, or pass --create-realm"):
        setup.apply(FakeAdmin(), Wanted("klutch", False, "kube-bind", HOST, ()))


def test_a_conflicting_client_is_named_and_left_alone():
    admin = FakeAdmin()
    setup.apply(admin, WANTED)
    admin.client("acme").update(publicClient=True, standardFlowEnabled=True)
    writes = admin.writes
    with pytest.raises(SetupError) as err:
        setup.apply(admin, WANTED)
    assert str(err.value).startswith(
        "client 'acme' exists with conflicting settings: publicClient is True, needs False; "
        "standardFlowEnabled is True, needs False. It is not changed"
    )
    assert admin.writes == writes


def test_a_mapper_with_another_audience_is_a_conflict():
    admin = FakeAdmin()
    setup.apply(admin, WANTED)
    admin.client("acme")["protocolMappers"][0]["config"]["included.client.audience"] = "other"
    with pytest.raises(SetupError, match="mapper 'kube-bind audience' with other settings: included.client.audience"):
        setup.apply(admin, WANTED)


def test_the_redirect_uri_is_added_once_the_backend_host_is_known():
    admin = FakeAdmin()
    first = setup.apply(admin, Wanted("klutch", True, "kube-bind", None, ()))
    assert admin.client("kube-bind")["redirectUris"] == [] and "client 'kube-bind': created" in first.changes
    later = setup.apply(admin, Wanted("klutch", True, "kube-bind", HOST, ()))
    assert later.changes == [f"client 'kube-bind': redirect URI https://{HOST}/callback added"]
    assert admin.client("kube-bind")["redirectUris"] == [f"https://{HOST}/callback"]
    assert setup.apply(admin, Wanted("klutch", True, "kube-bind", HOST, ())).changes == []


# ------------------------------------------------------------------------------- the command
@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeAdmin:
    admin = FakeAdmin()
    monkeypatch.setattr(setup, "connect", lambda *a: admin)
    monkeypatch.setattr(setup, "stack_backend_host", lambda: HOST)
    monkeypatch.setenv("KEYCLOAK_ADMIN_PASSWORD", "admin-password-3c1f")
    return admin


ARGS = ["--server", "https://kc.example.com", "--create-realm", "--tenant", "acme"]


def test_the_command_prints_the_stack_values_and_no_secret(fake: FakeAdmin, capsys, tmp_path: Path):
    assert setup.main([*ARGS, "--secrets-dir", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    issuer = "https://kc.example.com/realms/klutch"
    assert f"pulumi config set --path oidc.issuerUrl {issuer}" in out
    assert f"pulumi config set --secret --path oidc.clientSecret < {tmp_path / 's'}/kube-bind" in out
    assert f"pulumi config set --path oidc.tokenUrl {issuer}/protocol/openid-connect/token" in out
    assert "secret-of" not in out and "admin-password" not in out
    for client in ("kube-bind", "acme"):
        path = tmp_path / "s" / client
        assert path.read_text() == f"secret-of-{client}" and path.stat().st_mode & 0o777 == 0o600
    assert setup.main(ARGS) == 0
    assert "nothing changed: everything was already in place" in capsys.readouterr().out


def test_secrets_reach_stdout_only_on_request(fake: FakeAdmin, capsys):
    assert setup.main([*ARGS, "--show-secrets"]) == 0
    assert "secret of acme: secret-of-acme" in capsys.readouterr().out


def test_errors_are_one_line_without_traceback(fake: FakeAdmin, capsys, monkeypatch):
    fake.realms["klutch"] = {}
    fake.change_current_realm("klutch")
    fake.create_client({"clientId": "acme", "publicClient": True})
    assert setup.main(ARGS) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: client 'acme' exists with conflicting settings") and "Traceback" not in err
    monkeypatch.delenv("KEYCLOAK_ADMIN_PASSWORD")
    assert setup.main(ARGS) == 2
    assert "set KEYCLOAK_ADMIN_PASSWORD" in capsys.readouterr().err


class _Refusing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, **kwargs: Any) -> Any:
        error = self.error

        class Admin:
            def get_realms(self) -> list:
                raise error

        return Admin()


def test_a_wrong_admin_password_and_an_unreachable_server_are_named(monkeypatch):
    invalid = KeycloakPostError(error_message=b'{"error":"invalid_grant"}', response_code=400)
    monkeypatch.setattr(setup, "KeycloakAdmin", _Refusing(invalid))
    with pytest.raises(SetupError, match="refused the admin login of 'admin' .*KEYCLOAK_ADMIN_PASSWORD"):
        setup.connect("https://kc.example.com", "admin", "wrong", True)
    monkeypatch.setattr(setup, "KeycloakAdmin", _Refusing(KeycloakConnectionError("Can't connect to server")))
    with pytest.raises(SetupError, match=r"cannot reach Keycloak at https://kc.example.com .*check --server"):
        setup.connect("https://kc.example.com", "admin", "pw", True)


def test_the_backend_host_comes_from_the_stack_output_then_its_config(monkeypatch):
    calls: list[list[str]] = []

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        calls.append(command)
        found = command[1] == "config"
        return subprocess.CompletedProcess(command, 0 if found else 255, f"{HOST}\n" if found else "", "")

    monkeypatch.setattr(setup.subprocess, "run", run)
    assert setup.stack_backend_host() == HOST
    assert calls == [
        ["pulumi", "stack", "output", "backendHost"],
        ["pulumi", "config", "get", "--path", "backend.host"],
    ]
