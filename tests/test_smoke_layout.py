"""The project layout the CI and the Pulumi CLI rely on."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_main_only_wires():
    text = (ROOT / "__main__.py").read_text()
    code = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith(("#", '"""'))]
    assert code == ["from components.program import main", "main()"]


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest"
    assert command in readme
    assert command in ci
