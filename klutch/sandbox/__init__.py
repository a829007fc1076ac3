"""A local Klutch sandbox: control planes on 127.0.0.1 with doubles of the controllers a real cluster runs,
the real Pulumi CLI against them; shared by `klutch-sandbox` and the real-engine tests (tests/e2e)."""
