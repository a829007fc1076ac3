"""Local HTTP servers of the real-engine tests, on 127.0.0.1 only, stopped by the fixture that started them.

`ChartRepository` is a Helm chart repository (index.yaml + packaged charts) serving the upstream
chart sources that e2e/toolchain/build copied out of the Go module zips; the program reaches it
through its `mirrors.charts` config, as an air-gapped installation would reach its own mirror.
The same server serves static files (the kube-bind CRDs for `mirrors.kubeBindCrds`).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml


def package_chart(chart_dir: Path, out: Path, version: str) -> dict[str, object]:
    """`helm package` in Python: <name>-<version>.tgz with the chart under <name>/, and its index entry.

    `version` is the one the program pins; Chart.yaml is rewritten to it when the served source differs."""
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    name = meta["name"]
    meta["version"] = version
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(chart_dir.rglob("*")):
            if path.is_file() and path != chart_dir / "Chart.yaml":  # subcharts keep theirs
                tar.add(path, arcname=f"{name}/{path.relative_to(chart_dir)}")
        chart_yaml = yaml.safe_dump(meta).encode()
        info = tarfile.TarInfo(f"{name}/Chart.yaml")
        info.size = len(chart_yaml)
        tar.addfile(info, io.BytesIO(chart_yaml))
    blob = buffer.getvalue()
    filename = f"{name}-{version}.tgz"
    (out / filename).write_bytes(blob)
    return {
        "apiVersion": meta.get("apiVersion", "v2"),
        "name": name,
        "version": version,
        "appVersion": str(meta.get("appVersion", version)),
        "urls": [filename],
        "digest": hashlib.sha256(blob).hexdigest(),
        "created": "2026-01-01T00:00:00Z",
    }


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class ChartRepository:
    """Serves `root` on 127.0.0.1: packaged charts with index.yaml, and any other file put there."""

    def __init__(self, root: Path, charts: dict[Path, str]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        entries: dict[str, list[dict[str, object]]] = {}
        for chart, version in charts.items():
            entry = package_chart(chart, root, version)
            entries.setdefault(str(entry["name"]), []).append(entry)
        (root / "index.yaml").write_text(yaml.safe_dump({"apiVersion": "v1", "entries": entries}))
        self.root = root
        self.versions = {name: [str(e["version"]) for e in items] for name, items in entries.items()}
        handler = lambda *a, **kw: _Quiet(*a, directory=str(root), **kw)  # noqa: E731
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="chart-repo", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ChartRepository:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
