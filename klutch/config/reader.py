"""Config reading machinery shared by the central and the tenant program.

Pulumi hands a program its configuration as strings (structured values as JSON). `Reader` walks
that input key by key, converts and checks each value, records every problem (key, bad value,
what is allowed) instead of stopping at the first, and reports keys nobody asked for, so a typo
is never silently ignored. `ConfigError` carries all problems at once and is a `pulumi.RunError`:
Pulumi prints its message without a stack trace.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import pulumi

from klutch.sdk import compat

T = TypeVar("T")

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)+$")


class Secret:
    """A secret config value. Its repr never shows the value; `output()` makes a Pulumi secret."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def output(self) -> pulumi.Output[str]:
        return pulumi.Output.secret(self._value)

    def __repr__(self) -> str:
        return "Secret(***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Problem:
    key: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{self.key} = {show(self.value)}: {self.allowed}"


class ConfigError(pulumi.RunError):
    """Every configuration problem of a stack, reported together."""

    def __init__(self, stack: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        n = len(problems)
        super().__init__(f"invalid configuration for stack '{stack}' ({n} problem{'s' if n != 1 else ''}):\n{lines}")


_MISSING = object()
_SENSITIVE = re.compile(r"(password|secret|username|kubeconfig|token)$", re.IGNORECASE)
# What a problem shows instead of a value that is not to be echoed (or a whole object).
_MARKERS = ("{...}", "(set)", "[not shown]", "[secret]")
_UNSET = "<unset>"
SHOW_LIMIT = 80  # characters of a value a message shows


def show(value: Any, limit: int = SHOW_LIMIT) -> str:
    """A value as every message shows it: quoted, credentials in URLs redacted, at most `limit` characters."""
    if value is _MISSING or value is None:
        return _UNSET
    if isinstance(value, Secret):
        return "[secret]"
    if isinstance(value, str) and "@" in value and "://" in value:  # a URL with user:password@ is never echoed
        scheme, _, rest = value.partition("://")
        value = f"{scheme}://[redacted]@{rest.rpartition('@')[2]}"
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = f"{text[: limit - 20]}... ({len(text)} characters)"
    return text


def read_stack_config(namespace: str) -> tuple[dict[str, str], set[str]]:
    """All config values of `namespace` (key without the namespace) and the secret keys among them.

    Reads what the Pulumi language host passed (environment) and what a test or the offline
    renderer set with `set_all_config`, without the warnings `Config.get` prints for secrets.
    """
    values = compat.config_values()
    secret = compat.config_secret_keys()
    prefix = f"{namespace}:"
    raw = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
    return raw, {k[len(prefix) :] for k in secret if k.startswith(prefix)}


def read_other_config(namespace: str) -> dict[str, Any]:
    """Every config value of the running stack outside `namespace` (full keys); a secret one as '[secret]'."""
    secret = compat.config_secret_keys()
    return {
        k: "[secret]" if k in secret else v
        for k, v in compat.config_values().items()
        if not k.startswith(f"{namespace}:")
    }


def load_stack(namespace: str, parse: Callable[..., T]) -> T:
    """`parse(raw, secret_keys, stack=…, others=…)` of this stack's config in `namespace`."""
    raw, secret_keys = read_stack_config(namespace)
    return parse(raw, secret_keys, stack=pulumi.get_stack(), others=read_other_config(namespace))


def check_namespaces(others: Mapping[str, Any], known: Sequence[str], problems: list[Problem]) -> list[str]:
    """A key in a namespace the program does not read is ignored by Pulumi: a problem when the namespace
    is close to one it reads (a typo: 'did you mean'), else a warning (returned)."""
    warnings = []
    strays: dict[str, list[str]] = {}
    for key in sorted(others):
        namespace = key.partition(":")[0]
        if namespace not in known:
            strays.setdefault(namespace, []).append(key)
    for namespace, keys in strays.items():
        close = difflib.get_close_matches(namespace, list(known), n=1, cutoff=0.8)
        if close:
            for key in keys:
                fixed = f"{close[0]}:{key.partition(':')[2]}"
                problems.append(
                    Problem(key, others[key], f"unknown config namespace {namespace!r}; did you mean {fixed!r}?")
                )
        else:
            warnings.append(
                f"config {_list(keys)} ignored: namespace {namespace!r} is not read by this program "
                f"(it reads {_list(known)})"
            )
    return warnings


def parse_top(
    namespace: str,
    raw: Mapping[str, Any],
    secret_keys: Iterable[str],
    *,
    stack: str,
    read: Callable[[TopReader, list[str]], T],
    defer: Callable[[list[Problem]], bool] | None = None,
    others: Mapping[str, Any] | None = None,
    known_namespaces: Sequence[str] = (),
) -> T:
    """The frame of every program's `parse()`: `read(top, warnings)` reads each key and builds the
    config; then unknown keys (and, given the stack's `others` keys, unknown namespaces) are reported
    and every problem is raised together in one ConfigError.

    `defer(problems)` true: the problems are not raised but returned in the result's `deferred`
    field, for a later check to raise together with its own (the tenant's central-stack check).
    """
    problems: list[Problem] = []
    warnings: list[str] = []
    top = TopReader(raw, set(secret_keys), problems, namespace)
    if others is not None:
        warnings += check_namespaces(others, (namespace, *known_namespaces), problems)
    result = read(top, warnings)
    top.finish()
    if problems:
        if defer is not None and defer(problems):
            return dataclasses.replace(result, deferred=tuple(problems))  # type: ignore[type-var]
        raise ConfigError(stack, problems)
    return result


class Reader:
    """Walks one object of config, collecting problems; unread keys are reported as unknown."""

    def __init__(
        self, data: Mapping[str, Any], path: str, problems: list[Problem], secret: bool, *, quiet: bool = False
    ) -> None:
        self._data = dict(data)
        self._path = path
        self._problems = problems
        self._secret = secret
        self._quiet = quiet  # the object itself is malformed (already reported): nothing inside is
        self._read: set[str] = set()
        self._known: set[str] = set()  # every key the parser asked about: the valid keys of this level

    # ---------------------------------------------------------------- plumbing
    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def problem(self, name: str, value: Any, allowed: str) -> None:
        # Errors reach CLI and CI logs: inside a secret config object, credential-like keys are never echoed.
        masked = (
            self._secret
            and _SENSITIVE.search(name) is not None
            and value is not _MISSING
            and value is not None
            and value not in _MARKERS
        )
        shown = "[secret]" if masked else value
        if not self._quiet:
            self._problems.append(Problem(self.key(name), shown, allowed))

    def _take(self, name: str) -> Any:
        self._read.add(name)
        self._known.add(name)
        value = self._data.get(name, _MISSING)
        return _MISSING if value is None else value

    def take(self, name: str) -> Any:
        """Mark `name` as read (it is not reported as unknown); its value, None when unset."""
        value = self._take(name)
        return None if value is _MISSING else value

    def has(self, name: str) -> bool:
        self._known.add(name)
        return self._data.get(name) is not None

    def peek(self, name: str) -> Any:
        """The raw value of `name` (a JSON text decoded), without reading it; None when unset."""
        value = self._data.get(name)
        return _json(value, value) if isinstance(value, str) else value

    @property
    def keys(self) -> list[str]:
        """The keys this object holds (set or not)."""
        return list(self._data)

    def unknown(self, name: str, also: str = "") -> str:
        """What an unknown key message says: the closest valid key, and the valid keys of this level."""
        valid = sorted(self._known)
        lower = {v.lower(): v for v in valid}
        close = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
        hint = f"did you mean {lower[close[0]]!r}? " if close else ""
        return f"unknown key; {hint}valid keys: {_list(valid)}{also}" if valid else f"unknown key{also}"

    def finish(self) -> None:
        for name in sorted(set(self._data) - self._read):
            self.problem(name, self._data[name] if not self._secret else "[secret]", self.unknown(name))

    # ---------------------------------------------------------------- typed getters
    def string(
        self,
        name: str,
        default: str | None = None,
        *,
        required: bool = False,
        choices: Iterable[str] | None = None,
        check: Callable[[str], str | None] | None = None,
    ) -> str | None:
        value = self._take(name)
        if value is _MISSING:
            if required:
                self.problem(name, value, "required" + (f"; one of {_list(choices)}" if choices else ""))
            return default
        if not isinstance(value, str):
            self.problem(name, value, "must be a string")
            return default
        if choices is not None and value not in choices:
            self.problem(name, value, f"must be one of {_list(choices)}")
            return default
        if check is not None and (why := check(value)):
            self.problem(name, value, why)
            return default
        return value

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._take(name)
        if value is _MISSING:
            return default
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(name, value, "must be a whole number")
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            self.problem(
                name,
                value,
                f"must be between {minimum} and {maximum}" if maximum is not None else f"must be at least {minimum}",
            )
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self._take(name)
        if value is _MISSING:
            return default
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            self.problem(name, value, "must be true or false")
            return default
        return value

    def strings(
        self, name: str, default: tuple[str, ...] = (), *, check: Callable[[str], str | None] | None = None
    ) -> tuple[str, ...]:
        value = self._take(name)
        if value is _MISSING:
            return default
        if isinstance(value, str):
            value = _json(value, value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(name, value, "must be a list of strings")
            return default
        good = True
        for i, item in enumerate(value):
            if check is not None and (why := check(item)):
                self.problem(f"{name}[{i}]", item, why)
                good = False
        return tuple(value) if good else default

    def mapping(self, name: str) -> dict[str, Any] | None:
        """A nested object (None when unset); problems if it is not an object."""
        value = self._take(name)
        if value is _MISSING:
            return None
        if isinstance(value, str):
            value = _json(value, value)
        if not isinstance(value, dict):
            self.problem(name, value, "must be an object")
            return None
        return value

    def child(self, name: str) -> Reader:
        data, malformed = self._object(name)
        return Reader(data, self.key(name), self._problems, self._secret, quiet=self._quiet or malformed)

    def _object(self, name: str) -> tuple[dict[str, Any], bool]:
        """(the nested object, or {}; whether it was set but is not an object — already reported)."""
        present = self.has(name)
        data = self.mapping(name)
        return data or {}, present and data is None

    def secret(
        self, name: str, *, required: bool, check: Callable[[str], str | None] | None = None, also: str = ""
    ) -> Secret | None:
        """A value that must be stored as a Pulumi secret; problems say the command that sets it
        (`also`: another way, appended)."""
        if (asked := _ASKED.get()) is not None:
            asked.append(self.key(name))
        how = secret_hint(self.key(name)) + also
        value = self._take(name)
        if value is _MISSING or value == "":
            if required:
                self.problem(name, _MISSING, f"required secret; set it with `{how}`")
            return None
        if not isinstance(value, str):
            self.problem(name, "[secret]", "must be a string")
            return None
        if not self._secret:
            self.problem(name, "[not shown]", plain_text_secret(how))
            return None
        if check is not None and (why := check(value)):
            self.problem(name, "[secret]", why)
            return None
        return Secret(value)


# The secrets a `secret_paths` run has seen the parser ask for (None: not collecting).
_ASKED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("asked_secrets", default=None)


def secret_paths(parse: Callable[..., Any], raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(top-level key, dotted path) of every secret `parse` reads from `raw` (a namespace's config, keys
    without the namespace), in the order it reads them.

    The parser reads each secret with `Reader.secret`, so it is the one statement of which keys are
    secret; this runs it and notes them. The offline tools (tests, render) fill placeholders for these
    when a committed stack file leaves them out; `pulumi up` never does.
    """
    asked: list[str] = []
    token = _ASKED.set(asked)
    try:
        parse(raw, set(raw), stack="secret-paths")
    except ConfigError:
        pass  # a config with problems still names the secrets it reads
    finally:
        _ASKED.reset(token)
    paths = dict.fromkeys(key.split(":", 1)[-1] for key in asked)
    return [(path.split(".")[0], path) for path in paths]


# Where each program's keys are documented (what an unknown-key message points at).
REFERENCE = {"klutch-central": "docs/configuration.md", "klutch-tenant": "docs/tenant.md"}


class TopReader(Reader):
    """The namespace's top level: each key may be individually secret, and objects arrive as JSON."""

    def __init__(self, raw: Mapping[str, Any], secret_keys: set[str], problems: list[Problem], namespace: str):
        super().__init__(raw, "", problems, secret=False)
        self._secret_keys = secret_keys
        self._namespace = namespace

    def key(self, name: str) -> str:
        return f"{self._namespace}:{name}"

    def problem_at(self, key: str, value: Any, allowed: str) -> None:
        """A problem of a key outside this namespace (`aws:region`), reported with this namespace's."""
        self._problems.append(Problem(key, value, allowed))

    def child(self, name: str) -> Reader:
        data, malformed = self._object(name)
        return Reader(data, self.key(name), self._problems, name in self._secret_keys, quiet=malformed)

    def secret(
        self, name: str, *, required: bool, check: Callable[[str], str | None] | None = None, also: str = ""
    ) -> Secret | None:
        was, self._secret = self._secret, name in self._secret_keys
        try:
            return super().secret(name, required=required, check=check, also=also)
        finally:
            self._secret = was

    def finish(self) -> None:
        for name in sorted(set(self._data) - self._read):
            shown = "[secret]" if name in self._secret_keys else self._data[name]
            self.problem(name, shown, self.unknown(name, f" (see {REFERENCE.get(self._namespace, 'docs/')})"))


def plain_text_secret(how: str) -> str:
    """What a problem says about a secret stored in plain text (`how`: the command that sets it)."""
    return f"is stored in plain text; set it as a secret with `{how}`"


def secret_hint(key: str) -> str:
    """The command that sets config `key` ('namespace:a.b.c') as a secret."""
    path = key.split(":", 1)[-1]
    flag = "--path " if "." in path else ""
    return f"pulumi config set --secret {flag}'{path}' <value>"


def decode_object(value: Any) -> dict[str, Any]:
    """A structured config value (an object, or JSON text of one, as the CLI passes it); {} for anything else."""
    if isinstance(value, str):
        value = _json(value, None)
    return value if isinstance(value, dict) else {}


def _json(text: str, fallback: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return fallback


def _list(choices: Iterable[str] | None) -> str:
    return ", ".join(repr(c) for c in (choices or ()))


# ------------------------------------------------------------------------------- value checks
def check_dns_label(value: str) -> str | None:
    return (
        None
        if DNS_LABEL.match(value)
        else "must be a DNS label (lowercase a-z, 0-9 and '-', at most 63, no leading or trailing '-')"
    )


def check_dns_name(value: str) -> str | None:
    return (
        None
        if DNS_NAME.match(value)
        else "must be a fully qualified DNS name you control, e.g. 'klutch.example.com' (lowercase, no scheme, no port)"
    )


def check_url(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        u = urlparse(value)
        if u.scheme not in schemes or not u.hostname:
            return f"must be an absolute {' or '.join(schemes)} URL"
        if u.username is not None or u.password is not None:
            return (
                "must not carry credentials (user:password@): they would be stored in plain text; "
                "use the username/password keys"
            )
        return None

    return check


def check_cidr(value: str) -> str | None:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        return "must be a CIDR block with no host bits set, e.g. '203.0.113.0/24'"
    if "/" not in value:
        return f"must be a CIDR block with its prefix length, e.g. '{value}/{net.max_prefixlen}' for this one address"
    return None


# Names reserved for examples and documentation (RFC 2606, RFC 6761): nothing answers there.
RESERVED_DOMAINS = ("example.com", "example.org", "example.net")
RESERVED_TLDS = ("example", "invalid")


def reserved_host(host: str | None) -> bool:
    """True for a host name reserved for examples ('idp.example.com', 'klutch.example', 'x.invalid')."""
    name = (host or "").lower().rstrip(".")
    return any(name == d or name.endswith(f".{d}") for d in RESERVED_DOMAINS) or (
        bool(name) and name.rsplit(".", 1)[-1] in RESERVED_TLDS
    )


def reserved_host_warning(key: str, value: str) -> str | None:
    """The warning for a config value (a host or URL) that names a reserved example host, else None."""
    host = urlparse(value).hostname if "://" in value else value
    if not reserved_host(host):
        return None
    return (
        f"{key} = {show(value)} names the reserved example host {host!r}, where nothing answers: "
        f"set your own (`pulumi config set --path {key.split(':', 1)[-1]} <value>`) before `pulumi up`"
    )


def check_kubeconfig(text: str, *, need_ca: bool = False) -> str | None:
    from .kubeconfig import KubeconfigError, parse_kubeconfig  # PyYAML: only where a kubeconfig is checked

    try:
        facts = parse_kubeconfig(text)
    except KubeconfigError as e:
        return f"is not a usable kubeconfig: {e}"
    if need_ca and not facts.ca_pem:
        return (
            "is not a usable kubeconfig: its cluster must embed certificate-authority-data (the CA tenants are given)"
        )
    return None


def check_email(value: str) -> str | None:
    return None if re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", value, re.IGNORECASE) else "must be an e-mail address"
