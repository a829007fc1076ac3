"""Central stack outputs feed the tenant project unchanged: the contract between the two programs.

The committed central dev stack is evaluated; its real outputs become the tenant example stack's
StackReference; the tenant program binds exactly what the central stack exports.
"""

from __future__ import annotations

import dataclasses

import pytest

from klutch.config import tenant as tenant_config
from klutch.offline import stackfile
from klutch.offline.mockengine import evaluate
from klutch.outputs import TENANT_READS, CentralOutputs, tenant_output_names
from klutch.tenant import binding
from klutch.tenant import program as tenant_program
from tests import harness
from tests.test_tenant import bind_mock

TENANT_STACK = harness.ROOT / "tenant" / "Pulumi.example.yaml"


@pytest.fixture(scope="module")
def central():
    return harness.run_stack_file("dev")


def run_tenant(central_outputs, overrides=None):
    config, secret_keys = stackfile.read(TENANT_STACK, tenant_config.NAMESPACE, tenant_config.secret_paths)
    config.update(overrides or {})
    name = config[f"{tenant_config.NAMESPACE}:centralStack"]
    return evaluate(
        tenant_program.main,
        config,
        secret_keys,
        project="klutch-tenant",
        stack="example",
        stack_outputs={name: central_outputs},
        resource_hook=bind_mock,
    )


def test_tenant_binds_with_the_central_stacks_real_outputs(central):
    outputs = {k: central.output(k) for k in central.outputs}
    tenant = run_tenant(outputs)
    bind = tenant.one(binding.TYPE, "binding")
    assert (
        bind.get("bindUrl")
        == central.output("bindNonInteractiveUrl")
        == "https://klutch.dev.example.com/bind-noninteractive"
    )
    requested = {(a["group"], a["resource"]) for a in bind.get("apis")}
    exported = {(a["group"], a["resource"]) for a in central.output("bindingApis")}
    assert requested <= exported
    assert ("anynines.com", "postgresqlinstances") in requested
    konnector = tenant.k8s("Deployment", "konnector", "klutch-bind")
    assert konnector.get("spec.template.spec.containers.0.image") == central.output("konnectorImage")
    assert tenant.one("kubernetes:yaml/v2:ConfigGroup").get("files") == central.output("kubeBindCrdUrls")
    assert tenant.output("kubectlBindCommand") == central.output("kubectlBindCommand")


def test_tenant_cannot_bind_an_api_the_central_stack_does_not_export(central):
    from klutch.config.reader import ConfigError

    outputs = {k: central.output(k) for k in central.outputs}
    with pytest.raises(ConfigError) as err:
        run_tenant(outputs, {"klutch-tenant:apis": '["mongodbinstances.anynines.com"]'})
    assert "mongodbinstances" in str(err.value) and "postgresqlinstances.anynines.com" in str(err.value)


# ------------------------------------------------------------------------------ the output record
ALL_OUTPUTS = [
    "vpcId",
    "publicSubnetIds",
    "privateSubnetIds",
    "clusterName",
    "clusterEndpoint",
    "clusterCaPem",
    "kubeconfig",
    "oidcProviderArn",
    "crossplaneVersion",
    "klutchRelease",
    "enabledDataServices",
    "providerConfigHealthCheck",
    "backendHost",
    "backendUrl",
    "loadBalancerHostname",
    "exportUrl",
    "bindNonInteractiveUrl",
    "konnectorImage",
    "kubectlBindCommand",
    "bindingApis",
    "kubeBindCrdUrls",
    "tlsCaPem",
    "monitoringDashboard",
    "monitoringAlerts",
]


def test_the_record_names_every_stack_output_in_export_order():
    names = [CentralOutputs.output_name(f.name) for f in dataclasses.fields(CentralOutputs)]
    assert names == ALL_OUTPUTS


def test_the_central_stack_exports_exactly_the_record_minus_what_it_lacks(central):
    # dev: EKS with a configured host (no self-signed CA), observability off
    assert set(central.outputs) == set(ALL_OUTPUTS) - {"tlsCaPem", "monitoringDashboard", "monitoringAlerts"}
    self_signed = harness.run({"backend": {"host": None}})
    assert "tlsCaPem" in self_signed.outputs


def test_the_tenant_reads_the_record_s_outputs():
    assert tenant_output_names() == tuple(CentralOutputs.output_name(f) for f in TENANT_READS)
    assert set(tenant_output_names()) <= set(ALL_OUTPUTS)
    # the tenant configuration's list of what a tenant binds with names the same outputs
    assert tenant_config.CENTRAL_OUTPUTS == tenant_output_names()
