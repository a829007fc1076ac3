"""The names the docs give in backticks are the code's: every output name, config key, repository path
and version that README.md and docs/*.md name is checked against the outputs record (and the tenant
program's exports), the config parsers, the files on disk, and the catalog, versions.env and Python pins.

A name is checked only where it is clearly classified: a camelCase name in an outputs table, next to the
word "output(s)" or after `pulumi stack output`; a config key in a table whose first column is `key` or
`secret`, namespaced (`klutch-central:…`) or dotted under a known top-level key (`oidc.issuerUrl`); a path
under one of the repository's top-level directories; a `klutch.…` module; a version `X.Y.Z`. Any other
backticked text (commands, values, names of other products) is left alone, so that new keys, outputs
and scripts elsewhere never make this test fail — only a wrong name does.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from klutch import catalog
from klutch.config import central as central_config
from klutch.config import tenant as tenant_config
from klutch.config.reader import ConfigError, Reader
from klutch.offline.curated import mock_kubeconfig
from klutch.outputs import CentralOutputs
from tests import harness

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

CAMEL = re.compile(r"^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$|^[a-z]+$")
DOTTED = re.compile(r"^[a-z][A-Za-z0-9]*(?:\.(?:[A-Za-z0-9-]+|<[^>]+>))+$")
NAMESPACED = re.compile(r"^(klutch-central|klutch-tenant):([A-Za-z0-9.<>\[\]-]+)$")
VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\d+(?:\.\d+)+)$")
MODULE = re.compile(r"^klutch(?:\.[A-Za-z_]\w*)+$")
SPAN = re.compile(r"`([^`\n]+)`")
STACK_OUTPUT = re.compile(r"pulumi stack output((?: +-\S+)*) +([A-Za-z]\w*)")
_SPANS = r"(`[^`]+`(?:(?:,| and| or|, and|, or) `[^`]+`)*)"  # `a`, `b` and `c`
OUTPUT_LIST = re.compile(rf"\boutputs? {_SPANS}")
BEFORE_OUTPUT = re.compile(rf"{_SPANS} (?:stack )?outputs?\b")


@dataclass(frozen=True)
class Finding:
    where: str
    kind: str
    name: str
    why: str

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} `{self.name}` {self.why}"


# ------------------------------------------------------------------------------- what the code says
@dataclass(frozen=True)
class Known:
    outputs: frozenset[str]
    config_keys: frozenset[str]  # dotted paths, without namespace, of both projects
    top_keys: frozenset[str]  # their first segments
    versions: str  # the text every pinned version is written in
    root: Path


def _recorded_keys(parse, configs: list[tuple[dict, set[str]]]) -> set[str]:
    """Every key the parser asks for while reading `configs` (valid or not): the keys it knows."""
    seen: set[str] = set()
    take, has = Reader._take, Reader.has

    def record_take(self, name):
        seen.add(self.key(name))
        return take(self, name)

    def record_has(self, name):
        seen.add(self.key(name))
        return has(self, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Reader, "_take", record_take)
        mp.setattr(Reader, "has", record_has)
        for raw, secret_keys in configs:
            try:
                parse(raw, secret_keys, stack="docs")
            except ConfigError:
                pass
    return {k.split(":", 1)[1] for k in seen}


@cache
def known() -> Known:
    kubeconfig = mock_kubeconfig("https://10.0.0.1:6443", "docs")
    every_service = harness.services(*catalog.DATA_SERVICES)
    central = _recorded_keys(
        central_config.parse,
        [
            (harness.merged({"tags": {"team": "x"}, "mirrors": {}, "dataServices": every_service}), {"dataServices"}),
            (harness.merged({"cluster": {"mode": "existing"}, "network": None, "kubeconfig": kubeconfig}), set()),
        ],
    )
    tenant = _recorded_keys(
        tenant_config.parse,
        [({"oidc": {}, "kubeconfig": kubeconfig}, {"kubeconfig"}), ({"oidc": {}, "eksClusterName": "x"}, set())],
    )
    tenant_program = (ROOT / "klutch" / "tenant" / "program.py").read_text()
    outputs = {CentralOutputs.output_name(f) for f in CentralOutputs.__dataclass_fields__}
    outputs |= set(re.findall(r"\bexport\(\s*\"(\w+)\"", tenant_program))
    keys = {re.sub(r"\[\d+\]", "", k) for k in central | tenant}
    pins = ("klutch/catalog.py", "e2e/toolchain/versions.env", "pyproject.toml", "constraints.txt")
    return Known(
        outputs=frozenset(outputs),
        config_keys=frozenset(keys),
        top_keys=frozenset(k.split(".")[0] for k in keys),
        versions="\n".join((ROOT / p).read_text() for p in pins),
        root=ROOT,
    )


# ------------------------------------------------------------------------------- the checks
def check_output(name: str, k: Known) -> str | None:
    return None if name in k.outputs else "is no stack output (klutch/outputs.py, the tenant program's exports)"


def check_config_key(name: str, k: Known) -> str | None:
    path = re.sub(r"\[\d+\]", "", name.split(":", 1)[1] if NAMESPACED.match(name) else name)
    wanted = path.split(".")
    for key in k.config_keys:
        have = key.split(".")
        if len(have) > len(wanted):
            have = have[: len(wanted)]  # the doc names an object holding keys
        # a `<placeholder>` segment stands for any name; past the parser's last level only placeholders
        if all(w.startswith("<") or w == h for w, h in zip(wanted, have, strict=False)) and all(
            w.startswith("<") for w in wanted[len(have) :]
        ):
            return None
    return "is no config key the programs read (klutch/config/central.py, tenant.py)"


def check_path(name: str, k: Known) -> str | None:
    return None if (k.root / name.split("#")[0]).exists() else "does not exist in the repository"


def check_module(name: str, _: Known) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(target, attr):
                return f"names nothing: {'.'.join(parts[:i])} has no {attr!r}"
            target = getattr(target, attr)
        return None
    return "is no module of the klutch package"


def check_version(name: str, k: Known) -> str | None:
    pin = PIN.match(name)
    if pin:
        return None if name in k.versions else "is not the pin in pyproject.toml or constraints.txt"
    bare = name.lstrip("v")
    found = re.search(rf"(?<![\d.])v?{re.escape(bare)}(?![\d.]*\d)", k.versions)
    return None if found else "is no version pinned in klutch/catalog.py, versions.env or the Python pins"


# ------------------------------------------------------------------------------- classifying a doc
def classify(span: str, k: Known) -> tuple[str, str] | None:
    """(kind, name) of a backticked span the docs test checks, or None (left alone)."""
    name = re.split(r": | = ", span.strip())[0]
    if NAMESPACED.match(name):
        return "config key", name
    if DOTTED.match(name) and name.split(".")[0] in k.top_keys and not re.search(r"\.(py|md|ya?ml|txt|json)$", name):
        return "config key", name
    if MODULE.match(name) and any((k.root / "klutch" / f"{name.split('.')[1]}{s}").exists() for s in ("", ".py")):
        return "module", name
    if VERSION.match(name) or PIN.match(name):
        return "version", name
    if "/" in name and not re.search(r"[<>*…{}$ :]|\.\.", name):
        parts = name.rstrip("/").split("/")
        # under a top-level directory, and a file name or a directory there: not an image or chart name
        file_like = re.search(r"\.\w+$", parts[-1]) or name.endswith("/") or (k.root / parts[0] / parts[1]).exists()
        if parts[0] and (k.root / parts[0]).is_dir() and file_like:
            return "path", name.rstrip("/")
    return None


CHECKS = {
    "output": check_output,
    "config key": check_config_key,
    "path": check_path,
    "module": check_module,
    "version": check_version,
}


def _table_first_cells(lines: list[str]) -> Iterator[tuple[int, str, str]]:
    """(line number, header's first cell, first cell) of each table row."""
    header = None
    for n, line in enumerate(lines, 1):
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells[0].lower()
        elif not set(cells[0]) <= set("-: "):
            yield n, header, cells[0]


def names_in(text: str, k: Known) -> Iterator[tuple[int, str, str]]:
    """(line number, kind, name) of every clearly classified name in a markdown text."""
    lines = text.splitlines()
    for n, header, cell in _table_first_cells(lines):
        last = ""
        for span in SPAN.findall(cell):
            if header == "output" and CAMEL.match(span):
                yield n, "output", span
            elif header in ("key", "secret"):
                key = re.split(r"[ (]", span)[0]
                last = last.rsplit(".", 1)[0] + key if key.startswith(".") else key  # `a.b` / `.c`: a.c
                yield n, "config key", last
    for n, line in enumerate(lines, 1):
        for flags, name in STACK_OUTPUT.findall(line):
            if not re.search(r"(^| )(-s|--stack)$", flags):
                yield n, "output", name
        for listed in [*OUTPUT_LIST.findall(line), *BEFORE_OUTPUT.findall(line)]:
            yield from ((n, "output", s) for s in SPAN.findall(listed) if CAMEL.match(s) and not s.islower())
        for span in SPAN.findall(line):
            if kind_name := classify(span, k):
                yield n, *kind_name


def check_doc(text: str, where: str, k: Known) -> list[Finding]:
    return [
        Finding(f"{where}:{n}", kind, name, why)
        for n, kind, name in dict.fromkeys(names_in(text, k))
        if (why := CHECKS[kind](name, k))
    ]


# ------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_name_a_doc_gives_is_the_code_s(doc):
    findings = check_doc(doc.read_text(), str(doc.relative_to(ROOT)), known())
    assert findings == [], "\n".join(map(str, findings))


SYNTHETIC = """# A doc with wrong names

| output | meaning |
|---|---|
| `kubeBindCrdsUrl` | misspelt: the output is kubeBindCrdUrls |
| `exportUrl` | right |

| key | default |
|---|---|
| `network.cidrs` | misspelt |
| `network.cidr` | right |

The tenant reads the `tlsCaPems` output; its outputs `exportUrl` and `bindUrl` too.
Run `pulumi stack output --show-secrets kubeconfigs`, see `klutch/central/outputs.py` and
`klutch.outputs.TENANT_WRITES`; set `oidc.issuerURL` or `klutch-central:enviroment`.
The CLI is `v3.999.0`, the SDK `pulumi==3.1.0`.
Left alone: `kubectl get pods`, `someValue`, `helm/charts`, `Pulumi.my-dev.yaml`, `1.33`, `backend.host`.
"""


def test_the_docs_test_fails_on_each_wrong_name_and_leaves_the_rest_alone():
    findings = check_doc(SYNTHETIC, "synthetic.md", known())
    assert [(f.where, f.kind, f.name) for f in findings] == [
        ("synthetic.md:5", "output", "kubeBindCrdsUrl"),
        ("synthetic.md:10", "config key", "network.cidrs"),
        ("synthetic.md:13", "output", "bindUrl"),
        ("synthetic.md:13", "output", "tlsCaPems"),
        ("synthetic.md:14", "output", "kubeconfigs"),
        ("synthetic.md:14", "path", "klutch/central/outputs.py"),
        ("synthetic.md:15", "module", "klutch.outputs.TENANT_WRITES"),
        ("synthetic.md:15", "config key", "oidc.issuerURL"),
        ("synthetic.md:15", "config key", "klutch-central:enviroment"),
        ("synthetic.md:16", "version", "v3.999.0"),
        ("synthetic.md:16", "version", "pulumi==3.1.0"),
    ]
    assert str(findings[0]) == (
        "synthetic.md:5: output `kubeBindCrdsUrl` is no stack output (klutch/outputs.py, the tenant program's exports)"
    )
