"""Reading a live central cluster with the official Kubernetes client: the objects `health.assess` judges.

Every read is bounded in time; an object or a kind that does not exist reads as None (or nothing),
and a cluster that cannot be reached or refuses the credentials raises `Unreachable` with one line
saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from klutch import catalog
from klutch.ops.health import FRONT_KINDS, PACKAGE_KINDS, Expected, Snapshot

REQUEST_TIMEOUT = (5, 20)  # seconds to connect, to read


class Unreachable(Exception):
    """The cluster cannot be read: the message is one line for the operator."""


class Cluster:
    """One cluster, from the text of a kubeconfig (its current context)."""

    def __init__(self, kubeconfig: str) -> None:
        configuration = client.Configuration()
        try:
            document = yaml.safe_load(kubeconfig)
            config.load_kube_config_from_dict(document, client_configuration=configuration, persist_config=False)
        except (ConfigException, yaml.YAMLError, TypeError, AttributeError, ValueError) as e:
            raise Unreachable(f"the kubeconfig is not usable: {_one_line(e)}") from None
        configuration.retries = 1
        self.server: str = configuration.host
        self._api = client.ApiClient(configuration)

    def _call(self, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`read(*args, **kwargs)` as plain data; None when the object (or its kind) does not exist."""
        try:
            found = read(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as e:
            if e.status == 404:
                return None
            raise Unreachable(f"the cluster at {self.server} answered {e.status} {e.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Unreachable(f"cannot reach the cluster at {self.server}: {_one_line(e)}") from None
        return self._api.sanitize_for_serialization(found)

    def custom(self, group: str, version: str, plural: str, name: str, namespace: str) -> dict[str, Any] | None:
        api = client.CustomObjectsApi(self._api)
        return self._call(api.get_namespaced_custom_object, group, version, namespace, plural, name)

    def custom_items(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        """Every object of a kind, in every namespace; nothing when the kind does not exist."""
        found = self._call(client.CustomObjectsApi(self._api).list_cluster_custom_object, group, version, plural)
        return (found or {}).get("items") or []

    def deployment(self, name: str, namespace: str) -> dict[str, Any] | None:
        return self._call(client.AppsV1Api(self._api).read_namespaced_deployment, name, namespace)

    def certificate_secret(self, name: str, namespace: str) -> dict[str, Any] | None:
        """A TLS Secret with only its certificate (`tls.crt`): the key is dropped as soon as it is read."""
        found = self._call(client.CoreV1Api(self._api).read_namespaced_secret, name, namespace)
        if found is not None:
            found["data"] = {k: v for k, v in (found.get("data") or {}).items() if k == "tls.crt"}
        return found

    def ingress(self, name: str, namespace: str) -> dict[str, Any] | None:
        return self._call(client.NetworkingV1Api(self._api).read_namespaced_ingress, name, namespace)

    def crds(self, groups: tuple[str, ...]) -> list[dict[str, Any]]:
        found = self._call(client.ApiextensionsV1Api(self._api).list_custom_resource_definition)
        return [c for c in (found or {}).get("items") or [] if c["spec"]["group"] in groups]


def _one_line(error: BaseException) -> str:
    text = str(getattr(error, "reason", None) or error)
    return " ".join(text.split())[:300]


def _api(api_version: str) -> tuple[str, str]:
    group, version = api_version.split("/")
    return group, version


def _fronts(cluster: Cluster, expected: Expected) -> list[tuple[str, dict[str, Any]]]:
    """The stack's Gateway or Ingress (without a stack: whichever exists), with its kind."""
    ns = expected.backend_namespace
    readers = {
        "Gateway": lambda: cluster.custom(*_api(catalog.GATEWAY_API), "gateways", expected.gateway, ns),
        "Ingress": lambda: cluster.ingress(expected.backend_name, ns),
    }
    kinds = [FRONT_KINDS[expected.controller]] if expected.controller else list(readers)
    return [(kind, found) for kind in kinds if (found := readers[kind]())]


def read_snapshot(cluster: Cluster, expected: Expected) -> Snapshot:
    """What `health.assess` needs, read from `cluster`."""
    ns = expected.backend_namespace
    return Snapshot(
        crossplane=cluster.deployment(expected.crossplane_deployment, expected.crossplane_namespace),
        packages={
            kind: cluster.custom_items(*_api(catalog.CROSSPLANE_PKG_API_VERSION), f"{kind.lower()}s")
            for kind in PACKAGE_KINDS
        },
        provider_configs=cluster.custom_items(
            *_api(catalog.PROVIDER_CONFIG_API_VERSION), catalog.PROVIDER_CONFIG_PLURAL
        ),
        crds=cluster.crds(expected.kube_bind_groups),
        backend=cluster.deployment(expected.backend_name, ns),
        certificate=cluster.custom(*_api(catalog.CERT_MANAGER_API), "certificates", expected.certificate, ns),
        tls_secret=cluster.certificate_secret(expected.certificate, ns),
        ca_secret=cluster.certificate_secret(expected.ca_secret, ns) if expected.ca_secret else None,
        fronts=_fronts(cluster, expected),
        exports=cluster.custom_items(*_api(expected.export_api), "apiserviceexports"),
    )
