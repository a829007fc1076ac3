"""The tenant fleet: which stacks a merge deploys or retires (in real git repositories), the parallel
runner's bound, and the fleet view's rows (offline: no Pulumi CLI)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from klutch.fleet import cli, runner, secrets, select, status
from klutch.fleet.select import Change, Plan, Tenant

CENTRALS = ("dev", "prod")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def tenant_file(cluster_id: str, central: str = "dev") -> str:
    config = {
        "klutch-tenant:centralStack": f"organization/klutch-central/{central}",
        "klutch-tenant:clusterId": cluster_id,
    }
    return yaml.safe_dump({"config": config})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fleet repository: central stacks dev and prod, tenants acme and globex on dev, initech on prod."""
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "fleet@example.com")
    git(tmp_path, "config", "user.name", "fleet")
    (tmp_path / "tenant").mkdir()
    (tmp_path / "klutch").mkdir()
    (tmp_path / "docs").mkdir()
    files = {
        "Pulumi.yaml": "name: klutch-central\n",
        "Pulumi.dev.yaml": "config: {}\n",
        "Pulumi.prod.yaml": "config: {}\n",
        "klutch/outputs.py": "",
        "docs/tenant.md": "",
        "tenant/Pulumi.yaml": "name: klutch-tenant\n",
        "tenant/Pulumi.example.yaml": tenant_file("acme-dev"),
        "tenant/Pulumi.acme.yaml": tenant_file("acme"),
        "tenant/Pulumi.globex.yaml": tenant_file("globex"),
        "tenant/Pulumi.initech.yaml": tenant_file("initech", "prod"),
    }
    for path, text in files.items():
        (tmp_path / path).write_text(text)
    commit(tmp_path, "the fleet")
    return tmp_path


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def merge(repo: Path, files: dict[str, str | None]) -> Plan:
    """Commit `files` (path → text; None removes the file) and select from the commit before."""
    base = git(repo, "rev-parse", "HEAD")
    for name, text in files.items():
        path = repo / name
        if text is None:
            path.unlink()
        else:
            path.write_text(text)
    commit(repo, "change")
    return select.select(repo, base)


def test_an_added_tenant_file_updates_exactly_that_stack_after_its_central_stack(repo):
    plan = merge(repo, {"tenant/Pulumi.hooli.yaml": tenant_file("hooli", "prod")})
    assert plan == Plan(up={"dev": (), "prod": ("hooli",)}, retire=())


def test_a_changed_tenant_file_updates_exactly_that_stack(repo):
    plan = merge(repo, {"tenant/Pulumi.acme.yaml": tenant_file("acme") + "# apis narrowed\n"})
    assert plan == Plan(up={"dev": ("acme",), "prod": ()}, retire=())


def test_a_removed_tenant_file_retires_that_stack_and_updates_nothing(repo):
    plan = merge(repo, {"tenant/Pulumi.globex.yaml": None})
    assert plan == Plan(up={"dev": (), "prod": ()}, retire=("globex",))


def test_a_central_stack_change_updates_every_tenant_reading_it_and_no_other(repo):
    plan = merge(repo, {"Pulumi.dev.yaml": "config:\n  klutch-central:environment: dev\n"})
    assert plan == Plan(up={"dev": ("acme", "globex"), "prod": ()}, retire=())


def test_a_program_change_updates_every_tenant_and_a_docs_change_none(repo):
    assert merge(repo, {"klutch/outputs.py": "# changed\n"}) == Plan(
        up={"dev": ("acme", "globex"), "prod": ("initech",)}
    )
    assert merge(repo, {"docs/tenant.md": "# changed\n"}) == Plan(up={"dev": (), "prod": ()})


def test_a_renamed_tenant_file_retires_the_old_stack_and_updates_the_new_one(repo):
    git(repo, "mv", "tenant/Pulumi.globex.yaml", "tenant/Pulumi.globex-eu.yaml")
    base = git(repo, "rev-parse", "HEAD")
    commit(repo, "rename")
    assert select.select(repo, base) == Plan(up={"dev": ("globex-eu",), "prod": ()}, retire=("globex",))


def test_the_example_is_never_deployed_nor_retired(repo):
    assert merge(repo, {"tenant/Pulumi.example.yaml": tenant_file("acme-dev") + "#\n"}).up == {"dev": (), "prod": ()}
    assert merge(repo, {"tenant/Pulumi.example.yaml": None}) == Plan(up={"dev": (), "prod": ()})


