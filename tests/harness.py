"""Test helpers: a valid base configuration and one call that evaluates the central program."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from klutch.central import program
from klutch.config import central as central_config
from klutch.config.reader import ConfigError
from klutch.offline import stackfile
from klutch.offline.curated import MOCK_REGION
from klutch.offline.mockengine import Evaluation, evaluate

ROOT = Path(__file__).resolve().parent.parent
NS = central_config.NAMESPACE

# Secrets used by the tests: distinctive, so a leak into a plain input or output is findable.
OIDC_SECRET = "oidc-client-secret-value-7f3a"
BROKER_PASSWORD = "broker-password-value-91c2"
BACKUP_PASSWORD = "backup-password-value-4d8e"


def endpoint(svc: str, kind: str, password: str) -> dict[str, str]:
    return {"url": f"http://{svc}-{kind}.example.com:3000", "username": f"{svc}-user", "password": password}


def services(*names: str) -> dict[str, Any]:
    return {
        n: {
            "serviceBroker": endpoint(n, "broker", BROKER_PASSWORD),
            "backupManager": endpoint(n, "backup", BACKUP_PASSWORD),
        }
        for n in names
    }


def base_raw() -> dict[str, Any]:
    """A small valid configuration (keys without namespace, structured values as objects)."""
    return {
        "environment": "dev",
        "klutchRelease": "v1.0.0",  # the tests of each layer pin a release; test_releases covers every release
        "network": {"cidr": "10.0.0.0/16"},
        "cluster": {"mode": "eks"},
        "dataServices": services("postgresql"),
        "exposure": {"acmeEmail": "ops@example.com"},
        "backend": {"host": "klutch.example.com"},
        "oidc": {"issuerUrl": "https://idp.example.com/realms/klutch", "clientSecret": OIDC_SECRET},
    }


BASE_SECRET_KEYS = ("dataServices", "oidc")


def merged(overrides: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """base_raw() with `overrides` merged in (dicts merge deeply; None deletes a key)."""
    raw = copy.deepcopy(base_raw())

    def merge(into: dict, new: dict) -> None:
        for k, v in new.items():
            if v is None:
                into.pop(k, None)
            elif isinstance(v, dict) and isinstance(into.get(k), dict) and k != "dataServices":
                merge(into[k], v)
            else:
                into[k] = v

    merge(raw, overrides or {})
    for k in drop:
        raw.pop(k, None)
    return raw


def run(
    overrides: dict[str, Any] | None = None,
    *,
    secret_keys: tuple[str, ...] | None = None,
    stack: str = "test",
    raw: dict[str, Any] | None = None,
    region: str | None = MOCK_REGION,
    **kwargs: Any,
) -> Evaluation:
    """Evaluate the central program with the base config plus `overrides` (and `aws:region`, unless None)."""
    raw = merged(overrides) if raw is None else raw
    keys = BASE_SECRET_KEYS if secret_keys is None else secret_keys
    config = {f"{NS}:{k}": v for k, v in raw.items()} | ({"aws:region": region} if region else {})
    return evaluate(program.main, config, [f"{NS}:{k}" for k in keys], project="klutch-central", stack=stack, **kwargs)


def parse(
    overrides: dict[str, Any] | None = None,
    *,
    secret_keys: tuple[str, ...] | None = None,
    raw: dict[str, Any] | None = None,
    stack: str = "test",
    others: dict[str, Any] | None = None,
) -> central_config.CentralConfig:
    """The parsed base config plus `overrides`; `others`: the stack's keys of other namespaces (None: unknown)."""
    raw = merged(overrides) if raw is None else raw
    keys = set(BASE_SECRET_KEYS if secret_keys is None else secret_keys)
    return central_config.parse(raw, keys, stack=stack, others=others)


def problems_of(overrides: dict[str, Any] | None = None, **kwargs: Any) -> str:
    """The message of the ConfigError `parse(overrides, ...)` raises (the test fails when it raises none)."""
    with pytest.raises(ConfigError) as err:
        parse(overrides, **kwargs)
    return str(err.value)


def run_stack_file(stack: str) -> Evaluation:
    """Evaluate a committed stack file (secret placeholders filled as the offline tools do)."""
    config, secret_keys = stackfile.read(ROOT / f"Pulumi.{stack}.yaml", NS, central_config.secret_paths)
    return evaluate(program.main, config, secret_keys, project="klutch-central", stack=stack)
