"""The klutch policy pack (pulumi-policy, Python). Rules in `policy.rules`; the pack in `__main__.py`."""
