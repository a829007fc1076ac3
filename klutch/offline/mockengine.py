"""The project's one mock engine: evaluates a Pulumi program offline and records everything.

Used by the tests and by the offline renderer (`python -m klutch.offline.render`). A `MockMonitor`
subclass records each registered resource with its type, name, inputs (secrets kept wrapped, so
secretness can be asserted), parent, provider, dependencies and options; the stack's outputs;
and the engine's log lines. Remote components (pulumi_eks) are one opaque resource under mocks:
`klutch.offline.curated` returns the outputs later layers read from them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format

from klutch.offline.curated import CuratedMocks, ResourceHook
from klutch.sdk import compat
from klutch.sdk.tree import contains_secret, dotted_get, dotted_walk, strings, unwrap_secrets


# ------------------------------------------------------------------------------- records
@dataclass
class Registration:
    """One resource as the engine saw it."""

    urn: str
    type: str
    name: str
    raw_inputs: dict[str, Any]
    parent: str
    provider: str  # "urn::id" reference, "" for none
    dependencies: list[str]
    custom: bool
    # Resource options (a read resource has none).
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    replacement_trigger: Any = None  # a change of this value replaces the resource (None: none set)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    aliases: list[Any] = field(default_factory=list)
    remote: bool = False
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    read: bool = False  # a `Resource.get` of an existing object, not something the program creates
    # The resource transforms registered with it (the engine runs them for it and its children; the
    # mock engine does not, so tests apply them to the children a remote component would register).
    transforms: list[Callable[..., Any]] = field(default_factory=list)

    @property
    def inputs(self) -> dict[str, Any]:
        """Inputs with secrets unwrapped (use `is_secret` to ask about secretness)."""
        return unwrap_secrets(self.raw_inputs)

    def get(self, path: str, default: Any = None) -> Any:
        """The input at a dotted path (`spec.template.metadata`, list indexes as numbers), secrets unwrapped."""
        return dotted_get(self.raw_inputs, path, default)

    def is_secret(self, path: str) -> bool:
        """True when the value at `path` (or anything inside it, or around it) is a Pulumi secret."""
        value, crossed = dotted_walk(self.raw_inputs, path)
        return crossed or contains_secret(value)

    @property
    def provider_urn(self) -> str:
        return self.provider.split("::")[0] + "::" + "::".join(self.provider.split("::")[1:-1]) if self.provider else ""

    @property
    def k8s_kind(self) -> str | None:
        return self.get("kind")

    @property
    def k8s_name(self) -> str | None:
        return self.get("metadata.name")


@dataclass
class Evaluation:
    resources: list[Registration]
    outputs: dict[str, Any]  # raw (secrets wrapped)
    logs: list[tuple[str, str]]  # (severity, message)
    invented: frozenset[str] = frozenset()  # values the mocks made up (see CuratedMocks)

    def is_placeholder(self, value: Any) -> bool:
        """True when `value` holds a value the mocks made up (or a placeholder address)."""
        for s in strings(unwrap_secrets(value)):
            if ".placeholder.invalid" in s or s in self.invented:
                return True
            if any(len(i) >= 12 and i in s for i in self.invented):
                return True
        return False

    # ------------------------------------------------------------------ queries
    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def by_prefix(self, prefix: str) -> list[Registration]:
        return [r for r in self.resources if r.type.startswith(prefix)]

    def one(self, type_: str, name: str | None = None, **k8s: str) -> Registration:
        """The single resource of `type_` (and Pulumi `name`, or Kubernetes kind/name/namespace)."""
        found = [r for r in self.by_type(type_) if name is None or r.name == name]
        for key, want in k8s.items():
            path = {"kind": "kind", "k8s_name": "metadata.name", "namespace": "metadata.namespace"}[key]
            found = [r for r in found if r.get(path) == want]
        if len(found) != 1:
            raise AssertionError(f"expected one {type_} {name or ''} {k8s or ''}, found {[r.name for r in found]}")
        return found[0]

    def k8s(self, kind: str, name: str, namespace: str | None = None) -> Registration:
        """The one Kubernetes object of `kind` named `name` (any kubernetes: type)."""
        found = [
            r
            for r in self.by_prefix("kubernetes:")
            if r.get("kind") == kind
            and r.get("metadata.name") == name
            and (namespace is None or r.get("metadata.namespace") == namespace)
        ]
        if len(found) != 1:
            raise AssertionError(f"expected one {kind} {namespace or ''}/{name}, found {len(found)}")
        return found[0]

    def kinds(self, kind: str) -> list[Registration]:
        return [r for r in self.by_prefix("kubernetes:") if r.get("kind") == kind]

    def by_urn(self, urn: str) -> Registration | None:
        return next((r for r in self.resources if r.urn == urn), None)

    def _edges(self, r: Registration) -> Iterable[str]:
        yield from r.dependencies
        for deps in r.property_dependencies.values():
            yield from deps
        if r.provider_urn:
            yield r.provider_urn

    def depends_on(self, a: Registration, b: Registration) -> bool:
        """True when `a` waits for `b` (directly or transitively, through dependencies and providers)."""
        seen, todo = set(), list(self._edges(a))
        while todo:
            urn = todo.pop()
            if urn == b.urn:
                return True
            if urn in seen:
                continue
            seen.add(urn)
            dep = self.by_urn(urn)
            if dep is not None:
                todo.extend(self._edges(dep))
                # waiting for a component means waiting for its children
                todo.extend(c.urn for c in self.resources if c.parent == urn)
        return False

    def descendants(self, r: Registration) -> list[Registration]:
        out, todo = [], [r.urn]
        while todo:
            urn = todo.pop()
            kids = [c for c in self.resources if c.parent == urn]
            out.extend(kids)
            todo.extend(c.urn for c in kids)
        return out

    def output(self, name: str) -> Any:
        return unwrap_secrets(self.outputs[name])

    def output_is_secret(self, name: str) -> bool:
        return contains_secret(self.outputs[name])

    def warnings(self) -> list[str]:
        return [m for s, m in self.logs if s == "warning"]

    def notes(self) -> list[str]:
        """The program's info messages (e.g. that the issuer preflight was skipped offline)."""
        return [m for s, m in self.logs if s == "info"]


