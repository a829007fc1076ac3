"""Stack files as Pulumi users keep them: malformed files fail like the CLI fails (file, line or key,
what is expected); plain-text secrets fail like `pulumi up` fails; a user's own stack files stay out
of --all, --list and the CI matrix; the shipped ones are the git-tracked ones."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from klutch.config import central as central_config
from klutch.config.reader import ConfigError
from klutch.offline import projects, render, stackfile

ROOT = Path(__file__).resolve().parent.parent
NS = central_config.NAMESPACE
DEV = (ROOT / "Pulumi.dev.yaml").read_text()


def read(tmp_path: Path, text: str) -> tuple[dict[str, str], list[str]]:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(text)
    return stackfile.read(path, NS, central_config.secret_paths)


def render_text(tmp_path: Path, text: str, capsys, name: str = "dev") -> tuple[int, str]:
    """Render a central stack file of `text` (in a copy of the central project); (exit code, stderr)."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    shutil.copy(ROOT / "Pulumi.yaml", project)
    (project / f"Pulumi.{name}.yaml").write_text(text)
    code = render.main(["--project-dir", str(project), "--stack", name, "--out", str(tmp_path / "out")])
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------- files the CLI refuses
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("config:\n  klutch-central:network:\n    cidr: [10.0.0.0/16\n", ":4:1: not valid YAML: expected ',' or ']'"),
        ("config:\n  klutch-central:environment: dev\n  klutch-central:environment: prod\n", ":3:3: not valid YAML: "),
        ("config:\n  - klutch-central:environment: dev\n", ": config = "),
        ("- config\n", ": the file = "),
        ("config:\n  environment: dev\n", ": config key 'environment': must be '<namespace>:<key>'"),
    ],
    ids=["yaml-syntax", "duplicate-key", "config-is-a-list", "file-is-a-list", "key-without-namespace"],
)
def test_a_file_the_cli_refuses_is_one_error_naming_file_and_line_or_key(tmp_path, capsys, text, expected):
    with pytest.raises(stackfile.StackFileError) as e:
        read(tmp_path, text)
    assert str(e.value).startswith(str(tmp_path / "Pulumi.x.yaml")) and expected in str(e.value)
    code, stderr = render_text(tmp_path, text, capsys)
    assert code == 1 and "Traceback" not in stderr
    assert stderr.startswith(f"error: {tmp_path / 'project' / 'Pulumi.dev.yaml'}") and expected in stderr
    assert len(stderr.splitlines()) == 1


def test_the_duplicate_key_error_names_both_lines(tmp_path):
    with pytest.raises(
        stackfile.StackFileError, match=r"key 'klutch-central:environment' is given twice \(first on line 2\)"
    ):
        read(tmp_path, "config:\n  klutch-central:environment: dev\n  klutch-central:environment: prod\n")


def test_config_as_a_list_says_what_is_expected(tmp_path):
    with pytest.raises(stackfile.StackFileError) as e:
        read(tmp_path, "config:\n  - a\n")
    assert str(e.value).endswith(
        ": config = [\"a\"]: must be a mapping of '<namespace>:<key>' to values, e.g. 'klutch-central:environment: dev'"
    )


# ------------------------------------------------------------------------------- values the CLI passes through
@pytest.mark.parametrize(
    ("oidc", "shown"),
    [("\n    - issuerUrl\n    - clientId", '["issuerUrl", "clientId"]'), (" keycloak", "'keycloak'")],
    ids=["list", "scalar"],
)
def test_an_object_key_holding_a_list_or_scalar_is_the_programs_message(tmp_path, capsys, oidc, shown):
    """The CLI passes such a value on (as JSON or text): the render reports what `pulumi up` would."""
    start = DEV.index("  klutch-central:oidc:")
    text = DEV[:start] + f"  klutch-central:oidc:{oidc}\n"
    code, stderr = render_text(tmp_path, text, capsys)
    assert code == 1 and "Traceback" not in stderr
    assert stderr == (
        "error: invalid configuration for stack 'dev' (1 problem):\n"
        f"  - klutch-central:oidc = {shown}: must be an object\n"
    )


