"""Bad input through the real CLI (a missing secret, a misspelt key, a misspelt config namespace): the
program's own message, no stack trace, nothing created."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from klutch import catalog
from klutch.sandbox.cli import Pulumi
from klutch.sandbox.controlplane import ControlPlane
from klutch.sandbox.servers import ChartRepository
from tests.e2e.helpers import central_cluster, central_project
from tests.e2e.stacks import configure, existing_cluster_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory, bin_dir: Path) -> Iterator[ControlPlane]:
    with central_cluster("bad-input", tmp_path_factory, bin_dir) as plane:
        yield plane


def stack(
    name: str, plane: ControlPlane, repo: ChartRepository, workspace: dict[str, Path], plugin_dirs: list[Path]
) -> Pulumi:
    pulumi = central_project(workspace, plugin_dirs, name)
    configure(pulumi, plane, existing_cluster_config(plane, repo, catalog.DEFAULT_RELEASE, "envoy-gateway"))
    return pulumi


def edit_config(pulumi: Pulumi, **changes: object) -> None:
    path = pulumi.cwd / f"Pulumi.{pulumi.stack}.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"].update({f"klutch-central:{k}": v for k, v in changes.items()})
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def assert_refused_with(pulumi: Pulumi, plane: ControlPlane, *expected: str) -> None:
    done = pulumi.preview(check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    for text in expected:
        assert text in output, output[-3000:]
    assert "Traceback" not in output
    done = pulumi.run("up", "--yes", "--skip-preview", check=False)  # `up` refuses the same way, creating nothing
    assert done.returncode != 0 and expected[0] in done.stdout + done.stderr
    assert [r["type"] for r in pulumi.resources() if r["type"] != "pulumi:pulumi:Stack"] == []
    assert plane.items("namespaces", None) and not plane.exists("namespace", "crossplane-system")


def test_a_missing_secret_names_the_command_that_sets_it(plane, chart_repo, workspace, plugin_dirs):
    pulumi = stack("missing-secret", plane, chart_repo, workspace, plugin_dirs)
    pulumi.run("config", "rm", "--path", "klutch-central:oidc.clientSecret")
    assert_refused_with(
        pulumi,
        plane,
        "klutch-central:oidc.clientSecret",
        "required secret; set it with `pulumi config set --secret --path 'oidc.clientSecret'",
    )


def test_an_unknown_key_names_the_closest_valid_one(plane, chart_repo, workspace, plugin_dirs):
    pulumi = stack("unknown-key", plane, chart_repo, workspace, plugin_dirs)
    edit_config(pulumi, exposure={"controler": "envoy-gateway", "acmeEmail": "ops@e2e.test"})
    assert_refused_with(pulumi, plane, "klutch-central:exposure.controler", "did you mean 'controller'?")


def test_a_misspelt_config_namespace_names_the_key_it_meant(plane, chart_repo, workspace, plugin_dirs):
    pulumi = stack("namespace-typo", plane, chart_repo, workspace, plugin_dirs)
    pulumi.run("config", "set", "klutch-centrall:environment", "prod")  # the CLI hands every namespace over
    assert_refused_with(
        pulumi,
        plane,
        "klutch-centrall:environment = 'prod': unknown config namespace 'klutch-centrall'; "
        "did you mean 'klutch-central:environment'?",
    )