@pytest.mark.parametrize("base", ["", "0" * 40, "f" * 40], ids=["empty", "zeros", "unknown"])
def test_without_a_usable_base_every_tenant_is_updated_and_none_retired(repo, base):
    assert select.select(repo, base) == Plan(up={"dev": ("acme", "globex"), "prod": ("initech",)}, retire=())


def test_a_cluster_id_twice_on_one_central_stack_and_an_unknown_central_stack_fail_the_selection(repo):
    (repo / "tenant" / "Pulumi.acme2.yaml").write_text(tenant_file("acme"))
    (repo / "tenant" / "Pulumi.stray.yaml").write_text(tenant_file("stray", "staging"))
    (repo / "tenant" / "Pulumi.acme-prod.yaml").write_text(tenant_file("acme", "prod"))  # another central: fine
    commit(repo, "two problems")
    with pytest.raises(select.SelectError) as e:
        select.select(repo, "")
    assert str(e.value).splitlines() == [
        "tenant/Pulumi.acme2.yaml: klutch-tenant:clusterId = 'acme' is already the cluster id of tenant stack "
        "'acme' on central stack 'dev'; a cluster id must be unique per central stack",
        "tenant/Pulumi.stray.yaml: klutch-tenant:centralStack names central stack 'staging', which has no stack "
        "file; central stacks: dev, prod",
    ]


def test_the_select_command_writes_the_job_outputs_and_fails_cleanly(repo, capsys, monkeypatch):
    base = git(repo, "rev-parse", "HEAD")
    (repo / "tenant" / "Pulumi.acme.yaml").unlink()
    (repo / "tenant" / "Pulumi.hooli.yaml").write_text(tenant_file("hooli"))
    head = commit(repo, "swap")
    outputs = repo.parent / "github-output"
    argv = ["select", "--repo", str(repo), "--base", base, "--head", head, "--github-output", str(outputs)]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {"up": {"dev": ["hooli"], "prod": []}, "retire": ["acme"]}
    assert outputs.read_text() == 'up-dev=["hooli"]\nup-prod=[]\nretire=["acme"]\n'
    (repo / "tenant" / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": {"klutch-tenant:centralStack": "dev"}}))
    commit(repo, "bad")
    assert cli.main(["select", "--repo", str(repo), "--base", head]) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: tenant/Pulumi.bad.yaml: klutch-tenant:centralStack = 'dev': "
        "expected '<organization>/klutch-central/<stack>'\n"
    )


def test_plan_is_pure_over_changes():
    tenants = {"a": Tenant("a", "dev", "a"), "b": Tenant("b", "prod", "b")}
    changes = [Change("M", "tenant/Pulumi.a.yaml"), Change("A", "tenant/sub/Pulumi.x.yaml"), Change("M", "README.md")]
    assert select.plan(changes, tenants, ["prod", "dev"]) == Plan(up={"dev": ("a",), "prod": ()}, retire=())


# ------------------------------------------------------------------------------- the runner
def test_the_runner_keeps_to_its_bound_and_the_order_of_the_stacks():
    lock, running, peak = threading.Lock(), [0], [0]

    def operation(stack: str) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return stack.upper()

    stacks = [f"t{i}" for i in range(10)]
    assert runner.run_all(operation, stacks, parallel=4) == [s.upper() for s in stacks]
    assert peak[0] == 4
    peak[0] = 0
    runner.run_all(operation, stacks[:3], parallel=1)
    assert peak[0] == 1