def test_data_services_as_a_list_is_the_programs_message(tmp_path, capsys):
    start, end = DEV.index("  klutch-central:dataServices:"), DEV.index("  klutch-central:exposure:")
    text = DEV[:start] + "  klutch-central:dataServices:\n    - postgresql\n" + DEV[end:]
    code, stderr = render_text(tmp_path, text, capsys)
    assert code == 1
    assert '  - klutch-central:dataServices = ["postgresql"]: must be an object\n' in stderr


# ------------------------------------------------------------------------------- secrets
def plain(text: str, path: str, value: str) -> str:
    """The dev stack file with `value` in plain text at `path` (oidc.clientSecret, a password)."""
    doc = yaml.safe_load(text)
    top, *rest = path.split(".")
    node = doc["config"][f"{NS}:{top}"]
    for part in rest[:-1]:
        node = node[part]
    node[rest[-1]] = value
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.mark.parametrize(
    "path", ["oidc.clientSecret", "dataServices.postgresql.serviceBroker.password"], ids=["client-secret", "password"]
)
def test_a_plain_text_secret_fails_the_render_with_the_programs_message(tmp_path, capsys, path):
    code, stderr = render_text(tmp_path, plain(DEV, path, "hunter2-plain-text"), capsys)
    assert code == 1 and "hunter2" not in stderr
    expected = (
        f"  - {NS}:{path} = '[not shown]': is stored in plain text; set it as a secret with "
        f"`pulumi config set --secret --path '{path}' <value>`\n"
    )
    assert expected in stderr
    # the same message the program gives `pulumi up` for the same value
    raw = {
        k.split(":", 1)[1]: v
        for k, v in yaml.safe_load(plain(DEV, path, "hunter2-plain-text"))["config"].items()
        if k.startswith(NS)
    }
    for _, dotted in central_config.secret_paths(raw):
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node.setdefault(last, "a-secret-set-with-the-cli")
    secret_keys = {top for top, _ in central_config.secret_paths(raw)} - {path.split(".")[0]}
    with pytest.raises(ConfigError) as e:
        central_config.parse(raw, secret_keys, stack="dev")
    assert expected.strip()[2:] in [str(p) for p in e.value.problems]


def test_an_encrypted_secret_renders(tmp_path, capsys):
    code, stderr = render_text(tmp_path, plain(DEV, "oidc.clientSecret", {"secure": "v1:AAAA"}), capsys)  # type: ignore[arg-type]
    assert code == 0, stderr


def test_a_plain_kubeconfig_in_existing_mode_is_refused(tmp_path, capsys):
    text = (ROOT / "Pulumi.kind.yaml").read_text() + "  klutch-central:kubeconfig: apiVersion-v1-in-plain-text\n"
    code, stderr = render_text(tmp_path, text, capsys, name="kind")
    assert code == 1
    assert (
        f"  - {NS}:kubeconfig = '[not shown]': is stored in plain text; set it as a secret with "
        "`pulumi config set --secret 'kubeconfig' <value> (or: cat kubeconfig | pulumi config set --secret kubeconfig)`"
    ) in stderr


def test_placeholders_never_hide_a_plain_text_secret_next_to_a_missing_one(tmp_path):
    text = plain(DEV, "dataServices.postgresql.serviceBroker.password", "plain-pw")
    config, secret_keys = read(tmp_path, text)
    assert f"{NS}:dataServices" not in secret_keys  # as the CLI passes it: not a secret
    assert "placeholder" not in config[f"{NS}:dataServices"]  # nothing filled in: the program reports both


