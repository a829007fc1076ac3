"""Stack configuration of the real-engine scenarios, and the offline render of the same stack to compare with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from klutch.offline import render
from klutch.sandbox.cli import ROOT, Pulumi
from klutch.sandbox.controlplane import ControlPlane
from klutch.sandbox.servers import ChartRepository

SERVICES = ("postgresql", "mongodb")
HOST = "klutch.e2e.test"
BROKER = "http://127.0.0.1:9"  # nothing listens there: an unreachable broker must not fail the deploy


def existing_cluster_config(
    plane: ControlPlane,
    repo: ChartRepository,
    release: str,
    controller: str,
    services: tuple[str, ...] = SERVICES,
    protect: bool = False,
) -> dict[str, Any]:
    """A central stack in cluster.mode existing with mirrors pointing at the local chart repository."""
    data_services = {
        svc: {
            kind: {"url": f"{BROKER}/{svc}/{kind}", "username": "admin"} for kind in ("serviceBroker", "backupManager")
        }
        for svc in services
    }
    return {
        "environment": "dev",
        "protect": protect,
        "klutchRelease": release,
        "cluster": {"mode": "existing"},
        "dataServices": data_services,
        "exposure": {
            "controller": controller,
            "acmeServer": "letsencrypt-staging",
            "acmeEmail": "platform-team@e2e.test",
        },
        "backend": {"host": HOST},
        "oidc": {"issuerUrl": "https://keycloak.e2e.test/realms/klutch", "clientId": "kube-bind"},
        "mirrors": {
            "charts": dict.fromkeys(("crossplane", "cert-manager", controller), repo.url),
            "kubeBindCrds": [f"{repo.url}/kube-bind-{release}.yaml"],
        },
    }


def configure(pulumi: Pulumi, plane: ControlPlane, config: dict[str, Any]) -> None:
    """Plain values into the stack file, as an operator edits it; secrets through `config set --secret`."""
    stack_file = pulumi.cwd / f"Pulumi.{pulumi.stack}.yaml"
    document = yaml.safe_load(stack_file.read_text()) or {}
    document["config"] = {
        "pulumi:disable-default-providers": ["kubernetes"],
        **{f"klutch-central:{k}": v for k, v in config.items()},
    }
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))
    pulumi.run("config", "set", "--secret", "klutch-central:kubeconfig", input=plane.kubeconfig_path.read_text())
    pulumi.config("klutch-central:oidc.clientSecret", "oidc-secret-e2e", secret=True, path=True)
    for svc in config.get("dataServices", {}):
        for kind in ("serviceBroker", "backupManager"):
            pulumi.config(
                f"klutch-central:dataServices.{svc}.{kind}.password", f"{svc}-{kind}-pw", secret=True, path=True
            )


def rendered_objects(pulumi: Pulumi, out: Path) -> list[dict[str, Any]]:
    """Every Kubernetes object the offline render writes for this stack file."""
    code = render.main(["--project-dir", str(pulumi.cwd), "--stack", pulumi.stack, "--out", str(out)])
    assert code == 0
    objects = []
    for path in sorted(out.rglob("*.yaml")):
        if "/kubernetes/" in str(path):
            objects.append(yaml.safe_load(path.read_text()))
    return objects


def assert_rendered_objects_exist(plane: ControlPlane, pulumi: Pulumi, out: Path) -> None:
    """Every Kubernetes object of the offline render exists on the cluster (by kind, name and namespace)."""
    for obj in rendered_objects(pulumi, out):
        meta, kind = obj["metadata"], obj["kind"].lower()
        group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else None
        resource = f"{kind}.{group}" if group else kind
        assert plane.exists(resource, meta["name"], meta.get("namespace")), (obj["kind"], meta["name"])


def transformed_program(pulumi: Pulumi, transform: str | None) -> None:
    """The project copy's `__main__.py`: the program with a stack transformation `transform(args)`, whose
    source is `transform` (a user's own change), or the checkout's program again (None)."""
    main = (ROOT / "__main__.py").read_text()
    if transform is not None:
        main = f"""import pulumi

from klutch.central.program import main

{transform}

pulumi.runtime.register_stack_transformation(transform)
main()
"""
    (pulumi.cwd / "__main__.py").write_text(main)
