"""The sandbox's deployments with the real Pulumi CLI: the central project on stack `sandbox`, then the
tenant project bound to it, each in `<state>/projects/` against a file backend in the state.

The central stack file `<state>/projects/central/Pulumi.sandbox.yaml` is written once and then belongs
to the user: `klutch-sandbox up` applies whatever it says. Only what the sandbox must supply is set on
every `up`: a generated password for each broker or backup manager that has none.

The tenant binds through the backend double on 127.0.0.1: the real central stack's URLs name
`https://<backend.host>/…`, which no local server answers, so the tenant's StackReference reads
`sandbox-bind`, a stack of project klutch-central holding the outputs a tenant reads from the real
stack, with the backend's URLs and CA replaced by the double's.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import yaml

from klutch import catalog
from klutch.outputs import tenant_output_names
from klutch.sandbox.cli import ROOT, Pulumi, offline_env, project_copy
from klutch.sandbox.local import TOOLCHAIN
from klutch.sandbox.service import BACKEND_CLIENT, BACKEND_HOST
from klutch.sandbox.standins.provider import write_plugins
from klutch.sandbox.state import Layout, Service

STACK = "sandbox"
BIND_STACK = "sandbox-bind"
CLUSTER_ID = "sandbox"
BROKER = "http://127.0.0.1:9"  # no a9s broker runs here; provider-anynines' check is a double
SERVICE_KINDS = ("serviceBroker", "backupManager")
# The dynamic-provider plugin of the tenant's Binding: the toolchain has no `pulumi-resource-pulumi-python`.
DYNAMIC_PLUGIN = '#!/bin/sh\nexec "{python}" -u -m pulumi.dynamic "$@"\n'
BIND_PROJECT = "name: klutch-central\nruntime:\n  name: python\n  options:\n    virtualenv: ../.venv\n"
BIND_PROGRAM = """import json
import pathlib

import pulumi

for name, value in json.loads(pathlib.Path("outputs.json").read_text()).items():
    pulumi.export(name, value)
"""


def environment(layout: Layout, service: Service) -> dict[str, str]:
    """The CLI's environment: offline, the sandbox's file backend, home and passphrase, trusting the IdP's CA."""
    layout.pulumi_home.mkdir(parents=True, exist_ok=True)
    layout.pulumi_state.mkdir(parents=True, exist_ok=True)
    if not (layout.plugins / "pulumi-resource-pulumi-python").exists():
        write_plugins(layout.plugins)
        shim = layout.plugins / "pulumi-resource-pulumi-python"
        shim.write_text(DYNAMIC_PLUGIN.format(python=ROOT / ".venv" / "bin" / "python"))
        shim.chmod(0o755)
    env = offline_env([layout.plugins, TOOLCHAIN / "bin"], layout.pulumi_home, layout.pulumi_state)
    env["PULUMI_CONFIG_PASSPHRASE"] = layout.passphrase()
    env["SSL_CERT_FILE"] = service.servers["ca-bundle"]  # the system's CAs and Keycloak's
    return env


def central_config(service: Service, services: tuple[str, ...] = ("postgresql",)) -> dict[str, Any]:
    """The first sandbox stack file's settings: an existing cluster, charts and CRDs from the local mirror."""
    release, charts = catalog.DEFAULT_RELEASE, service.servers["charts"]
    return {
        "environment": "dev",
        "klutchRelease": release,
        "cluster": {"mode": "existing"},
        "dataServices": {
            svc: {kind: {"url": f"{BROKER}/{svc}/{kind}", "username": "admin"} for kind in SERVICE_KINDS}
            for svc in services
        },
        "exposure": {"controller": "envoy-gateway", "acmeEmail": "platform-team@sandbox.test"},
        "backend": {"host": BACKEND_HOST},
        "oidc": {"issuerUrl": service.servers["issuer"], "clientId": BACKEND_CLIENT},
        "mirrors": {
            "charts": dict.fromkeys(("crossplane", "cert-manager", "envoy-gateway"), charts),
            "kubeBindCrds": [f"{charts}/kube-bind-{release}.yaml"],
        },
    }


def stack_file(pulumi: Pulumi) -> Path:
    return pulumi.cwd / f"Pulumi.{pulumi.stack}.yaml"


def write_config(pulumi: Pulumi, namespace: str, config: dict[str, Any]) -> None:
    document = yaml.safe_load(stack_file(pulumi).read_text()) or {}
    document["config"] = {
        "pulumi:disable-default-providers": ["kubernetes"],
        **{f"{namespace}:{k}": v for k, v in config.items()},
    }
    stack_file(pulumi).write_text(yaml.safe_dump(document, sort_keys=False))


