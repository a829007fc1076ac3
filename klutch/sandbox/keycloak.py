"""A real Keycloak for the real-engine tests: the distribution the toolchain fetched and pre-built
(`e2e/toolchain/build keycloak`), started on 127.0.0.1 over HTTPS and stopped by its context manager.

- Production mode, `start --optimized`: the toolchain's `kc.sh build` set the in-memory database, so a
  start writes nothing into the shared distribution. Each instance gets a home directory of its own
  (its `bin/kc.sh` copied, `lib`, `conf`, `providers` and `themes` linked), where Keycloak writes `data/`.
- HTTPS only, with a certificate for IP 127.0.0.1 from a CA of its own (`ca_pem`); `SSL_CERT_FILE`
  pointing at `ca_bundle` (the system's CAs plus that CA) makes every client trust it: the programs'
  issuer preflight, the tenant's bind client, the setup script and PyJWT's JWKS client.
- A bootstrap admin of the master realm (`admin`, `admin_password`), a bounded start (`START_TIMEOUT`),
  a bounded heap. `start_seconds` and `rss_mib()` are what docs/e2e.md records.

`TokenCheck` verifies an access token as the kube-bind backend does: the signature against the realm's
JWKS, `iss`, `aud` containing the backend's client id, and `exp` (PyJWT).
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt

from klutch.sandbox.controlplane import LocalTls, die_with_parent, free_port, terminate, wait_or_kill
from klutch.sandbox.fake_backend import serving_certificate
from klutch.sandbox.local import TOOLCHAIN

DISTRIBUTION = TOOLCHAIN / "keycloak"
START_TIMEOUT = 420.0  # seconds; a start on 2 busy cores has taken 70-290 s, an idle one far less
HEAP = "-Xms64m -Xmx512m"
SHARED = ("lib", "conf", "providers", "themes")


class KeycloakError(RuntimeError):
    """Keycloak did not start; the message names its log."""


class Keycloak(LocalTls):
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.ca_bundle = workdir / "ca-bundle.pem"  # the system's CAs plus this server's
        self.log = workdir / "keycloak.log"
        self.admin_password = secrets.token_urlsafe(16)
        self.start_seconds = 0.0
        self._started = 0.0
        self._process: subprocess.Popen | None = None

    # ------------------------------------------------------------------ addresses
    def issuer(self, realm: str) -> str:
        return f"{self.url}/realms/{realm}"

    def token_url(self, realm: str) -> str:
        return f"{self.issuer(realm)}/protocol/openid-connect/token"

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> Keycloak:
        self.start()
        return self.wait()

    def start(self) -> Keycloak:
        """Start Keycloak and return at once (`wait` blocks until it answers)."""
        if not (DISTRIBUTION / ".built").exists():
            raise KeycloakError(f"no Keycloak in {DISTRIBUTION}: run e2e/toolchain/build keycloak")
        home = self._home()
        serving_certificate(self.pki)
        system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
        self.ca_bundle.write_text((system.read_text() if system.exists() else "") + self.ca_pem)
        env = {
            **os.environ,
            "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
            "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password,
            "JAVA_OPTS_KC_HEAP": HEAP,
            "JAVA_OPTS_APPEND": "-XX:TieredStopAtLevel=1",  # the C1 compiler only: a faster start on few cores
        }
        args = [
            f"--https-port={self.port}",
            "--http-enabled=false",
            "--http-host=127.0.0.1",
            f"--https-certificate-file={self.pki / 'server.crt'}",
            f"--https-certificate-key-file={self.pki / 'server.key'}",
            "--hostname-strict=false",
            "--cache=local",
        ]
        self._started = time.monotonic()
        with self.log.open("wb") as log:
            self._process = subprocess.Popen(
                [str(home / "bin" / "kc.sh"), "start", "--optimized", *args],
                cwd=home,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return self

    def wait(self) -> Keycloak:
        try:
            self._await_ready(self._started)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - self._started
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        terminate(proc)
        wait_or_kill(proc, timeout=30)

    def _home(self) -> Path:
        home = self.workdir / "home"
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "kc.sh").write_bytes((DISTRIBUTION / "bin" / "kc.sh").read_bytes())
        (home / "bin" / "kc.sh").chmod(0o755)
        for name in SHARED:
            (home / name).symlink_to(DISTRIBUTION.resolve() / name)
        return home

    def _await_ready(self, started: float) -> None:
        context = ssl.create_default_context(cadata=self.ca_pem)
        url = f"{self.issuer('master')}/.well-known/openid-configuration"
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise KeycloakError(f"Keycloak exited ({self._process.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - started > START_TIMEOUT:
                raise KeycloakError(f"Keycloak did not answer within {START_TIMEOUT:g}s; see {self.log}")
            time.sleep(1)

    # ------------------------------------------------------------------ measurements
    def rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the Java process, in MiB."""
        assert self._process is not None
        children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children").read_text().split()
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{children[0]}/status").read_text().splitlines() if ":" in line
        )
        return tuple(int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]

    # ------------------------------------------------------------------ admin
    def admin(self, realm: str) -> Any:
        """python-keycloak's admin client, logged in to master, working on `realm`."""
        from keycloak import KeycloakAdmin

        admin = KeycloakAdmin(
            server_url=self.url,
            username="admin",
            password=self.admin_password,
            realm_name="master",
            user_realm_name="master",
            verify=str(self.ca_bundle),
        )
        admin.change_current_realm(realm)
        return admin


class TokenCheck:
    """The backend's check of a bearer token (what `/bind-noninteractive` accepts); raises ValueError."""

    def __init__(self, keycloak: Keycloak, realm: str, audience: str) -> None:
        self.issuer = keycloak.issuer(realm)
        self.audience = audience
        context = ssl.create_default_context(cadata=keycloak.ca_pem)
        self._keys = jwt.PyJWKClient(f"{self.issuer}/protocol/openid-connect/certs", ssl_context=context)

    def __call__(self, token: str) -> dict[str, Any]:
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            return jwt.decode(
                token,
                key,
                algorithms=["RS256", "ES256", "PS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as e:
            raise ValueError(f"{type(e).__name__}: {e}") from None