def _registration(request: Any, response: Any, inputs: Any, **more: Any) -> Registration:
    """The record of a registered or read resource: what both requests say, and `more`."""
    return Registration(
        urn=response.urn,
        type=request.type,
        name=request.name,
        raw_inputs=compat.deserialize_properties(inputs),
        parent=request.parent,
        provider=request.provider,
        dependencies=list(request.dependencies),
        **more,
    )


class RecordingMonitor(compat.MockMonitor):
    def __init__(self, m: compat.Mocks) -> None:
        super().__init__(m)
        self.records: list[Registration] = []
        self.stack_outputs: dict[str, Any] = {}
        self.stack_urn = ""
        self.thread_loops: list[asyncio.AbstractEventLoop] = []

    def _thread_loop(self) -> None:
        """The SDK's mock monitor makes an event loop per worker thread and never closes it; own them."""
        try:
            asyncio.get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.thread_loops.append(loop)

    def close(self) -> None:
        for loop in self.thread_loops:
            loop.close()
        self.thread_loops.clear()

    def Invoke(self, request: Any) -> Any:  # protobuf request and response messages
        self._thread_loop()
        return super().Invoke(request)

    def RegisterResource(self, request: Any) -> Any:  # protobuf request and response messages
        self._thread_loop()
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
            return response
        ct = request.customTimeouts
        rec = _registration(
            request,
            response,
            request.object,
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            delete_before_replace=bool(request.deleteBeforeReplace),
            ignore_changes=list(request.ignoreChanges),
            replace_on_changes=list(request.replaceOnChanges),
            replacement_trigger=(
                json_format.MessageToDict(request.replacement_trigger)
                if request.HasField("replacement_trigger")
                else None
            ),
            custom_timeouts={
                k: v for k, v in (("create", ct.create), ("update", ct.update), ("delete", ct.delete)) if v
            },
            aliases=list(request.aliases),
            custom=bool(request.custom),
            remote=bool(request.remote),
            id=response.id,
            transforms=compat.resolve_callbacks(request.transforms),
        )
        rec.outputs = self.resources[response.urn].state if response.urn in self.resources else {}
        self.records.append(rec)
        return response

    def ReadResource(self, request: Any) -> Any:  # protobuf request and response messages
        self._thread_loop()
        response = super().ReadResource(request)
        self.records.append(
            _registration(
                request,
                response,
                request.properties,
                custom=True,
                id=request.id,
                read=True,
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # protobuf request and response messages
        if request.urn == self.stack_urn:
            self.stack_outputs = compat.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


class _RecordingEngine(compat.MockEngine):
    def __init__(self) -> None:
        super().__init__(logging.getLogger("klutch.mockengine"))
        self.lines: list[tuple[str, str]] = []

    def Log(self, request: Any) -> Any:  # protobuf request and response messages
        severity = compat.log_severity(request.severity)
        if severity != "debug":
            self.lines.append((severity, request.message))


def evaluate(
    program: Callable[[], Any],
    config: Mapping[str, Any],
    secret_keys: Iterable[str] = (),
    *,
    project: str,
    stack: str,
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
    resource_hook: ResourceHook | None = None,
    preview: bool = False,
    invented: Iterable[str] = (),
) -> Evaluation:
    """Run `program` under the mock engine with `config` (full keys, e.g. 'klutch-central:cluster').

    Structured values may be given as Python objects; they are passed as JSON like Pulumi does.
    `invented`: values of `stack_outputs` that are themselves made up (another evaluation's).
    Raises whatever the program raises (a ConfigError for bad config).
    """
    mocks = CuratedMocks(stack_outputs, resource_hook, invented)
    monitor = RecordingMonitor(mocks)
    engine = _RecordingEngine()
    compat.configure_mocks(monitor, engine, project=project, stack=stack, preview=preview)
    compat.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}, secret_keys)
    try:
        compat.run_program(program, monitor.close)
    finally:
        compat.set_all_config({}, [])
    return Evaluation(monitor.records, monitor.stack_outputs, engine.lines, frozenset(mocks.invented))
