"""The GitHub workflows and this repository's CI script: they parse, and their key structure holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
SETUP_ACTION = ROOT / ".github" / "actions" / "pulumi-setup" / "action.yml"
SKIP_UNLESS_CLOUD = "vars.PULUMI_AWS_ROLE_ARN != '' && vars.PULUMI_BACKEND_URL != ''"


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def runs(job: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in job["steps"])


@pytest.fixture(scope="module")
def pr() -> dict[str, Any]:
    return load(WORKFLOWS / "pull_request.yml")


@pytest.fixture(scope="module")
def push() -> dict[str, Any]:
    return load(WORKFLOWS / "push.yml")


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    return load(SETUP_ACTION)


@pytest.fixture(scope="module")
def tenants() -> dict[str, Any]:
    return load(WORKFLOWS / "tenants.yml")


@pytest.fixture(scope="module")
def drift() -> dict[str, Any]:
    return load(WORKFLOWS / "drift.yml")


@pytest.fixture(scope="module")
def checks() -> dict[str, Any]:
    return load(WORKFLOWS / "checks.yml")


def test_one_reusable_check_job_gates_both_workflows(pr, push, checks):
    assert pr["on"] == {"pull_request": {"branches": ["main"]}}
    assert checks["on"]["workflow_call"]["outputs"]["stacks"]["value"] == "${{ jobs.checks.outputs.stacks }}"
    for workflow in (pr, push):
        assert workflow["jobs"]["checks"] == {"uses": "./.github/workflows/checks.yml"}  # forks included: no `if`
    commands = runs(checks["jobs"]["checks"])
    for command in (
        "pip install -r requirements-dev.txt",
        "ruff check . && .venv/bin/ruff format --check .",
        ".venv/bin/python -m pytest",
        "klutch-render --all --check --out render",
        "scripts/scan render",
        "klutch-render --list",
        '.venv/bin/klutch-fleet select --base ""',
    ):
        assert command in commands
    assert commands.index("klutch-render --all --check --out render") < commands.index("scripts/scan render")
    assert runs(checks["jobs"]["e2e"]).strip() == "bash e2e/run"
    assert checks["jobs"]["checks"]["outputs"]["stacks"] == "${{ steps.stacks.outputs.stacks }}"


def test_pull_request_preview_per_stack_with_the_policy_pack_and_a_pr_comment(pr):
    preview = pr["jobs"]["preview"]
    assert preview["needs"] == "checks"
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.checks.outputs.stacks) }}"
    [step] = steps_using(preview, "pulumi/actions")
    assert step["with"]["command"] == "preview"
    assert step["with"]["policyPacks"] == "${{ github.workspace }}/policy"
    assert step["with"]["comment-on-pr"] is True
    assert step["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
    assert (step["with"]["stack-name"], step["with"]["work-dir"]) == (
        "${{ matrix.stack.stack }}",
        "${{ matrix.stack.dir }}",
    )
    assert preview["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
    assert pr["permissions"] == {"contents": "read"}


def test_pull_request_preview_is_skipped_without_credentials_and_for_forks(pr):
    condition = pr["jobs"]["preview"]["if"]
    assert condition.startswith(SKIP_UNLESS_CLOUD)
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "secrets." not in condition  # the secrets context is not available in a job-level if


def test_setup_assumes_an_aws_role_by_oidc_and_installs_the_policy_pack(setup):
    steps = setup["runs"]["steps"]
    assert setup["runs"]["using"] == "composite"
    [aws] = [s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert aws["with"]["role-to-assume"] == "${{ inputs.role-arn }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(aws["with"])
    shell = "\n".join(s.get("run", "") for s in steps)
    assert "python -m venv .venv && .venv/bin/pip install -q -r requirements.txt" in shell
    [secret_step] = [s for s in steps if "klutch-fleet secrets" in s.get("run", "")]
    assert secret_step["env"]["PULUMI_SECRET_CONFIG"] == "${{ inputs.secret-config }}"  # never on a command line
    assert "${{" not in secret_step["run"]
    assert setup["inputs"]["stack"] == {
        "description": "Stack name; empty for every stack of the project the backend has (the fleet view)",
        "required": False,
        "default": "",
    }


def test_push_deploys_dev_then_prod_behind_an_environment(push):
    assert push["on"] == {"push": {"branches": ["main"]}}
    jobs = {k: v for k, v in push["jobs"].items() if k in ("checks", "up-dev", "up-prod")}
    assert (jobs["up-dev"]["needs"], jobs["up-prod"]["needs"]) == ("checks", "up-dev")
    assert (jobs["up-dev"]["environment"], jobs["up-prod"]["environment"]) == ("dev", "prod")
    for job, stack in (("up-dev", "dev"), ("up-prod", "prod")):
        [step] = steps_using(jobs[job], "pulumi/actions")
        assert (step["with"]["command"], step["with"]["stack-name"]) == ("up", stack)
        assert step["with"]["policyPacks"] == "${{ github.workspace }}/policy"
        assert jobs[job]["if"] == SKIP_UNLESS_CLOUD
        [setup_step] = steps_using(jobs[job], "./.github/actions/pulumi-setup")
        assert setup_step["with"]["stack"] == stack
    assert push["concurrency"]["cancel-in-progress"] is False


@pytest.mark.parametrize("path", [*sorted(WORKFLOWS.glob("*.yml")), SETUP_ACTION], ids=lambda p: p.name)
def test_actions_are_pinned_and_the_cli_matches_the_sdk(path):
    text = path.read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses
    for ref in uses:
        assert ref.startswith("./") or re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", ref), ref
    sdk = re.search(r'"pulumi==(\S+)"', (ROOT / "pyproject.toml").read_text())[1]
    for version in re.findall(r"PULUMI_VERSION:\s*\"([^\"]+)\"", text):
        assert version == sdk


def test_ci_script_runs_the_readme_commands_after_the_offline_checks():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    tests = "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest"
    lines = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "set -euo pipefail"
    assert "rm -rf .venv" in lines  # a fresh venv on every run
    assert tests in readme and "bash e2e/run" in readme
    render = lines.index('.venv/bin/klutch-render --all --check --out "$render_out"')
    assert render < lines.index('scripts/scan "$render_out"') < lines.index(tests)  # the scanner reads the render
    assert lines[-2:] == [tests, "bash e2e/run"]  # the e2e's pytest line is the run's last word


def test_push_selects_tenants_in_the_package_and_updates_them_after_their_central_stack(push):
    jobs = push["jobs"]
    select = jobs["select"]
    assert (select["needs"], select["if"]) == ("checks", SKIP_UNLESS_CLOUD)
    assert select["steps"][0]["with"] == {"fetch-depth": 0}
    [step] = [s for s in select["steps"] if s.get("id") == "select"]
    assert step["run"] == (
        '.venv/bin/klutch-fleet select --base "$BASE" --head "$GITHUB_SHA" --github-output "$GITHUB_OUTPUT"'
    )
    assert "gh run list --workflow push.yml --branch main --status success" in runs(select)
    assert set(select["outputs"]) == {"base", "up-dev", "up-prod", "retire"}
    for central in ("dev", "prod"):
        job = jobs[f"tenants-{central}"]
        assert job["needs"] == ["select", f"up-{central}"]  # after the central stack's up
        assert job["if"] == f"needs.select.outputs.up-{central} != '[]'"
        assert job["uses"] == "./.github/workflows/tenants.yml"
        assert job["permissions"] == {"contents": "read", "id-token": "write"}  # the called jobs' OIDC token
        assert job["with"] == {
            "operation": "up",
            "stacks": f"${{{{ needs.select.outputs.up-{central} }}}}",
            "environment": "tenants",
        }
        assert job["secrets"] == "inherit"


def test_a_removed_tenant_is_destroyed_only_behind_a_reviewer_from_the_commit_that_had_its_file(push):
    retire = push["jobs"]["retire-tenants"]
    assert (retire["needs"], retire["if"]) == ("select", "needs.select.outputs.retire != '[]'")
    assert retire["permissions"] == {"contents": "read", "id-token": "write"}
    assert retire["with"] == {
        "operation": "retire",
        "stacks": "${{ needs.select.outputs.retire }}",
        "environment": "tenants-retire",
        "ref": "${{ needs.select.outputs.base }}",
    }


def test_the_tenant_matrix_is_bounded_never_fails_fast_and_never_overlaps_one_stack(tenants):
    assert set(tenants["on"]["workflow_call"]["inputs"]) == {"operation", "stacks", "environment", "ref"}
    job = tenants["jobs"]["stack"]
    assert job["strategy"] == {
        "fail-fast": False,
        "max-parallel": "${{ fromJSON(vars.TENANT_MAX_PARALLEL || '4') }}",
        "matrix": {"stack": "${{ fromJSON(inputs.stacks) }}"},
    }
    assert job["concurrency"] == {"group": "pulumi-klutch-tenant-${{ matrix.stack }}", "cancel-in-progress": False}
    assert job["environment"] == "${{ inputs.environment }}"
    [setup_step] = steps_using(job, "./.github/actions/pulumi-setup")
    assert setup_step["with"]["project"] == "klutch-tenant" and setup_step["with"]["stack"] == "${{ matrix.stack }}"
    assert setup_step["with"]["secret-config"] == "${{ secrets.PULUMI_SECRET_CONFIG }}"
    commands = runs(job)
    assert '.venv/bin/klutch-fleet up --policy-pack policy "$STACK"' in commands
    assert '.venv/bin/klutch-fleet retire "$STACK"' in commands
    assert "${{" not in commands  # inputs reach the shell through env only


def test_the_drift_check_runs_daily_and_opens_or_updates_one_issue(drift):
    assert drift["on"]["schedule"] == [{"cron": "17 5 * * *"}]
    job = drift["jobs"]["drift"]
    assert job["if"] == SKIP_UNLESS_CLOUD
    assert job["permissions"] == {"contents": "read", "id-token": "write", "issues": "write"}
    [setup_step] = steps_using(job, "./.github/actions/pulumi-setup")
    assert "stack" not in setup_step["with"]  # every tenant stack's secret config
    commands = runs(job)
    assert ".venv/bin/klutch-fleet status --check-drift" in commands
    assert "gh issue comment" in commands and "gh issue create --title" in commands
    [issue] = [s for s in job["steps"] if s.get("name") == "Open or update the drift issue"]
    assert issue["if"] == "steps.status.outputs.code == '2'"
