"""A local Kubernetes control plane for the real-engine tests: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok, all on 127.0.0.1, built by e2e/toolchain/build.

Nodes and pods are simulated by kwok: nodes sized like t3a.xlarge, pods scheduled by the real
scheduler and made Ready by kwok's stages, so Deployments become Available without any image.
No webhook server can run (pods are fake), so the API server's webhook admission plugins are off, and
so is the taint of new nodes (no kubelet reports readiness; kwok does, after the node exists).
Every process started here is stopped by `stop()`, also when a test fails.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 120.0
NODE_CAPACITY = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"}  # t3a.xlarge
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message names the binary or the log to read."""


def die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def self_signed(directory: Path, name: str, common_name: str) -> None:
    """<name>.key and <name>.crt: an EC P-256 key and a self-signed certificate valid for two days."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2")
    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-subj",
        f"/CN={common_name}",
        cwd=directory,
    )


def make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, an admin client certificate and the SA key pair."""
    pki.mkdir(parents=True, exist_ok=True)
    self_signed(pki, "ca", "klutch-e2e-ca")
    sans = "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc"
    for name, subject, ext in (
        ("apiserver", "/CN=kube-apiserver", sans),
        ("admin", "/CN=admin/O=system:masters", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            subject,
            cwd=pki,
        )
        (pki / f"{name}.ext").write_text(ext + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.crt",
            "-extfile",
            f"{name}.ext",
            cwd=pki,
        )
    openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def kubeconfig(server: str, pki: Path, context: str, namespace: str | None = None) -> str:
    b64 = {n: base64.b64encode((pki / n).read_bytes()).decode() for n in ("ca.crt", "admin.crt", "admin.key")}
    ctx: dict[str, Any] = {"cluster": context, "user": "admin", **({"namespace": namespace} if namespace else {})}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": context,
            "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": b64["ca.crt"]}}],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate-data": b64["admin.crt"], "client-key-data": b64["admin.key"]},
                }
            ],
            "contexts": [{"name": context, "context": ctx}],
        },
        indent=2,
    )


def terminate(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of `proc` (started with its own session), if it still runs."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)


def wait_or_kill(proc: subprocess.Popen, timeout: float) -> None:
    """Wait for `proc`; past `timeout` seconds, SIGKILL its process group and wait again."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


class LocalTls:
    """A server of the tests on https://127.0.0.1:`port`, with its certificates in `workdir`/pki."""

    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_pem(self) -> str:
        return (self.pki / "ca.crt").read_text()


@dataclass
class ControlPlane(LocalTls):
    """One local cluster. `name` labels its logs and kubeconfig context."""

    name: str
    bin_dir: Path
    stages_dir: Path
    workdir: Path
    nodes: int = 2
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return self.url

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> ControlPlane:
        missing = [
            b
            for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
            if not (self.bin_dir / b).exists()
        ]
        if missing:
            raise ControlPlaneError(f"missing in {self.bin_dir}: {', '.join(missing)} (run e2e/toolchain/build)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        make_pki(self.pki)
        self.kubeconfig_path.write_text(kubeconfig(self.server, self.pki, f"klutch-e2e-{self.name}"))
        deadline = time.monotonic() + START_TIMEOUT
        try:
            self._etcd()
            self._apiserver()
            self._wait(deadline, "kube-apiserver", self._ready)
            self._controllers()
            self._wait(deadline, "default ServiceAccount", self._has_default_sa)
            self.add_nodes(self.nodes)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.processes.values())):
            terminate(proc)
        for proc in self.processes.values():
            wait_or_kill(proc, timeout=15)
        self.processes.clear()

    def restart_apiserver(self, down_for: float) -> None:
        """Kill the API server, wait, start it again (a fault: the control plane goes away mid-deploy)."""
        proc = self.processes.pop("kube-apiserver")
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no graceful drain of open watches
        proc.wait(timeout=30)
        time.sleep(down_for)
        self._apiserver()
        self._wait(time.monotonic() + START_TIMEOUT, "kube-apiserver", self._ready)

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def _etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--name={self.name}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster={self.name}=http://127.0.0.1:{peer}",
            "--listen-metrics-urls=",
            "--quota-backend-bytes=4294967296",
            "--unsafe-no-fsync",
        )

    def _apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--disable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,TaintNodesByCondition",
            "--enable-priority-and-fairness=false",
            "--endpoint-reconciler-type=none",
        )

    def _controllers(self) -> None:
        kc, pki = str(self.kubeconfig_path), self.pki
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            "--controllers=*,-nodeipam,-nodelifecycle,-service-lb-controller,-route,-cloud-node-lifecycle",
            "--leader-elect=false",
        )
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={kc}",
            "--bind-address=127.0.0.1",
            f"--secure-port={free_port()}",
            "--leader-elect=false",
        )
        stages = sorted(str(p) for p in self.stages_dir.rglob("*.yaml"))
        self._spawn(
            "kwok",
            f"--kubeconfig={kc}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{free_port()}",
            "--cidr=10.244.0.1/16",
            "--node-ip=10.244.255.1",
            *[f"--config={s}" for s in stages],
        )

    def _wait(self, deadline: float, what: str, check: Any) -> None:
        while time.monotonic() < deadline:
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead:
                raise ControlPlaneError(
                    f"{dead[0]} exited: see {self.workdir / (dead[0] + '.log')}\n" + self.log_tail(dead[0])
                )
            if check():
                return
            time.sleep(0.5)
        raise ControlPlaneError(f"{what} not ready within {START_TIMEOUT:.0f}s: logs in {self.workdir}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _ready(self) -> bool:
        try:
            return self.api("GET", "/readyz", raw=True) == b"ok"
        except OSError:
            return False

    def api(
        self, method: str, path: str, body: Any = None, *, raw: bool = False, content_type: str = "application/json"
    ) -> Any:
        """One request to the API server as admin (the test doubles' client)."""
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.server}{path}", data=data, method=method, headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, context=ctx, timeout=10) as r:
            payload = r.read()
        return payload if raw else json.loads(payload)

    def _has_default_sa(self) -> bool:
        return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0

    # ---------------------------------------------------------------- objects
    def add_nodes(self, count: int) -> None:
        for i in range(count):
            name = f"kwok-{self.name}-{i}"
            self.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            "node.kubernetes.io/instance-type": "t3a.xlarge",
                        },
                    },
                    "status": {"allocatable": NODE_CAPACITY, "capacity": NODE_CAPACITY},
                }
            )

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig_path}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done

    def apply(self, obj: dict[str, Any]) -> None:
        self.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=klutch-e2e",
            "-f",
            "-",
            input=json.dumps(obj),
        )

    def get(self, resource: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        args = ["get", resource, *([name] if name else []), *(["-n", namespace] if namespace else []), "-o", "json"]
        return json.loads(self.kubectl(*args).stdout)

    def items(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        scope = ["-n", namespace] if namespace else ["-A"]
        done = self.kubectl("get", resource, *scope, "-o", "json", check=False)
        return json.loads(done.stdout)["items"] if done.returncode == 0 else []

    def exists(self, resource: str, name: str, namespace: str | None = None) -> bool:
        args = ["get", resource, name, *(["-n", namespace] if namespace else [])]
        return self.kubectl(*args, check=False).returncode == 0


@contextlib.contextmanager
def running(plane: ControlPlane) -> Iterator[ControlPlane]:
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()
