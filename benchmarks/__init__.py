"""Benchmarks, run from the repository root; not tests (the times depend on the machine).

- `python -m benchmarks.offline`: evaluating each committed stack under the mock engine vs. importing
  the SDKs alone.
- `python -m benchmarks.real_engine`: the central stack against the engine's floor under the real
  Pulumi CLI (after `e2e/toolchain/build`; it reuses the e2e harness in tests/e2e).
"""
