"""The Pulumi SDK internals the project relies on, each behind klutch.sdk.compat: an SDK bump that
moves one fails here, by name, instead of deep inside the config reader or the mock engine."""

from __future__ import annotations

import pulumi
import pytest

from klutch.offline.curated import CuratedMocks
from klutch.offline.mockengine import RecordingMonitor, _RecordingEngine
from klutch.sdk import compat


@pytest.fixture
def clean_config():
    yield
    compat.set_all_config({}, [])


def test_config_values_and_secret_keys_round_trip(clean_config):
    compat.set_all_config({"p:a": "1", "p:b": '{"x": 1}'}, ["p:b"])
    assert {k: v for k, v in compat.config_values().items() if k.startswith("p:")} == {"p:a": "1", "p:b": '{"x": 1}'}
    assert "p:b" in compat.config_secret_keys() and "p:a" not in compat.config_secret_keys()
    compat.set_all_config({}, [])
    assert not any(k.startswith("p:") for k in compat.config_values())
    assert "p:b" not in compat.config_secret_keys()


def test_secret_wire_format():
    from google.protobuf import struct_pb2
    from pulumi.runtime import rpc

    wrapped = {rpc._special_sig_key: rpc._special_secret_sig, "value": "s3cr3t"}
    assert compat.is_secret(wrapped) and not compat.is_secret({"value": "s3cr3t"}) and not compat.is_secret("x")
    assert compat.unwrap_secret(wrapped) == "s3cr3t"
    struct = struct_pb2.Struct()
    struct.update({"a": 1.0, "s": wrapped})
    assert compat.deserialize_properties(struct) == {"a": 1.0, "s": wrapped}


def test_log_severities():
    from pulumi.runtime.proto import engine_pb2

    assert [
        compat.log_severity(s) for s in (engine_pb2.DEBUG, engine_pb2.INFO, engine_pb2.WARNING, engine_pb2.ERROR)
    ] == [
        "debug",
        "info",
        "warning",
        "error",
    ]


def test_mock_runtime_runs_a_program_in_a_stack(clean_config):
    monitor = RecordingMonitor(CuratedMocks())
    engine = _RecordingEngine()
    compat.configure_mocks(monitor, engine, project="p", stack="s", preview=False)
    compat.set_all_config({"p:greeting": "hi"}, [])
    seen = {}

    def program() -> None:
        seen["stack"], seen["project"] = pulumi.get_stack(), pulumi.get_project()
        seen["greeting"] = pulumi.Config("p").get("greeting")
        pulumi.log.warn("careful")
        pulumi.export("out", pulumi.Output.secret("x"))

    compat.run_program(program, monitor.close)
    assert seen == {"stack": "s", "project": "p", "greeting": "hi"}
    assert compat.is_secret(monitor.stack_outputs["out"])
    assert ("warning", "careful") in engine.lines


def test_transforms_resolve_to_the_registered_callables(clean_config):
    from klutch.offline.mockengine import evaluate

    def transform(args: pulumi.ResourceTransformArgs) -> None:
        return None

    def program() -> None:
        pulumi.ComponentResource("t:index:C", "c", opts=pulumi.ResourceOptions(transforms=[transform]))

    ev = evaluate(program, {}, project="p", stack="s")
    assert ev.one("t:index:C").transforms == [transform]


def test_the_dynamic_provider_host_reports_an_exception_as_format_exc_and_is_this_module():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(compat.DYNAMIC_PROVIDER_HOST)  # finds it without running it
    assert spec is not None and spec.origin
    host = Path(spec.origin).read_text()
    assert "context.abort(grpc.StatusCode.UNKNOWN, traceback.format_exc())" in host
    assert [m for m in ("Create", "Update", "Diff", "Check") if f"@_abort_with_traceback\n    def {m}(" in host] == [
        "Create",
        "Update",
        "Diff",
        "Check",
    ]
    assert not compat.in_dynamic_provider_host()  # pytest is not the host


def test_a_preview_unknown_is_recognised():
    from pulumi.runtime import rpc

    assert compat.is_unknown(rpc.UNKNOWN) and not compat.is_unknown("x") and not compat.is_unknown(None)


INTERRUPTED = """
import os, signal, sys, time
from pulumi.runtime import settings
from klutch.sdk import compat
signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own handler, even if the parent ignores SIGINT
if sys.argv[1] == "engine":  # the engine's monitor address, as the language host passes it (never dialled here)
    settings.configure(settings.Settings(project="p", stack="s", monitor="127.0.0.1:9"))
print(compat.in_engine_program(), flush=True)
compat.end_quietly_on_interrupt()
os.kill(os.getpid(), signal.SIGINT)
time.sleep(5)
"""


@pytest.mark.parametrize(("where", "in_engine"), [("engine", True), ("test", False)])
def test_an_interrupted_program_ends_without_a_traceback_only_under_the_engine(where, in_engine):
    import signal
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", INTERRUPTED, where], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(in_engine)
    assert done.returncode == -signal.SIGINT  # ended by the signal either way
    # Under the engine it ends at once; anywhere else Python's KeyboardInterrupt (and its traceback) stays.
    assert ("Traceback" in done.stderr) is not in_engine, done.stderr