def test_up_and_retire_exit_non_zero_when_one_stack_fails(monkeypatch, capsys):
    def fake(_dir, stack, **_):
        return runner.Outcome(stack, "up", stack != "bad", 0.0, 1.5, "2 create" if stack != "bad" else "boom")

    monkeypatch.setattr(runner, "up", fake)
    assert cli.main(["up", "--parallel", "2", "good", "bad"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "good: up succeeded in 1.5 s: 2 create",
        "bad: up FAILED in 1.5 s: boom",
    ]
    assert cli.main(["up", "--json", "good"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {
        "stack": "good",
        "operation": "up",
        "ok": True,
        "started": 0.0,
        "ended": 1.5,
        "detail": "2 create",
    }


# ------------------------------------------------------------------------------- the fleet view
BINDING = {
    "type": "pulumi-python:dynamic/klutch:Binding",
    "outputs": {
        "clusterId": "acme",
        "apis": [{"group": "anynines.com", "resource": "postgresqlinstances"}, {"group": "", "resource": "secrets"}],
        "kubeconfig": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "x"},
    },
}


def test_a_row_reads_the_binding_from_the_state_and_is_healthy_only_when_everything_is():
    assert status.binding_of({"resources": [{"type": "pulumi:pulumi:Stack"}, BINDING]}) == (
        "acme",
        ("postgresqlinstances.anynines.com", "secrets"),
    )
    assert status.binding_of({}) == (None, ())
    good = status.Row("acme", "acme", ("a.b",), "2026-12-02T15:00:00", "update succeeded", "clean")
    assert good.healthy
    assert status.Row("acme", "acme", ("a.b",), None, "update succeeded", None).healthy  # drift not checked
    for broken in (
        status.Row("acme", None, (), "t", "update succeeded", None),  # nothing bound
        status.Row("acme", "acme", ("a.b",), "t", "update failed", None),
        status.Row("acme", "acme", ("a.b",), "t", "update succeeded", "1 to update"),
        status.Row("acme", "acme", ("a.b",), "t", "update succeeded", "failed: unreachable"),
    ):
        assert not broken.healthy, broken


def test_the_fleet_view_as_json_and_as_a_table(monkeypatch, capsys):
    found = [
        status.Row(
            "acme", "acme", ("postgresqlinstances.anynines.com",), "2026-12-02T15:00:00", "update succeeded", "clean"
        ),
        status.Row(
            "globex", "globex", ("backups.anynines.com",), "2026-12-02T15:01:00", "update succeeded", "1 to create"
        ),
    ]
    monkeypatch.setattr(status, "rows", lambda *_a, **_k: found)
    assert cli.main(["status", "--check-drift", "--json"]) == 2
    rows = json.loads(capsys.readouterr().out)
    assert [(r["stack"], r["healthy"], r["preview"]) for r in rows] == [
        ("acme", True, "clean"),
        ("globex", False, "1 to create"),
    ]
    assert rows[0]["apis"] == ["postgresqlinstances.anynines.com"]
    assert cli.main(["status", "--check-drift"]) == 2
    table = capsys.readouterr().out
    assert "tenant stacks: 1/2 healthy" in table
    assert "1 to create" in table and "UNHEALTHY" in table and "postgresqlinstances.anynines.com" in table
    monkeypatch.setattr(status, "rows", lambda *_a, **_k: found[:1])
    assert cli.main(["status"]) == 0


# ------------------------------------------------------------------------------- secret config
FAKE_PULUMI = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_LOG"
cat >> "$FAKE_LOG"; echo >> "$FAKE_LOG"
"""


def test_secret_config_is_masked_then_set_from_stdin_never_on_a_command_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "pulumi").write_text(FAKE_PULUMI)
    (tmp_path / "pulumi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    kubeconfig = "apiVersion: v1\nclusters:\n- cluster: {}\n"
    document = {
        "klutch-tenant/acme": {"oidc.clientSecret": "s3cret", "kubeconfig": kubeconfig},
        "klutch-central/dev": {},
    }
    monkeypatch.setenv("PULUMI_SECRET_CONFIG", json.dumps(document))
    assert cli.main(["secrets", "--project-dir", str(tmp_path), "--project", "klutch-tenant", "--stack", "acme"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [
        "::add-mask::s3cret",
        "::add-mask::apiVersion: v1",
        "::add-mask::clusters:",
        "::add-mask::- cluster: {}",
    ]
    assert out[4:] == ["acme: secret config kubeconfig set", "acme: secret config oidc.clientSecret set"]
    log = (tmp_path / "log").read_text()
    assert log == (
        f"config set --stack acme --secret --path --non-interactive kubeconfig\n{kubeconfig}\n"
        "config set --stack acme --secret --path --non-interactive oidc.clientSecret\ns3cret\n"
    )
    assert secrets.stacks_of(document, "klutch-tenant") == ["acme"]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"klutch-tenant/acme": ', "error: the secret config is not JSON (line 1, column 24)\n"),
        ('{"klutch-tenant/acme": {"kubeconfig": 1}}', 'error: the secret config must be {"<project>/<stack>": '),
    ],
)
def test_a_malformed_secret_config_fails_without_echoing_it(monkeypatch, capsys, document, message):
    monkeypatch.setenv("PULUMI_SECRET_CONFIG", document)
    assert cli.main(["secrets", "--project", "klutch-tenant", "--stack", "acme"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and "kubeconfig" not in err
