"""Rotation: every secret the stack holds or generates changes in place, in protected stacks too, and the
backend rolls (docs/operations.md, "Rotating secrets")."""

from __future__ import annotations

import json
from functools import cache

import pytest

from klutch import catalog
from klutch.central import edge, kubebind
from klutch.config.central import ConfigError
from klutch.offline.mockengine import Evaluation
from tests import harness

RELEASE = catalog.RELEASES["v1.0.0"]
NS = RELEASE.backend_namespace
RANDOM_BYTES = "random:index/randomBytes:RandomBytes"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
CA_CERT = "tls:index/selfSignedCert:SelfSignedCert"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
SELF_SIGNED = {"backend": {"host": None}}


@cache
def _run(overrides_json: str) -> Evaluation:
    return harness.run(json.loads(overrides_json))


def run(overrides: dict) -> Evaluation:
    return _run(json.dumps(overrides, sort_keys=True))


def annotation(ev: Evaluation) -> str:
    annotations = ev.k8s("Deployment", RELEASE.backend_name, NS).get("spec.template.metadata.annotations")
    return annotations[kubebind.CHECKSUM_ANNOTATION]


def test_the_kubernetes_provider_updates_secrets_in_place():
    provider = run({}).one("pulumi:providers:kubernetes")
    assert provider.get("enableSecretMutable") == "true"


def test_rotated_credentials_change_the_secret_and_nothing_replaces_it():
    prod = {"environment": "prod"}
    rotated = {"environment": "prod", "dataServices": harness.services("postgresql")}
    rotated["dataServices"]["postgresql"]["serviceBroker"]["password"] = "a-new-broker-password"
    rotated["dataServices"]["postgresql"]["serviceBroker"]["username"] = "new-user"
    before, after = run(prod), run(rotated)
    name = catalog.SERVICE_BROKER.secret_name("postgresql")
    old, new = (ev.k8s("Secret", name, "crossplane-system") for ev in (before, after))
    assert new.protect and old.urn == new.urn  # the same protected resource, updated
    assert not new.replace_on_changes and new.replacement_trigger is None
    assert new.get("stringData") == {"username": "new-user", "password": "a-new-broker-password"}
    assert new.is_secret("stringData.password")


def test_a_rotated_oidc_client_secret_rolls_the_backend():
    before, after = run({}), run({"oidc": {"clientSecret": "a-rotated-client-secret"}})
    secret = after.k8s("Secret", kubebind.OIDC_SECRET, NS)
    assert secret.get("stringData.oidc-issuer-client-secret") == "a-rotated-client-secret"
    assert secret.replacement_trigger is None and not secret.replace_on_changes
    assert annotation(before) != annotation(after)


def test_cookie_keys_keep_their_first_generation_without_keepers():
    # a stack of an earlier release recorded no keepers: taking it over changes nothing
    keys = run({}).by_type(RANDOM_BYTES)
    assert len(keys) == 2 and all(k.get("keepers") is None for k in keys)


def test_a_new_cookie_key_generation_replaces_both_keys_and_rolls_the_backend():
    ev = run({"rotation": {"cookieKeys": 2}})
    keys = ev.by_type(RANDOM_BYTES)
    assert [k.get("keepers") for k in keys] == [{"generation": "2"}] * 2
    assert all(k.get("length") == kubebind.COOKIE_KEY_BYTES for k in keys)
    secret = ev.k8s("Secret", kubebind.COOKIE_SECRET, NS)
    assert all(ev.depends_on(secret, k) for k in keys)  # the Secret takes the new keys in place
    assert secret.replacement_trigger is None


def test_the_first_ca_generation_triggers_0_and_the_certificate_has_no_subject():
    # the engine never replaces for a trigger recorded as none (an earlier release's stack), only when a
    # recorded trigger differs: 0 is recorded, and raising it replaces
    ev = run(SELF_SIGNED)
    assert ev.one(PRIVATE_KEY).replacement_trigger == 0
    assert ev.one(CA_CERT).replacement_trigger == 0
    assert ev.one(CERTIFICATE).get("spec.subject") is None


def test_a_new_ca_generation_replaces_key_and_ca_and_reissues_the_certificate():
    ev = run({**SELF_SIGNED, "rotation": {"backendCa": 3}})
    assert ev.one(PRIVATE_KEY).replacement_trigger == 3
    assert ev.one(CA_CERT).replacement_trigger == 3
    assert ev.one(CERTIFICATE).get("spec.subject") == {"organizationalUnits": ["backend CA generation 3"]}
    ca_secret = ev.k8s("Secret", edge.CA_SECRET, NS)
    assert ca_secret.replacement_trigger is None  # updated in place with the new pair
    assert ev.depends_on(ca_secret, ev.one(CA_CERT))


def test_a_backend_ca_generation_with_a_host_changes_nothing():
    assert not run({"rotation": {"backendCa": 1}}).by_prefix("tls:")


@pytest.mark.parametrize(
    "rotation, key, allowed",
    [
        ({"cookieKeys": -1}, "rotation.cookieKeys", "between 0 and 1000000"),
        ({"backendCa": "next"}, "rotation.backendCa", "whole number"),
        ({"oidcClient": 1}, "rotation.oidcClient", "unknown key"),
    ],
)
def test_bad_rotation_counters_are_named(rotation, key, allowed):
    with pytest.raises(ConfigError) as err:
        harness.run({"rotation": rotation})
    line = next(ln for ln in str(err.value).splitlines() if f"klutch-central:{key} =" in ln)
    assert allowed in line
