"""The policy pack the Pulumi CLI runs: `pulumi preview --policy-pack policy`.

The CLI starts this file in the pack's own virtualenv with the stack's configuration in
PULUMI_CONFIG; the stack's `environment` picks the enforcement levels (prod: all mandatory).
The rules live in `policy/rules.py` (shared with `python -m components.render --check`); the
repository root goes on the import path so they, and the catalog they read, are importable.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy import rules  # noqa: E402

PolicyPack(
    name="klutch",
    description="Security and delivery rules of klutch-central and its tenant project",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=rules.policies(rules.environment_from_process()),
)