def set_kubeconfig(pulumi: Pulumi, namespace: str, path: Path) -> None:
    pulumi.run("config", "set", "--secret", f"{namespace}:kubeconfig", input=path.read_text())


def project(layout: Layout, source: Path, name: str, stack: str, env: dict[str, str]) -> tuple[Pulumi, bool]:
    """The project's copy under `<state>/projects/<name>` and its stack; True when the stack is new."""
    cwd = project_copy(source, layout.projects / name)
    pulumi = Pulumi(cwd=cwd, env=env, stack=stack)
    new = not stack_file(pulumi).exists()
    if new:
        pulumi.init()
    return pulumi, new


def central(layout: Layout, service: Service, env: dict[str, str]) -> Pulumi:
    """The central project on stack `sandbox`: configured when new, missing broker passwords filled."""
    pulumi, new = project(layout, ROOT, "central", STACK, env)
    if new:
        write_config(pulumi, "klutch-central", central_config(service))
        set_kubeconfig(pulumi, "klutch-central", layout.kubeconfig("central"))
        pulumi.config("klutch-central:oidc.clientSecret", service.client["oidc-secret"], secret=True, path=True)
    for key in missing_passwords(yaml.safe_load(stack_file(pulumi).read_text()) or {}):
        pulumi.config(f"klutch-central:{key}", secrets.token_urlsafe(12), secret=True, path=True)
    return pulumi


def missing_passwords(document: dict[str, Any]) -> list[str]:
    """`dataServices.<svc>.<kind>.password` for each broker and backup manager the stack file gives no password."""
    services = (document.get("config") or {}).get("klutch-central:dataServices") or {}
    return [
        f"dataServices.{svc}.{kind}.password"
        for svc, entry in services.items()
        for kind in SERVICE_KINDS
        if isinstance(entry, dict) and isinstance(entry.get(kind), dict) and "password" not in entry[kind]
    ]


def bind_outputs(real: dict[str, Any], service: Service) -> dict[str, Any]:
    """The outputs a tenant reads (none of them secret) from the real stack, with the backend's URLs and
    CA replaced by the double's; the real stack's secret outputs (its kubeconfig) are not carried over."""
    backend = service.servers["backend"]
    release = catalog.RELEASES[real["klutchRelease"]]
    return {
        **{name: real[name] for name in tenant_output_names() if name in real},
        "exportUrl": f"{backend}/export",
        "bindNonInteractiveUrl": f"{backend}/bind-noninteractive",
        "tlsCaPem": service.client["ca"],
        "kubectlBindCommand": f"kubectl bind {backend}/export --konnector-image={release.konnector_image}",
    }


def bind_stack(layout: Layout, outputs: dict[str, Any], env: dict[str, str]) -> str:
    """`sandbox-bind` exporting `outputs`; the tenant's `centralStack`."""
    cwd = layout.projects / "central-bind"
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "Pulumi.yaml").write_text(BIND_PROJECT)
    if not (layout.projects / ".venv").exists():
        (layout.projects / ".venv").symlink_to(ROOT / ".venv")
    (cwd / "__main__.py").write_text(BIND_PROGRAM)
    (cwd / "outputs.json").write_text(json.dumps(outputs, indent=2))
    pulumi = Pulumi(cwd=cwd, env=env, stack=BIND_STACK)
    if not (cwd / f"Pulumi.{BIND_STACK}.yaml").exists():
        pulumi.init()
        (cwd / f"Pulumi.{BIND_STACK}.yaml").write_text("config: {}\n")
    pulumi.up()
    return f"organization/klutch-central/{BIND_STACK}"


def tenant(layout: Layout, service: Service, central_stack: str, apis: list[str], env: dict[str, str]) -> Pulumi:
    """The tenant project on stack `sandbox`, binding the tenant cluster through the backend double."""
    pulumi, new = project(layout, ROOT / "tenant", "tenant", STACK, env)
    if new:
        config = {
            "klutchRelease": catalog.DEFAULT_RELEASE,
            "centralStack": central_stack,
            "clusterId": CLUSTER_ID,
            "oidc": {"tokenUrl": service.servers["token"], "clientId": service.client["id"]},
            "apis": apis,
            "namespaces": ["apps"],
        }
        write_config(pulumi, "klutch-tenant", config)
        pulumi.config("klutch-tenant:oidc.clientSecret", service.client["secret"], secret=True, path=True)
        set_kubeconfig(pulumi, "klutch-tenant", layout.kubeconfig("tenant"))
    return pulumi


def tenant_apis(real: dict[str, Any]) -> list[str]:
    """What the tenant binds: every API the central stack exports."""
    return [f"{api['resource']}.{api['group']}" for api in real["bindingApis"]]
