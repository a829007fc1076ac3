"""Facts read from a kubeconfig: the API server, the CA as PEM, the current context's namespace.

One parser for the central cluster (EKS or existing) and the tenant side (the provider-side
kubeconfig the backend returns). `certificate-authority-data` is base64 of the PEM: it is decoded
here once, so nothing downstream can write base64-of-base64.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import yaml


class KubeconfigError(ValueError):
    pass


@dataclass(frozen=True)
class KubeconfigFacts:
    server: str
    ca_pem: str | None
    namespace: str | None
    context: str


def parse_kubeconfig(text: str) -> KubeconfigFacts:
    """Parse YAML or JSON kubeconfig text; raises KubeconfigError naming what is missing."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise KubeconfigError("not YAML or JSON") from e
    if not isinstance(doc, dict):
        raise KubeconfigError("not a kubeconfig document")
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or [] if isinstance(c, dict)}
    current = doc.get("current-context") or (next(iter(contexts)) if len(contexts) == 1 else None)
    if not current or current not in contexts:
        raise KubeconfigError("no current-context naming one of its contexts")
    ctx = contexts[current]
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or [] if isinstance(c, dict)}
    cluster = clusters.get(ctx.get("cluster"))
    if not cluster or not cluster.get("server"):
        raise KubeconfigError(f"context '{current}' names no cluster with a server")
    ca_pem = None
    if cluster.get("certificate-authority-data"):
        try:
            ca_pem = base64.b64decode(cluster["certificate-authority-data"], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as e:
            raise KubeconfigError("certificate-authority-data is not base64 of a PEM certificate") from e
        if "-----BEGIN CERTIFICATE-----" not in ca_pem:
            raise KubeconfigError("certificate-authority-data does not hold a PEM certificate")
    return KubeconfigFacts(server=cluster["server"], ca_pem=ca_pem, namespace=ctx.get("namespace"), context=current)
