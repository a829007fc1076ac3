"""Mirrors for air-gapped installations: where the charts, the kube-bind CRDs and the images come from.

An operator whose clusters reach no public registry sets, in the stack's `mirrors` object:

- `charts.<chart>`: the chart's source instead of the catalog's repository, one of
  an HTTP(S) chart repository (`https://charts.internal/stable`), an OCI registry path
  (`oci://registry.internal/charts`, the chart's name is appended) or a local chart (a directory or
  `.tgz`, relative to the project directory). The catalog's version stays pinned.
- `kubeBindCrds`: the list of CRD files (URLs or local paths) that replaces the release's pinned list.
- `registries`: image prefix rewrites, `{"public.ecr.aws/w5n9a2g2": "registry.internal/klutch"}`: every
  image the program sets (Crossplane packages, backend, konnector) that starts with a key is pulled
  from the value instead, tag or digest unchanged.

The effective sources are what the program deploys, what the offline render shows and what the
stack outputs hand to tenants (`konnectorImage`, `kubeBindCrdUrls`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from klutch import catalog
from klutch.config.reader import Reader, check_url

_REGISTRY = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
_CHART_URL = check_url(("http", "https", "oci"))
_FILE_URL = check_url(("http", "https"))


@dataclass(frozen=True)
class Mirrors:
    """The configured mirrors; empty means the catalog's public sources."""

    charts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    kube_bind_crds: tuple[str, ...] = ()
    registries: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def image(self, ref: str) -> str:
        """`ref` pulled through its mirror (the longest matching prefix), or unchanged."""
        for prefix in sorted(self.registries, key=len, reverse=True):
            if ref.startswith(prefix + "/"):
                return self.registries[prefix] + ref[len(prefix) :]
        return ref

    def chart(self, key: str) -> catalog.Chart:
        """The catalog's chart `key`, read from its mirror when one is configured."""
        pinned = catalog.CHARTS[key]
        source = self.charts.get(key)
        if source is None:
            return pinned
        name = pinned.chart.rsplit("/", 1)[-1]
        if source.startswith("oci://"):
            return dataclasses.replace(pinned, chart=f"{source.rstrip('/')}/{name}", repo="")
        if source.startswith(("http://", "https://")):
            return dataclasses.replace(pinned, chart=name, repo=source)
        return dataclasses.replace(pinned, chart=source, repo="")

    def release(self, release: catalog.KlutchRelease) -> catalog.KlutchRelease:
        """The release with every image and CRD source the program sets taken through the mirrors."""
        # A mirrored CRD list is complete: it replaces the backends' template CRD files too.
        backends = {
            kind: dataclasses.replace(
                b, image=self.image(b.image), template_crd_url=None if self.kube_bind_crds else b.template_crd_url
            )
            for kind, b in release.backends.items()
        }
        return dataclasses.replace(
            release,
            provider_package=self.image(release.provider_package),
            configuration_package=self.image(release.configuration_package),
            functions=tuple(self.image(f) for f in release.functions),
            konnector_image=self.image(release.konnector_image),
            backends=MappingProxyType(backends),
            kube_bind_crd_urls=self.kube_bind_crds or release.kube_bind_crd_urls,
        )


def release_images(release: catalog.KlutchRelease) -> list[str]:
    """Every image reference of `release` that the program sets (what `registries` may rewrite)."""
    backends = [b.image for b in release.backends.values()]
    return [
        release.provider_package,
        release.configuration_package,
        *release.functions,
        release.konnector_image,
        *backends,
    ]


def parse_mirrors(r: Reader, images: Iterable[str], project_dir: Path) -> Mirrors:
    """The `mirrors` object; `images` are those `registries` may rewrite (a key matching none is a typo)."""
    charts = _charts(r.child("charts"), project_dir)
    crds = r.strings("kubeBindCrds", check=lambda v: _source(v, _FILE_URL, project_dir))
    registries = _registries(r.child("registries"), list(images))
    r.finish()
    return Mirrors(MappingProxyType(charts), crds, MappingProxyType(registries))


def _charts(r: Reader, project_dir: Path) -> dict[str, str]:
    found = {}
    for key in r.keys:
        if key not in catalog.CHARTS:
            continue  # reported by finish() with the valid chart keys
        value = r.string(key, check=lambda v: _source(v, _CHART_URL, project_dir))
        if value:
            found[key] = value
    for key in catalog.CHARTS:
        r.has(key)  # the valid keys an unknown one is compared with
    r.finish()
    return found


def _registries(r: Reader, images: list[str]) -> dict[str, str]:
    found = {}
    for prefix in r.keys:
        target = r.string(prefix, check=_check_registry)
        if not _REGISTRY.match(prefix) or prefix.endswith("/"):
            r.problem(prefix, target, "the key must be a registry prefix such as 'public.ecr.aws/w5n9a2g2'")
        elif not any(i.startswith(prefix + "/") for i in images):
            r.problem(prefix, target, f"matches no image the program sets; images: {', '.join(sorted(set(images)))}")
        elif target:
            found[prefix] = target
    r.finish()
    return found


def _check_registry(value: str) -> str | None:
    if _REGISTRY.match(value):
        return None
    return "must be a registry and path without scheme or tag, e.g. 'registry.internal:5000/klutch'"


def _source(value: str, check_remote: Callable[[str], str | None], project_dir: Path) -> str | None:
    if re.match(r"^[a-z][a-z0-9+.-]*://", value):
        return check_remote(value)
    if not (project_dir / value).exists():
        return f"is neither a URL nor an existing local path (relative to {project_dir})"
    return None
