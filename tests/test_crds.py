"""The kube-bind CRDs on the central and the tenant cluster: established before use, never deleted
with the stack, protected in protected stacks — through the transform that reaches every CRD the
remote ConfigFile registers (options on the component itself do not)."""

from __future__ import annotations

import pulumi
import pytest

from klutch.kube.crds import CRD_TYPE, crd_transform
from klutch.offline.mockengine import Registration
from tests import harness
from tests.test_tenant import run as run_tenant


def child(type_: str = CRD_TYPE, annotations: dict | None = None) -> pulumi.ResourceTransformArgs:
    """A child as the yaml/v2 ConfigFile provider registers it: only `parent` set."""
    return pulumi.ResourceTransformArgs(
        custom=True,
        type_=type_,
        name="crds:apiservicebindings.klutch.anynines.com",
        props={
            "metadata": {"name": "apiservicebindings.klutch.anynines.com", "annotations": annotations or {}},
            "spec": {},
        },
        opts=pulumi.ResourceOptions(ignore_changes=["status"]),
    )


def applied(reg: Registration, args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """What the engine does with a child of `reg`: run its registered transforms in order."""
    result = None
    for transform in reg.transforms:
        out = transform(args)
        if out is not None:
            result, args = out, pulumi.ResourceTransformArgs(args.custom, args.type_, args.name, out.props, out.opts)
    return result


@pytest.mark.parametrize("protect", [True, False])
def test_transform_keeps_and_waits_for_each_crd(protect):
    args = child(annotations={"a": "b"})
    result = crd_transform(protect, ["https://x.test/v1.5.0/a.yaml", "/mirror/b.yaml"])(args)
    assert result.props["metadata"]["annotations"] == {
        "a": "b",
        "pulumi.com/waitFor": "condition=Established",
        "klutch.anynines.com/source-files": '["https://x.test/v1.5.0/a.yaml", "/mirror/b.yaml"]',
    }
    assert args.props["metadata"]["annotations"] == {"a": "b"}  # the input is not mutated
    assert result.opts.protect is protect and result.opts.retain_on_delete is True
    assert result.opts.ignore_changes == ["status"]  # the child's own options survive


def test_transform_leaves_other_kinds_alone():
    assert crd_transform(True, [])(child("kubernetes:core/v1:Namespace")) is None


def central(protect: bool) -> Registration:
    return harness.run({"protect": protect}).one("kubernetes:yaml/v2:ConfigGroup", "kube-bind-crds")


def tenant(protect: bool) -> Registration:
    return run_tenant({"protect": protect}).one("kubernetes:yaml/v2:ConfigGroup", "tenant-kube-bind-crds")


@pytest.mark.parametrize("where", [central, tenant], ids=["central", "tenant"])
@pytest.mark.parametrize("protect", [True, False])
def test_every_crd_of_the_file_is_kept_waited_for_and_protected_as_configured(where, protect):
    crds = where(protect)
    assert crds.protect is protect and crds.retain_on_delete is True
    result = applied(crds, child())
    assert result is not None, "the CRD file carries no transform: its CRDs would be deleted with the stack"
    assert result.opts.retain_on_delete is True and result.opts.protect is protect
    assert result.props["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Established"
