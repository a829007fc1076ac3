"""The sandbox's background service: two control planes (central and tenant), a Keycloak with the realm
and clients the programs use, and the doubles of what a real cluster and its surroundings run, until SIGTERM.

Started detached by `klutch-sandbox up` (`python -m klutch.sandbox.service <state dir>`), its output in
`<state>/logs/service.log`. Once everything answers it writes `<state>/service.json`: its own pid, the
pid of every process it started, the servers' addresses and the backend double's client. The control
planes' and Keycloak's processes die with it (PR_SET_PDEATHSIG), and SIGTERM stops everything in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from klutch import catalog
from klutch.idp.keycloak import Wanted, apply, connect
from klutch.sandbox import local
from klutch.sandbox.controlplane import ControlPlane, running
from klutch.sandbox.fake_backend import FakeBackend
from klutch.sandbox.keycloak import Keycloak, TokenCheck
from klutch.sandbox.processes import record_start_times
from klutch.sandbox.state import Layout, Service

CLIENT_ID = "sandbox-tenant"
REALM, BACKEND_CLIENT = "klutch", "kube-bind"
BACKEND_HOST = "klutch.sandbox.test"  # the central stack's backend.host: the backend client's redirect URI
PERIOD = 3.0  # how often the service's own doubles (broker check, exports) look at the central cluster


@contextlib.contextmanager
def planes(layout: Layout) -> Iterator[tuple[ControlPlane, ControlPlane]]:
    """The central cluster with its doubles and a plain tenant cluster, under `<state>/clusters`."""
    tenant = ControlPlane(
        name="tenant",
        bin_dir=local.TOOLCHAIN / "bin",
        stages_dir=local.TOOLCHAIN / "kwok-stages",
        workdir=layout.clusters / "tenant",
    )
    with local.central_cluster("central", layout.clusters / "central", cert_manager=True) as central, running(tenant):
        yield central, tenant


def realm(keycloak: Keycloak) -> dict[str, str]:
    """What `klutch-keycloak-setup` makes: the realm, the backend's client and the tenant's client with the
    audience mapper; their secrets by client id."""
    admin = connect(keycloak.url, "admin", keycloak.admin_password, str(keycloak.ca_bundle))
    wanted = Wanted(
        REALM, create_realm=True, backend_client=BACKEND_CLIENT, backend_host=BACKEND_HOST, tenants=(CLIENT_ID,)
    )
    return apply(admin, wanted).secrets


def record(layout: Layout, central: ControlPlane, tenant: ControlPlane, keycloak: Keycloak, **servers: str) -> Service:
    service = Service(pid=os.getpid())
    for plane in (central, tenant):
        service.pids.update({f"{plane.name}/{n}": p.pid for n, p in plane.processes.items()})
        service.servers[f"{plane.name}-apiserver"] = plane.server
    service.pids["keycloak"] = keycloak.pid or 0
    service.servers.update(servers)
    service.servers.update(
        {"issuer": keycloak.issuer(REALM), "token": keycloak.token_url(REALM), "ca-bundle": str(keycloak.ca_bundle)}
    )
    return service


def export_requested(central: ControlPlane, release: str = catalog.DEFAULT_RELEASE) -> None:
    """What the kube-bind backend does with a tenant's APIServiceExportRequest: an APIServiceExport of the
    same name in the tenant's namespace, Ready (the double does not serve the objects themselves)."""
    rel = catalog.RELEASES[release]
    api = f"{rel.kube_bind_group}/{rel.kube_bind_version}"
    requests = central.api("GET", f"/apis/{api}/apiserviceexportrequests")["items"]
    exports = {
        (e["metadata"]["namespace"], e["metadata"]["name"])
        for e in central.api("GET", f"/apis/{api}/apiserviceexports")["items"]
    }
    for request in requests:
        meta = request["metadata"]
        if (meta["namespace"], meta["name"]) in exports or meta.get("deletionTimestamp"):
            continue
        export = {"metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "spec": request.get("spec", {})}
        central.apply({"apiVersion": api, "kind": "APIServiceExport", **export})


def serve(layout: Layout, stop: threading.Event) -> None:
    layout.logs.mkdir(parents=True, exist_ok=True)
    keycloak = Keycloak(layout.root / "keycloak").start()  # it starts while the control planes do
    try:
        with local.chart_repository(layout.root / "charts") as repo, planes(layout) as (central, tenant):
            client_secrets = realm(keycloak.wait())
            check = TokenCheck(keycloak, REALM, BACKEND_CLIENT)
            backend = FakeBackend(
                central, layout.root / "backend", CLIENT_ID, client_secrets[CLIENT_ID], token_check=check
            )
            with backend:
                service = record(layout, central, tenant, keycloak, charts=repo.url, backend=backend.url)
                service.client = {"id": CLIENT_ID, "secret": client_secrets[CLIENT_ID], "ca": backend.ca_pem}
                service.client["oidc-secret"] = client_secrets[BACKEND_CLIENT]
                record_start_times(service)
                service.save(layout.service_file)
                print(f"ready: central {central.server}, tenant {tenant.server}, IdP {keycloak.url}", flush=True)
                while not stop.wait(PERIOD):
                    with contextlib.suppress(OSError, AssertionError, ValueError):
                        central.doubles.check_provider_configs(True)  # provider-anynines: the brokers answer
                        export_requested(central)
    finally:
        keycloak.stop()
    print("stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    layout = Layout(Path(args[0]))
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())
    serve(layout, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
