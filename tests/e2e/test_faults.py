"""Faults under the real engine: the central API server goes away in the middle of `pulumi up`."""

from __future__ import annotations

import subprocess
import time

import pytest

from klutch import catalog
from tests.e2e.helpers import Lab, succeeded
from tests.e2e.stacks import assert_rendered_objects_exist, configure, existing_cluster_config

pytestmark = pytest.mark.e2e
DOWN_FOR = 15.0


def test_an_up_interrupted_by_the_api_server_converges_on_the_next_up(lab: Lab):
    with lab.cluster("fault") as plane:
        pulumi = lab.central_project("fault")
        config = existing_cluster_config(plane, lab.chart_repo, catalog.DEFAULT_RELEASE, "envoy-gateway")
        configure(pulumi, plane, config)
        command = ["pulumi", "up", "--yes", "--skip-preview", "--stack", pulumi.stack, "--non-interactive"]
        up = subprocess.Popen(
            command, cwd=pulumi.cwd, env=pulumi.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + 120
        while not plane.exists("namespace", "crossplane-system") and time.monotonic() < deadline:
            time.sleep(0.2)  # some resources exist: the API server goes away now
        assert plane.exists("namespace", "crossplane-system")
        plane.restart_apiserver(down_for=DOWN_FOR)
        output, _ = up.communicate(timeout=1500)

        if up.returncode != 0:  # the engine reports what failed, naming the API server it could not reach
            assert "error" in output.lower() and ("127.0.0.1" in output or "connection refused" in output), output
        succeeded(pulumi.up(check=False), f"doubles: {plane.doubles.errors[-5:]}")
        state = pulumi.state()["deployment"]
        assert not state.get("pending_operations")
        pulumi.preview("--expect-no-changes")
        assert_rendered_objects_exist(plane, pulumi, lab.tmp.mktemp("fault-render"))
        assert len(plane.items("providerconfigs.dataservices.anynines.com")) == 4
