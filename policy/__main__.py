"""The policy pack the Pulumi CLI runs: `pulumi preview --policy-pack policy`.

The CLI starts this file in the pack's virtualenv; the stack's `environment` config picks the
enforcement levels (prod: all mandatory), from PULUMI_CONFIG (older CLIs) or from the stack config the
CLI sends when it configures the pack (`pack.follow_stack_config`).
The rules live in `klutch.policy.rules`, shared with the offline render's `--check`;
`klutch.policy.pack` makes them policies.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from klutch.policy import pack, rules

policies = pack.policies(rules.environment_from_process())
pack.follow_stack_config(policies)
PolicyPack(
    name="klutch",
    description="Security and delivery rules of klutch-central and its tenant project",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=policies,
)
