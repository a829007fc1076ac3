"""Every use of the Pulumi Python SDK's private internals, in one place.

The config reader and the offline mock engine need a few things the SDK has no public API for:
the raw config the language host passed (without the warnings `Config.get` prints for secrets),
the wire format of secret and unknown values, the runtime settings and the stack runner; the bind's
dynamic provider relies on how the dynamic-provider host reports an exception. They reach them only
through this module, so a Pulumi SDK upgrade that moves an internal breaks here — and
`tests/test_compat.py` says which — instead of somewhere deep in the program or the tooling.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from pulumi.runtime import config as _config
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc as _rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime import stack as _stack
from pulumi.runtime.proto import resource_pb2_grpc as _resource_grpc

# The mock engine's building blocks (pulumi.runtime.mocks: public names, but not a stable API).
Mocks = _mocks.Mocks
MockMonitor = _mocks.MockMonitor
MockEngine = _mocks.MockEngine
MockResourceArgs = _mocks.MockResourceArgs
MockCallArgs = _mocks.MockCallArgs


# ------------------------------------------------------------------------------- config
def config_values() -> dict[str, Any]:
    """Every config value of the running stack (full keys), as the language host or `set_all_config` gave it."""
    values: dict[str, Any] = {}
    values.update(_config.get_config_env())
    values.update(_config.CONFIG.get())
    return values


def config_secret_keys() -> set[str]:
    """The full keys of the running stack's secret config values."""
    return set(_config.get_config_secret_keys_env()) | set(_config._SECRET_KEYS.get())


def set_all_config(config: Mapping[str, str], secret_keys: Iterable[str]) -> None:
    """Replace the process's config (what a program's `pulumi.Config` reads) and its secret keys."""
    _config.set_all_config(dict(config), list(secret_keys))


# ------------------------------------------------------------------------------- secret values
def is_secret(value: Any) -> bool:
    """True for a deserialized property value that is a wrapped Pulumi secret."""
    return _rpc.is_rpc_secret(value)


def unwrap_secret(value: Any) -> Any:
    """The value inside one wrapped Pulumi secret."""
    return _rpc.unwrap_rpc_secret(value)


def is_unknown(value: Any) -> bool:
    """True for a property value a preview does not know yet (as a dynamic provider's `check` sees it)."""
    return isinstance(value, str) and value == _rpc.UNKNOWN


def deserialize_properties(struct: Any) -> Any:
    """A protobuf Struct of resource properties as Python values (secrets stay wrapped)."""
    return _rpc.deserialize_properties(struct)


# ------------------------------------------------------------------------------- the dynamic-provider host
DYNAMIC_PROVIDER_HOST = "pulumi.dynamic.__main__"  # `python -m pulumi.dynamic`, started by the engine


def in_dynamic_provider_host() -> bool:
    """True in the process Pulumi runs dynamic providers in (never in a program, a test or the mock engine)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) == DYNAMIC_PROVIDER_HOST


def report_errors_without_frames() -> None:
    """Called just before a dynamic provider raises an operator's mistake: the host reports it (and any
    later exception of this process) as its last line, `<type>: <message>`.

    The host answers an exception of a provider's create/update/diff/check with
    `traceback.format_exc()`, and the CLI prints that text. With `sys.tracebacklimit = 0` it holds no
    frames and no "Traceback" header. Set only inside the host, a process of its own that ends with the
    deployment; a program, a test or the mock engine is never affected.
    """
    if in_dynamic_provider_host():
        sys.tracebacklimit = 0


# ------------------------------------------------------------------------------- the program process
def in_engine_program() -> bool:
    """True in a program the engine runs (its monitor is the engine's gRPC endpoint): never in a test, the
    offline render or the mock engine."""
    return isinstance(_settings.SETTINGS.monitor, _resource_grpc.ResourceMonitorStub)


def end_quietly_on_interrupt() -> None:
    """In a program the engine runs, SIGINT ends the process at once, as it ends a program in any other
    language. The engine interrupts the program when a deployment fails (a resource refused by its
    provider) or is cancelled; Python's default would raise KeyboardInterrupt wherever the program is
    and print its traceback, which the CLI shows under the stack after the resource's own clear error."""
    if in_engine_program():
        signal.signal(signal.SIGINT, signal.SIG_DFL)


# ------------------------------------------------------------------------------- the mock runtime
def configure_mocks(
    monitor: Any, engine: Any, *, project: str, stack: str, preview: bool, organization: str = "organization"
) -> None:
    """Point the runtime at `monitor` and `engine` (a fresh root, no outputs left from an earlier run)."""
    _settings.configure(
        _mocks.MockSettings(
            monitor=monitor,
            monitor_features=set(monitor.GetDeploymentInfo(None).supportedFeatures),
            engine=engine,
            project=project,
            stack=stack,
            dry_run=preview,
            organization=organization,
            callbacks=None,
        )
    )
    reset_root()
    _settings.SETTINGS.outputs.clear()


def under_mock_engine() -> bool:
    """True while a program runs under a mock monitor (unit tests, the offline render), not the real engine."""
    return isinstance(_settings.SETTINGS.monitor, _mocks.MockMonitor)


def reset_root() -> None:
    _settings.ROOT.set(None)


def run_in_stack(program: Callable[[], Any]) -> Awaitable[None]:
    """The coroutine that runs `program` inside a root `pulumi:pulumi:Stack` resource."""
    return _stack.run_in_stack(program)


def run_program(program: Callable[[], Any], on_exit: Callable[[], None]) -> None:
    """Run `program` in a stack on a fresh event loop of its own; `on_exit` runs before the loop is
    released (the mock monitor's threads), then the SDK's root resource is reset."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(run_in_stack(program))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        on_exit()
        asyncio.set_event_loop(None)
        reset_root()


def resolve_callbacks(transforms: Any) -> list[Callable[..., Any]]:
    """The Python callables behind a registration request's `transforms` (mock engine only)."""
    return _mocks._resolve_callbacks(transforms)


def log_severity(severity: int) -> str:
    """'debug' | 'info' | 'warning' | 'error' for an engine Log request's severity."""
    from pulumi.runtime.proto import engine_pb2

    return {
        engine_pb2.DEBUG: "debug",
        engine_pb2.INFO: "info",
        engine_pb2.WARNING: "warning",
        engine_pb2.ERROR: "error",
    }.get(severity, "info")


# ------------------------------------------------------------------------------- provider SDKs
def kubernetes_sdk_version() -> str:
    """The version of the installed pulumi-kubernetes SDK: the provider plugin a hand-built
    `kubernetes:` custom resource asks for (the generated resources pass it the same way)."""
    from pulumi_kubernetes import _utilities

    return _utilities.get_version()


def before_policy_stack_configured(hook: Callable[[str, dict[str, str]], None]) -> None:
    """Call `hook(project, config)` when the CLI configures a running policy pack with its stack's config,
    before the first resource is analyzed (a call without config is left alone).

    pulumi_policy (pinned in constraints.txt) keeps only the stack tags of the analyzer's ConfigureStack
    call; this wraps that call on its private servicer class.
    """
    from pulumi_policy.policy import _PolicyAnalyzerServicer as Servicer

    configure_stack = Servicer.ConfigureStack

    def with_config(self: Any, request: Any, context: Any) -> Any:
        if request.config:
            hook(request.project, dict(request.config))
        return configure_stack(self, request, context)

    Servicer.ConfigureStack = with_config