# ------------------------------------------------------------------------------- which stacks are shipped
@pytest.fixture
def checkout(tmp_path):
    """A git checkout of both projects with the shipped dev and example stacks tracked."""
    repo = tmp_path / "repo"
    (repo / "tenant").mkdir(parents=True)
    for rel in ("Pulumi.yaml", "Pulumi.dev.yaml", "tenant/Pulumi.yaml", "tenant/Pulumi.example.yaml"):
        shutil.copy(ROOT / rel, repo / rel)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    # a user's own stacks, never committed: one with encrypted values, one existing-mode stack
    (repo / "Pulumi.staging.yaml").write_text(
        DEV.replace("environment: dev", "environment: staging")
        + "  klutch-central:tags:\n    team: {secure: v1:AAAA}\n"
    )
    (repo / "Pulumi.kind.yaml").write_text("config:\n  klutch-central:cluster:\n    mode: existing\n")
    (repo / "tenant" / "Pulumi.mine.yaml").write_text("config: [broken\n")
    return repo


def test_a_users_own_stack_files_never_enter_all_or_list(checkout, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(checkout / "tenant")  # found from any directory of the checkout
    assert [(p.name, s) for p, _, s in render.committed_stacks()] == [
        ("klutch-central", "dev"),
        ("klutch-tenant", "example"),
    ]
    assert render.main(["--list"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"project": "klutch-central", "dir": ".", "stack": "dev"},
        {"project": "klutch-tenant", "dir": "tenant", "stack": "example"},
    ]
    assert render.main(["--all", "--out", str(tmp_path / "out")]) == 0
    assert "2/2 stacks rendered without findings" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").glob("*/*")) == ["dev", "example"]
    # ... but --stack renders them, and the tenant's central stack is the checkout's own
    monkeypatch.chdir(checkout)
    assert render.main(["--stack", "staging", "--out", str(tmp_path / "staging")]) == 0  # encrypted values: fine
    assert "klutch-central/staging: rendered" in capsys.readouterr().out


def test_without_git_the_declared_list_is_shipped(checkout, monkeypatch):
    monkeypatch.setenv("PATH", str(checkout / "no-git-here"))
    assert projects.tracked_stack_files(checkout) is None
    stacks = [(p.name, s) for p, _, s in render.committed_stacks(checkout)]
    # the declared lists (dev, kind, prod; example) as far as the files exist: kind is here, prod is not
    assert stacks == [("klutch-central", "dev"), ("klutch-central", "kind"), ("klutch-tenant", "example")]
    outside = checkout.parent / "plain-copy"
    shutil.copytree(checkout, outside, ignore=shutil.ignore_patterns(".git"))
    monkeypatch.undo()
    assert projects.tracked_stack_files(outside) is None  # not a checkout


def test_every_tracked_stack_is_declared_for_checkouts_without_git():
    for project in projects.PROJECTS:
        tracked = projects.tracked_stack_files(ROOT / project.directory)
        if tracked is None:
            pytest.skip("not a git checkout")
        assert set(tracked) <= set(project.shipped), project.name
        assert all((ROOT / project.directory / f"Pulumi.{s}.yaml").exists() for s in project.shipped), project.name


def test_the_render_reports_the_holes_pulumi_up_would_in_one_round(tmp_path, capsys):
    text = (
        DEV.replace("  aws:region: eu-central-1\n", "  klutch-centrall:environment: prod\n")
        .replace("cidr: 10.0.0.0/16", "cidr: 169.254.0.0/16\n    availabilityZones: [eu-central-1a, eu-central-1a]")
        .replace("      - 0.0.0.0/0", "      - 10.0.0.0")
    )
    code, stderr = render_text(tmp_path, text, capsys)
    assert code == 1 and "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines[0] == "error: invalid configuration for stack 'dev' (5 problems):"
    assert [line.split(" = ")[0] for line in lines[1:]] == [
        "  - klutch-centrall:environment",
        "  - klutch-central:cluster.publicAccessCidrs[0]",
        "  - aws:region",
        "  - klutch-central:network.cidr",
        "  - klutch-central:network.availabilityZones",
    ]
    assert "did you mean 'klutch-central:environment'?" in lines[1]
    assert "must be a CIDR block with its prefix length" in lines[2]
    assert "must be inside an RFC 1918 private range" in lines[4] and "must not repeat a zone" in lines[5]
