"""The GitHub workflows and the composite action, linted by actionlint (built from the Go module proxy into
the toolchain): expression types, contexts available where they are used, job outputs and needs, matrix
and reusable-workflow inputs, action inputs. tests/test_workflows.py checks what they must do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from klutch.sandbox.cli import ROOT
from tests.e2e.helpers import succeeded

pytestmark = pytest.mark.e2e


def actionlint(bin_dir: Path, repo: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "actionlint"), "-no-color"], cwd=repo, capture_output=True, text=True, timeout=300
    )


def test_actionlint_passes_on_every_workflow(bin_dir: Path):
    done = succeeded(actionlint(bin_dir, ROOT))
    assert done.stdout == ""


def test_actionlint_refuses_a_matrix_job_reading_an_output_its_select_job_lacks(bin_dir: Path, tmp_path: Path):
    """The linter is live: a typo'd job output in a copy of push.yml fails, named with file and line."""
    shutil.copytree(ROOT / ".github", tmp_path / ".github")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    push = tmp_path / ".github" / "workflows" / "push.yml"
    push.write_text(push.read_text().replace("needs.select.outputs.up-prod }}", "needs.select.outputs.up-prd }}"))
    done = actionlint(bin_dir, tmp_path)
    assert done.returncode == 1
    assert ".github/workflows/push.yml:" in done.stdout and 'property "up-prd" is not defined' in done.stdout
