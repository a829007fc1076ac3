"""The project layout the CI and the Pulumi CLI rely on: one package, one virtualenv, layers that import downwards."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "klutch"
# Which sub-package may import which: product code never imports the offline tooling.
ALLOWED = {
    # the floors: shared by every layer, about no layer
    "catalog": set(),
    "sdk": set(),  # the Pulumi SDK's private internals and the property-tree helpers
    "kube": {"catalog"},  # Kubernetes naming and the remote CRD files, for central and tenant alike
    "outputs": set(),  # the central stack's outputs: the contract both programs share
    # the layers
    "config": {"catalog", "sdk", "kube", "outputs"},
    "policy": {"catalog", "sdk"},
    "idp": set(),  # operator tooling for the IdP side (klutch-keycloak-setup): stands alone
    "central": {"catalog", "sdk", "kube", "config", "outputs"},
    "tenant": {"catalog", "sdk", "kube", "config", "outputs"},  # never central: shared code is a floor
    "ops": {"catalog", "sdk", "kube", "config", "central", "outputs"},  # operator tools that read a live cluster
    "offline": {"catalog", "sdk", "kube", "config", "central", "tenant", "policy", "outputs"},
    "fleet": {"config", "tenant"},  # runs tenant stacks (Automation API) and reads their Binding from the state
    "sandbox": {"catalog", "kube", "outputs", "central", "idp"},  # local control planes, doubles, the real CLI
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("klutch"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("klutch"))
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_layers_import_only_downwards(path):
    own = path.relative_to(ROOT).with_suffix("").parts
    layer = own[1] if len(own) > 1 and own[1] in ALLOWED else None
    if layer is None:  # klutch/__init__.py
        return
    used = {layer_of(m) for m in imports_of(path)} - {None, layer}
    assert used <= ALLOWED[layer], f"{path.name} ({layer}) imports {sorted(used - ALLOWED[layer])}"


def test_dependency_rule_catches_an_upward_import(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from klutch.offline.render import main\n")
    assert layer_of(next(iter(imports_of(bad)))) == "offline" not in ALLOWED["central"]


def test_the_tenant_layer_may_not_import_the_central_one(tmp_path):
    bad = tmp_path / "x.py"
    bad.write_text("from klutch.central.kubebind import KubeBind\n")
    assert layer_of(next(iter(imports_of(bad)))) == "central" not in ALLOWED["tenant"]


@pytest.mark.parametrize(
    "entry, module",
    [
        ("__main__.py", "klutch.central.program"),
        ("tenant/__main__.py", "klutch.tenant.program"),
        ("policy/__main__.py", "klutch.policy.pack"),
    ],
)
def test_entry_points_import_the_package_without_path_patching(entry, module):
    # Each Pulumi project's entry runs from its own directory with the shared virtualenv's interpreter.
    tree = ast.parse((ROOT / entry).read_text())
    assert any(
        isinstance(n, ast.ImportFrom)
        and f"{n.module}.{n.names[0].name}".startswith(module)
        or isinstance(n, ast.ImportFrom)
        and n.module == module
        for n in ast.walk(tree)
    )
    probe = f"import importlib; importlib.import_module({module!r}); import sys; print('ok')"
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=(ROOT / entry).parent, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_every_project_shares_the_one_virtualenv():
    projects = {
        ROOT / "Pulumi.yaml": ".venv",
        ROOT / "tenant/Pulumi.yaml": "../.venv",
        ROOT / "policy/PulumiPolicy.yaml": "../.venv",
    }
    for path, venv in projects.items():
        assert yaml.safe_load(path.read_text())["runtime"]["options"]["virtualenv"] == venv, path
        assert (path.parent / venv).resolve() == (ROOT / ".venv").resolve()
