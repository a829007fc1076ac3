"""Test-double Pulumi resource providers for the e2e (see `provider.py`): not product code."""
