"""The policy pack the Pulumi CLI runs: `pulumi preview --policy-pack policy`.

The CLI starts this file in the pack's own virtualenv with the stack's configuration in
PULUMI_CONFIG; the stack's `environment` picks the enforcement levels (prod: all mandatory).
The rules live in `klutch.policy.rules`, shared with the offline render's `--check`.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from klutch.policy import rules

PolicyPack(
    name="klutch",
    description="Security and delivery rules of klutch-central and its tenant project",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=rules.policies(rules.environment_from_process()),
)
