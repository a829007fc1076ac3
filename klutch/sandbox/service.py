"""The sandbox's background service: two control planes (central and tenant) and the doubles of what a
real cluster and its surroundings run, until SIGTERM.

Started detached by `klutch-sandbox up` (`python -m klutch.sandbox.service <state dir>`), its output in
`<state>/logs/service.log`. Once everything answers it writes `<state>/service.json`: its own pid, the
pid of every process it started, the servers' addresses and the backend double's client. The control
planes' processes die with it (PR_SET_PDEATHSIG), and SIGTERM stops everything in order.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from klutch import catalog
from klutch.sandbox import local
from klutch.sandbox.controlplane import ControlPlane, running
from klutch.sandbox.fake_backend import FakeBackend
from klutch.sandbox.processes import record_start_times
from klutch.sandbox.state import Layout, Service

CLIENT_ID = "sandbox-tenant"
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


def record(layout: Layout, central: ControlPlane, tenant: ControlPlane, repo_url: str, backend: FakeBackend) -> None:
    service = Service(pid=os.getpid())
    for plane in (central, tenant):
        service.pids.update({f"{plane.name}/{n}": p.pid for n, p in plane.processes.items()})
        service.servers[f"{plane.name}-apiserver"] = plane.server
    service.servers.update({"charts": repo_url, "backend": backend.url, "token": backend.token_url})
    service.client = {"id": backend.client_id, "secret": backend.client_secret, "ca": backend.ca_pem}
    record_start_times(service)
    service.save(layout.service_file)


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
    with local.chart_repository(layout.root / "charts") as repo, planes(layout) as (central, tenant):
        backend = FakeBackend(central, layout.root / "backend", CLIENT_ID, secrets.token_urlsafe(18))
        with backend:
            record(layout, central, tenant, repo.url, backend)
            print(f"ready: central {central.server}, tenant {tenant.server}, backend {backend.url}", flush=True)
            while not stop.wait(PERIOD):
                with contextlib.suppress(OSError, AssertionError, ValueError):
                    central.doubles.check_provider_configs(True)  # provider-anynines: the brokers answer
                    export_requested(central)
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
