"""TEST DOUBLE: stand-in `random` and `tls` Pulumi resource provider plugins, used by the e2e tests and the sandbox.

Why: the real pulumi-random and pulumi-tls plugins cannot be built on the test machine (their Go modules
are not served by the offline Go module proxy and there is no other network), yet the program creates
resources of both packages. These stand-ins speak the engine's `pulumirpc.ResourceProvider` gRPC protocol
(stubs from the Pulumi Python SDK) and implement exactly the resources and fields the program uses; keys
and certificates are real, made by the `openssl` CLI. They are written only into the e2e's and the sandbox's own plugin
directories; a real deployment uses the real plugins.

Supported (any other resource type is rejected by Check):

- `random:index/randomBytes:RandomBytes` (reported version 4.21.4)
  inputs: `length` (required, >= 1), `keepers` (optional map);
  outputs: `base64` and `hex` (secret), `length`, `keepers` (when given); id `none`.
  A change of `length` or `keepers` replaces the resource.
- `tls:index/privateKey:PrivateKey` (reported version 5.6.2)
  inputs: `algorithm` (only "ECDSA"; RSA and ED25519 fail Check), `ecdsaCurve` (P224 - the real provider's
  default, applied by Check -, P256 - the program's -, P384, P521), `rsaBits` (defaulted to 2048, unused);
  outputs: `privateKeyPem` (SEC1 "EC PRIVATE KEY", secret), `privateKeyPemPkcs8` (secret), `publicKeyPem`,
  `publicKeyOpenssh`, `publicKeyFingerprintMd5`, `publicKeyFingerprintSha256` (empty for P224, which
  OpenSSH lacks), the inputs; id: SHA-1 of the public key PEM. NOT produced: `privateKeyOpenssh`.
  Any input change replaces the resource.
- `tls:index/selfSignedCert:SelfSignedCert` (reported version 5.6.2)
  inputs: `privateKeyPem` (required; an ECDSA key), `validityPeriodHours` (required), `allowedUses`
  (required; key usages and extended key usages as the real provider names them), `subject` (commonName,
  organization, organizationalUnit, streetAddresses, locality, province, country, postalCode,
  serialNumber), `isCaCertificate`, `earlyRenewalHours`, `dnsNames`, `ipAddresses`, `uris`,
  `setSubjectKeyId`, `setAuthorityKeyId`;
  outputs: `certPem`, the inputs, `validityStartTime`, `validityEndTime` (RFC 3339, exact to the hour
  count), `readyForRenewal` (recomputed on refresh: now >= end - earlyRenewalHours; a true value makes the
  next Diff a replacement); id: the certificate's decimal serial number.
  A change of `earlyRenewalHours` is an in-place update; any other input change replaces the resource.

Protocol notes: the plugin accepts secrets (`acceptSecrets`, so secret inputs arrive wrapped and
secret outputs are returned wrapped, together with every output whose input was secret), supports previews
(Create/Update with `preview` return the inputs plus unknown computed outputs), does not accept output
values (`acceptOutputs` false; they are unwrapped anyway if they arrive), keeps no state of its own
(Read returns the stored state), and exits when its parent process (the engine) goes away.

Use `write_plugins(bin_dir)` to write the `pulumi-resource-random` and `pulumi-resource-tls` executables,
then put `bin_dir` on the engine's PATH (with automatic plugin acquisition disabled).
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]  # the repository root: `klutch.sandbox.standins` is importable from it
VERSIONS = {"random": "4.21.4", "tls": "5.6.2"}
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's marker for a value not known yet
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"

RANDOM_BYTES = "random:index/randomBytes:RandomBytes"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"

CURVES = {  # ecdsaCurve -> (OpenSSL curve name, digest, OpenSSH curve identifier or None)
    "P224": ("P-224", "sha256", None),
    "P256": ("P-256", "sha256", "nistp256"),
    "P384": ("P-384", "sha384", "nistp384"),
    "P521": ("P-521", "sha512", "nistp521"),
}
KEY_USAGES = {  # allowedUses -> OpenSSL keyUsage
    "digital_signature": "digitalSignature",
    "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment",
    "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement",
    "cert_signing": "keyCertSign",
    "crl_signing": "cRLSign",
    "encipher_only": "encipherOnly",
    "decipher_only": "decipherOnly",
}
EXT_KEY_USAGES = {  # allowedUses -> OpenSSL extendedKeyUsage
    "any_extended": "anyExtendedKeyUsage",
    "server_auth": "serverAuth",
    "client_auth": "clientAuth",
    "code_signing": "codeSigning",
    "email_protection": "emailProtection",
    "ipsec_end_system": "ipsecEndSystem",
    "ipsec_tunnel": "ipsecTunnel",
    "ipsec_user": "ipsecUser",
    "timestamping": "timeStamping",
    "ocsp_signing": "OCSPSigning",
    "microsoft_server_gated_crypto": "msSGC",
    "netscape_server_gated_crypto": "nsSGC",
    "microsoft_commercial_code_signing": "msCodeCom",
    "microsoft_kernel_code_signing": "1.3.6.1.4.1.311.61.1.1",
}
SUBJECT_FIELDS = (  # subject input -> OpenSSL short name (Go's order)
    ("country", "C"),
    ("organization", "O"),
    ("organizationalUnit", "OU"),
    ("locality", "L"),
    ("province", "ST"),
    ("streetAddresses", "street"),
    ("postalCode", "postalCode"),
    ("serialNumber", "serialNumber"),
    ("commonName", "CN"),
)


class Refusal(Exception):
    """A request the stand-in does not serve: answered with gRPC status `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InputError(Exception):
    """An input the stand-in cannot use: reported as a Check failure."""

    def __init__(self, prop: str, reason: str) -> None:
        super().__init__(f"{prop}: {reason}")
        self.prop = prop
        self.reason = reason


# --- property values ------------------------------------------------------------------------------------


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def secret(value: Any) -> dict[str, Any]:
    return value if is_secret(value) else {SIG_KEY: SECRET_SIG, "value": value}


def reveal(value: Any) -> tuple[Any, bool]:
    """The plain value (secrets and output values unwrapped, at any depth) and whether any part was secret;
    an output value without a value becomes UNKNOWN."""
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            inner, _ = reveal(value.get("value"))
            return inner, True
        if sig == OUTPUT_SIG:
            inner, hidden = reveal(value["value"]) if "value" in value else (UNKNOWN, False)
            return inner, hidden or bool(value.get("secret"))
        out, hidden = {}, False
        for k, v in value.items():
            out[k], h = reveal(v)
            hidden = hidden or h
        return out, hidden
    if isinstance(value, list):
        items = [reveal(v) for v in value]
        return [v for v, _ in items], any(h for _, h in items)
    return value, False


def reveal_all(props: dict[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Plain top-level properties and the names of those that were (partly) secret."""
    plain, secrets = {}, set()
    for k, v in props.items():
        plain[k], hidden = reveal(v)
        if hidden:
            secrets.add(k)
    return plain, secrets


def has_unknown(value: Any) -> bool:
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return value == UNKNOWN


def normalise(value: Any) -> Any:
    """Struct numbers are doubles: compare 32 and 32.0 as equal, and drop nulls inside maps."""
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# --- openssl --------------------------------------------------------------------------------------------


def openssl(*args: str, stdin: bytes | None = None, cwd: str | None = None) -> bytes:
    proc = subprocess.run(["openssl", *args], input=stdin, capture_output=True, cwd=cwd, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def ec_key(curve: str) -> dict[str, str]:
    """A new ECDSA key pair and the derived encodings the tls provider outputs."""
    name, _, ssh_curve = CURVES[curve]
    pkcs8 = openssl("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{name}",
                    "-pkeyopt", "ec_param_enc:named_curve")  # fmt: skip
    sec1 = openssl("ec", "-outform", "PEM", stdin=pkcs8)
    public_pem = openssl("pkey", "-pubout", stdin=pkcs8)
    out = {
        "privateKeyPem": sec1.decode(),
        "privateKeyPemPkcs8": pkcs8.decode(),
        "publicKeyPem": public_pem.decode(),
        "publicKeyOpenssh": "",
        "publicKeyFingerprintMd5": "",
        "publicKeyFingerprintSha256": "",
    }
    if ssh_curve is not None:
        der = openssl("pkey", "-pubin", "-outform", "DER", stdin=public_pem)
        size = (int(name[2:]) + 7) // 8
        point = der[-(1 + 2 * size) :]  # the uncompressed point ends the SubjectPublicKeyInfo
        kind = f"ecdsa-sha2-{ssh_curve}".encode()
        blob = ssh_string(kind) + ssh_string(ssh_curve.encode()) + ssh_string(point)
        out["publicKeyOpenssh"] = f"{kind.decode()} {base64.b64encode(blob).decode()}\n"
        out["publicKeyFingerprintMd5"] = ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())
        sha256 = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        out["publicKeyFingerprintSha256"] = f"SHA256:{sha256}"
    return out


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def dn_escape(value: str) -> str:
    return "".join("\\" + c if c in "\\/+=" else c for c in value)


def subject_arg(subject: dict[str, Any]) -> str:
    parts = []
    for field, short in SUBJECT_FIELDS:
        value = subject.get(field)
        for v in value if isinstance(value, list) else [value]:
            if v:
                parts.append(f"/{short}={dn_escape(str(v))}")
    return "".join(parts) or "/"


def self_signed_cert(inputs: dict[str, Any], now: datetime) -> dict[str, str]:
    """A certificate for `inputs` (SelfSignedCert's), signed by its own key, valid from `now`."""
    key_pem = inputs["privateKeyPem"]
    hours = int(inputs["validityPeriodHours"])
    start = now.replace(microsecond=0)
    end = start + timedelta(hours=hours)
    text = openssl("pkey", "-noout", "-text", stdin=key_pem.encode()).decode()
    digest = next((d for c, (n, d, _) in CURVES.items() if n in text or f"NIST CURVE: {n}" in text), "sha256")
    uses = list(inputs.get("allowedUses") or [])
    unknown = [u for u in uses if u not in KEY_USAGES and u not in EXT_KEY_USAGES]
    if unknown:
        raise InputError("allowedUses", f"unsupported by the stand-in: {unknown}")
    ext = [f"basicConstraints = critical,CA:{'TRUE' if inputs.get('isCaCertificate') else 'FALSE'}"]
    if key_usage := [KEY_USAGES[u] for u in uses if u in KEY_USAGES]:
        ext.append("keyUsage = critical," + ",".join(key_usage))
    if ext_usage := [EXT_KEY_USAGES[u] for u in uses if u in EXT_KEY_USAGES]:
        ext.append("extendedKeyUsage = " + ",".join(ext_usage))
    sans = [f"DNS:{n}" for n in inputs.get("dnsNames") or []]
    sans += [f"IP:{n}" for n in inputs.get("ipAddresses") or []]
    sans += [f"URI:{n}" for n in inputs.get("uris") or []]
    if sans:
        ext.append("subjectAltName = " + ",".join(sans))
    if inputs.get("setSubjectKeyId") or inputs.get("isCaCertificate"):  # Go adds it to CA certificates
        ext.append("subjectKeyIdentifier = hash")
    if inputs.get("setAuthorityKeyId"):
        ext.append("authorityKeyIdentifier = keyid:always")
    with tempfile.TemporaryDirectory(prefix="standin-tls-") as tmp:
        d = Path(tmp)
        (d / "key.pem").write_text(key_pem)
        (d / "index.txt").write_text("")
        serial = int.from_bytes(os.urandom(16), "big") >> 1 or 1  # positive, at most 127 bits like Go's
        (d / "serial").write_text(f"{serial:032X}\n")
        (d / "ext.cnf").write_text("[ext]\n" + "\n".join(ext) + "\n")
        policy = "\n".join(f"{short} = optional" for _, short in SUBJECT_FIELDS)
        (d / "ca.cnf").write_text(
            f"[ca]\ndefault_ca = standin\n[standin]\ndir = {d}\ndatabase = $dir/index.txt\n"
            f"serial = $dir/serial\nnew_certs_dir = $dir\ndefault_md = {digest}\npolicy = policy\n"
            f"unique_subject = no\ncopy_extensions = none\nemail_in_dn = no\n[policy]\n{policy}\n"
            "[req]\ndistinguished_name = dn\n[dn]\n"
        )
        subject = subject_arg(inputs.get("subject") or {})
        openssl("req", "-new", "-utf8", "-config", "ca.cnf", "-key", "key.pem", "-subj", subject,
                "-out", "req.csr", cwd=tmp)  # fmt: skip
        openssl("ca", "-batch", "-selfsign", "-notext", "-utf8", "-preserveDN", "-config", "ca.cnf",
                "-keyfile", "key.pem", "-in", "req.csr", "-out", "cert.pem", "-md", digest,
                "-startdate", start.strftime("%Y%m%d%H%M%SZ"), "-enddate", end.strftime("%Y%m%d%H%M%SZ"),
                "-extfile", "ext.cnf", "-extensions", "ext", cwd=tmp)  # fmt: skip
        cert_pem = openssl("x509", "-in", "cert.pem", cwd=tmp).decode()  # the PEM alone
    return {
        "certPem": cert_pem,
        "validityStartTime": rfc3339(start),
        "validityEndTime": rfc3339(end),
        "id": str(serial),
    }


def ready_for_renewal(state: dict[str, Any], now: datetime) -> bool:
    end = state.get("validityEndTime")
    if not isinstance(end, str) or not end or end == UNKNOWN:
        return False
    early = int(state.get("earlyRenewalHours") or 0)
    return now >= datetime.strptime(end, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) - timedelta(hours=early)


# --- the resources --------------------------------------------------------------------------------------


class Kind:
    """One resource type: its defaults, validation, computed outputs and how inputs change it."""

    token: str
    defaults: dict[str, Any] = {}
    required: tuple[str, ...] = ()
    computed: tuple[str, ...] = ()  # outputs the provider makes (unknown in previews)
    secret_outputs: frozenset[str] = frozenset()
    update_in_place: frozenset[str] = frozenset()  # every other input change is a replacement

    def validate(self, inputs: dict[str, Any]) -> None:
        for name in self.required:
            if inputs.get(name) is None:
                raise InputError(name, "required")

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError


class RandomBytes(Kind):
    token = RANDOM_BYTES
    required = ("length",)
    computed = ("base64", "hex")
    secret_outputs = frozenset({"base64", "hex"})

    def validate(self, inputs: dict[str, Any]) -> None:
        super().validate(inputs)
        length = inputs["length"]
        if length != UNKNOWN and (not isinstance(length, int | float) or int(length) != length or length < 1):
            raise InputError("length", "must be a whole number >= 1")

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data = openssl("rand", str(int(inputs["length"])))
        return "none", {"base64": base64.b64encode(data).decode(), "hex": data.hex()}


class PrivateKey(Kind):
    token = PRIVATE_KEY
    defaults = {"ecdsaCurve": "P224", "rsaBits": 2048}  # the real provider's defaults
    required = ("algorithm",)
    computed = ("privateKeyPem", "privateKeyPemPkcs8", "publicKeyPem", "publicKeyOpenssh",
                "publicKeyFingerprintMd5", "publicKeyFingerprintSha256")  # fmt: skip
    secret_outputs = frozenset({"privateKeyPem", "privateKeyPemPkcs8", "privateKeyOpenssh"})

    def validate(self, inputs: dict[str, Any]) -> None:
        super().validate(inputs)
        if inputs["algorithm"] not in ("ECDSA", UNKNOWN):
            raise InputError("algorithm", "the stand-in supports only ECDSA")
        if inputs["ecdsaCurve"] not in (*CURVES, UNKNOWN):
            raise InputError("ecdsaCurve", f"must be one of {sorted(CURVES)}")

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        outs = ec_key(inputs["ecdsaCurve"])
        return hashlib.sha1(outs["publicKeyPem"].encode()).hexdigest(), outs


class SelfSignedCert(Kind):
    token = SELF_SIGNED_CERT
    defaults = {"earlyRenewalHours": 0, "isCaCertificate": False, "setSubjectKeyId": False,
                "setAuthorityKeyId": False}  # fmt: skip
    required = ("privateKeyPem", "validityPeriodHours", "allowedUses")
    computed = ("certPem", "validityStartTime", "validityEndTime")
    update_in_place = frozenset({"earlyRenewalHours"})

    def validate(self, inputs: dict[str, Any]) -> None:
        super().validate(inputs)
        uses = inputs["allowedUses"]
        if isinstance(uses, list):
            bad = [u for u in uses if u != UNKNOWN and u not in KEY_USAGES and u not in EXT_KEY_USAGES]
            if bad:
                raise InputError("allowedUses", f"unknown uses {bad}")

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        outs = self_signed_cert(inputs, datetime.now(UTC))
        return outs.pop("id"), {**outs, "readyForRenewal": False}


KINDS: dict[str, dict[str, Kind]] = {
    "random": {RANDOM_BYTES: RandomBytes()},
    "tls": {PRIVATE_KEY: PrivateKey(), SELF_SIGNED_CERT: SelfSignedCert()},
}


# --- the gRPC service -----------------------------------------------------------------------------------


class StandInProvider(provider_pb2_grpc.ResourceProviderServicer):
    """The `pulumirpc.ResourceProvider` service of the stand-in `package` ("random" or "tls")."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.kinds = KINDS[package]
        self.version = VERSIONS[package]

    @staticmethod
    def to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
        return json_format.MessageToDict(struct)

    @staticmethod
    def to_struct(props: dict[str, Any]) -> struct_pb2.Struct:
        s = struct_pb2.Struct()
        s.update(props)
        return s

    def outputs(self, kind: Kind, plain: dict[str, Any], secret_inputs: set[str]) -> struct_pb2.Struct:
        wrapped = {
            k: secret(v) if (k in kind.secret_outputs or k in secret_inputs) and v != UNKNOWN else v
            for k, v in plain.items()
            if v is not None
        }
        return self.to_struct(wrapped)

    def kind_of(self, type_token: str, urn: str) -> Kind:
        token = type_token or urn.split("::")[2].split("$")[-1]
        kind = self.kinds.get(token)
        if kind is None:
            raise Refusal("INVALID_ARGUMENT", f"unsupported resource type {token}")
        return kind

    def guarded(method: Callable[..., Any]) -> Callable[..., Any]:  # a decorator of the methods below
        def call(self: StandInProvider, request: Any, context: Any) -> Any:
            try:
                return method(self, request, context)
            except Refusal as e:
                code, message = getattr(grpc.StatusCode, e.code), str(e)
            except Exception as e:
                traceback.print_exc(file=sys.stderr)
                code, message = grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}"
            context.abort(code, f"stand-in {self.package} provider: {message}")

        call.__name__ = method.__name__
        return call

    @guarded
    def Handshake(self, request: Any, context: Any) -> Any:
        return provider_pb2.ProviderHandshakeResponse(accept_secrets=True, accept_resources=True, accept_outputs=False)

    @guarded
    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return plugin_pb2.PluginInfo(version=self.version)

    @guarded
    def GetSchema(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetSchemaResponse(schema="{}")

    @guarded
    def CheckConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.CheckResponse(inputs=request.news)

    @guarded
    def DiffConfig(self, request: Any, context: Any) -> Any:
        return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

    @guarded
    def Configure(self, request: Any, context: Any) -> Any:
        return provider_pb2.ConfigureResponse(
            acceptSecrets=True, supportsPreview=True, acceptResources=True, acceptOutputs=False
        )

    @guarded
    def Check(self, request: Any, context: Any) -> Any:
        kind = self.kind_of(request.type, request.urn)
        news = self.to_dict(request.news)
        for k, v in kind.defaults.items():
            news.setdefault(k, v)
        plain, _ = reveal_all(news)
        try:
            kind.validate(plain)
        except InputError as e:
            failure = provider_pb2.CheckFailure(property=e.prop, reason=e.reason)
            return provider_pb2.CheckResponse(inputs=self.to_struct(news), failures=[failure])
        return provider_pb2.CheckResponse(inputs=self.to_struct(news))

    @guarded
    def Diff(self, request: Any, context: Any) -> Any:
        kind = self.kind_of(request.type, request.urn)
        news, _ = reveal_all(self.to_dict(request.news))
        olds, _ = reveal_all(self.to_dict(request.olds))
        old_inputs, _ = reveal_all(self.to_dict(request.old_inputs))
        if not old_inputs:  # an engine that does not send them: the state holds the inputs too
            old_inputs = {k: v for k, v in olds.items() if k not in kind.computed}
        ignored = set(request.ignoreChanges)
        diffs, replaces, detailed = [], [], {}
        Kind_ = provider_pb2.PropertyDiff
        for key in sorted(set(news) | set(old_inputs)):
            if key in ignored or key == "__defaults":
                continue
            new, old = news.get(key), old_inputs.get(key)
            if not has_unknown(new) and normalise(new) == normalise(old):
                continue
            replace = key not in kind.update_in_place
            diffs.append(key)
            if replace:
                replaces.append(key)
            if key not in old_inputs:
                change = Kind_.ADD_REPLACE if replace else Kind_.ADD
            elif key not in news:
                change = Kind_.DELETE_REPLACE if replace else Kind_.DELETE
            else:
                change = Kind_.UPDATE_REPLACE if replace else Kind_.UPDATE
            detailed[key] = Kind_(kind=change, inputDiff=True)
        if olds.get("readyForRenewal") is True:  # the certificate is due: replace it, like the real one
            diffs.append("readyForRenewal")
            replaces.append("readyForRenewal")
            detailed["readyForRenewal"] = Kind_(kind=Kind_.UPDATE_REPLACE)
        return provider_pb2.DiffResponse(
            changes=provider_pb2.DiffResponse.DIFF_SOME if diffs else provider_pb2.DiffResponse.DIFF_NONE,
            diffs=diffs,
            replaces=replaces,
            detailedDiff=detailed,
            hasDetailedDiff=True,
            deleteBeforeReplace=False,
        )

    @guarded
    def Create(self, request: Any, context: Any) -> Any:
        kind = self.kind_of(request.type, request.urn)
        plain, secret_inputs = reveal_all(self.to_dict(request.properties))
        if request.preview or has_unknown(plain):
            if not request.preview:
                raise RuntimeError(f"unknown inputs outside a preview: {sorted(plain)}")
            props = {**plain, **{k: UNKNOWN for k in kind.computed}}
            if kind is self.kinds.get(SELF_SIGNED_CERT):
                props["readyForRenewal"] = False
            return provider_pb2.CreateResponse(id="", properties=self.outputs(kind, props, secret_inputs))
        kind.validate(plain)
        resource_id, computed = kind.create(plain)
        return provider_pb2.CreateResponse(
            id=resource_id, properties=self.outputs(kind, {**plain, **computed}, secret_inputs)
        )

    @guarded
    def Read(self, request: Any, context: Any) -> Any:
        kind = self.kind_of(request.type, request.urn)
        props = self.to_dict(request.properties)
        if not props:
            raise Refusal("UNIMPLEMENTED", "cannot read a resource without state (import)")
        if kind is self.kinds.get(SELF_SIGNED_CERT):
            plain, _ = reveal_all(props)
            props["readyForRenewal"] = ready_for_renewal(plain, datetime.now(UTC))
        return provider_pb2.ReadResponse(id=request.id, properties=self.to_struct(props), inputs=request.inputs)

    @guarded
    def Update(self, request: Any, context: Any) -> Any:
        kind = self.kind_of(request.type, request.urn)
        olds, secret_olds = reveal_all(self.to_dict(request.olds))
        news, secret_news = reveal_all(self.to_dict(request.news))
        props = {k: v for k, v in olds.items() if k in kind.computed or k == "readyForRenewal"}
        props.update(news)
        return provider_pb2.UpdateResponse(
            properties=self.outputs(kind, props, secret_news | (secret_olds & set(kind.computed)))
        )

    @guarded
    def Delete(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()  # nothing exists outside the state

    @guarded
    def Cancel(self, request: Any, context: Any) -> Any:
        return empty_pb2.Empty()

    @guarded
    def GetMapping(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetMappingResponse(provider="", data=b"")

    @guarded
    def GetMappings(self, request: Any, context: Any) -> Any:
        return provider_pb2.GetMappingsResponse(providers=[])

    del guarded


def main(package: str, argv: list[str]) -> int:
    """Serve the stand-in provider `package` ("random" or "tls") until the engine that started it is gone."""
    if package not in KINDS:
        print(f"unknown stand-in package {package!r}", file=sys.stderr)
        return 2
    parent = os.getppid()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(StandInProvider(package), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if os.getppid() != parent:  # the engine exited: re-parented to init / a subreaper
            break
    server.stop(grace=None)
    return 0


SCRIPT = """#!{python}
# Test double written by klutch/sandbox/standins/provider.py (write_plugins): the stand-in {package} provider.
import sys

sys.path.insert(0, {root!r})
from klutch.sandbox.standins.provider import main

sys.exit(main({package!r}, sys.argv[1:]))
"""


def write_plugins(bin_dir: Path) -> None:
    """Write the executables `pulumi-resource-random` and `pulumi-resource-tls` into `bin_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for package in KINDS:
        path = bin_dir / f"pulumi-resource-{package}"
        path.write_text(SCRIPT.format(python=sys.executable, package=package, root=str(ROOT)))
        path.chmod(0o755)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]))
