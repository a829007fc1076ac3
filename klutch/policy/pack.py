"""The rules as a pulumi_policy pack (`policy/__main__.py`): the resources the real engine hands a
policy as neutral `Resource`s, each rule a policy with its environment's enforcement level, the
levels following the stack config the CLI sends."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from klutch.policy.model import UNKNOWN, Resource
from klutch.policy.rules import RULES, Rule, environment_in
from klutch.sdk import compat


def _plain(value: Any) -> Any:
    """Copy pulumi_policy's unknown-checking proxies into plain values (unknowns become UNKNOWN)."""
    from pulumi_policy import Secret
    from pulumi_policy.proxy import UnknownValueError

    def item(container: Any, key: Any) -> Any:
        try:
            return _plain(container[key])
        except UnknownValueError:
            return UNKNOWN

    if isinstance(value, Secret):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {k: item(value, k) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [item(value, i) for i in range(len(value))]
    return value


def from_policy(res: Any) -> Resource:
    """A resource as the real engine hands it to a policy: `pulumi_policy.ResourceValidationArgs` (one
    resource) or `pulumi_policy.PolicyResource` (whole-stack validation, with property dependencies)."""
    deps = getattr(res, "property_dependencies", None) or {}
    return Resource(
        type=res.resource_type,
        name=res.name,
        urn=res.urn,
        props=_plain(res.props),
        provider=res.provider.name if res.provider is not None else None,
        custom=not _is_component_type(res.resource_type),
        property_dependencies={k: tuple(d.urn for d in v) for k, v in deps.items()},
    )


# Resources of the kubernetes package that are components (their children carry the provider).
_K8S_COMPONENT_TYPES = frozenset(
    {
        "kubernetes:yaml/v2:ConfigFile",
        "kubernetes:yaml/v2:ConfigGroup",
        "kubernetes:helm.sh/v4:Chart",
        "kubernetes:kustomize/v2:Directory",
        "kubernetes:yaml:ConfigFile",
        "kubernetes:yaml:ConfigGroup",
        "kubernetes:helm.sh/v3:Chart",
        "kubernetes:kustomize:Directory",
    }
)


def _is_component_type(type_: str) -> bool:
    return type_ in _K8S_COMPONENT_TYPES or type_.startswith("klutch:")


def policies(environment: str) -> list[Any]:
    """The rules as pulumi_policy policies, with the enforcement level of `environment`."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

    out: list[Any] = []
    for rule in RULES:
        common = {
            "name": rule.name,
            "description": rule.description,
            "enforcement_level": EnforcementLevel(rule.level(environment)),
            "remediation_steps": rule.remediation or None,
        }
        if rule.stack:

            def validate_stack(args: Any, report: Callable[..., None], rule: Rule = rule) -> None:
                for urn, message in rule.check([from_policy(r) for r in args.resources]):
                    report(message, urn)

            out.append(StackValidationPolicy(validate=validate_stack, **common))
        else:

            def validate(args: Any, report: Callable[..., None], rule: Rule = rule) -> None:
                for message in rule.check(from_policy(args)):
                    report(message)

            out.append(ResourceValidationPolicy(validate=validate, **common))
    return out


def set_environment(policies: Sequence[Any], environment: str) -> None:
    """Give every policy of `policies(...)` its rule's enforcement level in `environment`."""
    from pulumi_policy import EnforcementLevel

    levels = {rule.name: EnforcementLevel(rule.level(environment)) for rule in RULES}
    for policy in policies:
        policy.enforcement_level = levels[policy.name]


def follow_stack_config(policies: Sequence[Any]) -> None:
    """Make the pack take its environment from the stack config the CLI sends when it starts the pack.

    Current Pulumi CLIs (v3.274 included) no longer put the stack's config in the pack's PULUMI_CONFIG:
    they send it, with the project, in the analyzer's ConfigureStack call, of which pulumi_policy 1.21
    keeps only the stack tags. This re-levels `policies` before the first resource is analyzed. A call without config
    (older CLIs) leaves the levels `environment_from_process` gave.
    """
    compat.before_policy_stack_configured(
        lambda project, config: set_environment(policies, environment_in(config, project))
    )
