"""Remote CRD manifests (the kube-bind CRD files of a release), applied the same safe way on the
central cluster and on every tenant cluster.

One `k8s.yaml.v2.ConfigGroup` holds every file of a release: a CRD keeps its resource name when a
release moves it to another file or URL, so an upgrade updates it in place. It is a remote component:
the provider fetches the files and registers each CRD as a child with only `parent` set — options
given to the component (`retainOnDelete`) do not reach them (pulumi-kubernetes#3065). A resource
transform does: it runs for every child. For each CRD it
- adds `pulumi.com/waitFor: condition=Established`, so nothing that depends on the file is applied
  before the API exists (the manual procedure's "apply the file twice" becomes impossible);
- records the files it came from (`catalog.CRD_SOURCE_ANNOTATION`): under the real engine the
  component's own inputs are invisible to a policy pack, its children are not;
- sets `retain_on_delete` (deleting a CRD deletes every object of its kind: every tenant binding)
  and, in protected stacks, `protect`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from klutch import catalog

CRD_TYPE = "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"
WAIT_FOR = "pulumi.com/waitFor"


def crd_transform(protect: bool, urls: Sequence[str]) -> pulumi.ResourceTransform:
    """The transform for every child of the CRD files at `urls` (other kinds than CRDs are left alone)."""
    added = {WAIT_FOR: "condition=Established", catalog.CRD_SOURCE_ANNOTATION: json.dumps(list(urls))}

    def transform(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if args.type_ != CRD_TYPE:
            return None
        props = dict(args.props)
        metadata = dict(props.get("metadata") or {})
        metadata["annotations"] = {**(metadata.get("annotations") or {}), **added}
        props["metadata"] = metadata
        keep = pulumi.ResourceOptions(protect=protect, retain_on_delete=True)
        return pulumi.ResourceTransformResult(props=props, opts=pulumi.ResourceOptions.merge(args.opts, keep))

    return transform


def crd_files(
    resource_name: str, urls: Sequence[str], *, protect: bool, opts: pulumi.ResourceOptions
) -> k8s.yaml.v2.ConfigGroup:
    """The CRDs in the files at `urls` (pinned by the catalog), kept on delete, protected when `protect`."""
    return k8s.yaml.v2.ConfigGroup(
        resource_name,
        files=urls,
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(protect=protect, retain_on_delete=True, transforms=[crd_transform(protect, urls)]),
        ),
    )
