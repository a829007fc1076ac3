"""The tenant stack's configuration and the central stack's outputs it is checked against."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from klutch import catalog
from klutch.config import tenant as tenant_config
from klutch.config.reader import ConfigError
from klutch.config.tenant import Api
from klutch.offline.curated import PLACEHOLDER_CA_PEM, mock_kubeconfig
from klutch.tenant import bindclient

NS = tenant_config.NAMESPACE
CENTRAL_STACK = "my-org/klutch-central/dev"
CLIENT_SECRET = "tenant-client-secret-5b1e"
TENANT_KUBECONFIG = mock_kubeconfig("https://tenant.example.com:6443", "tenant", token="tenant-admin-token-42aa")
SECRET_KEYS = ("oidc", "kubeconfig")
EXPORTED = ("postgresqlinstances", "mariadbinstances", "servicebindings", "backups", "restores")


def base_raw() -> dict[str, Any]:
    """A small valid tenant configuration (keys without namespace, structured values as objects)."""
    return {
        "centralStack": CENTRAL_STACK,
        "clusterId": "acme-dev",
        "oidc": {
            "tokenUrl": "https://idp.example.com/realms/klutch/protocol/openid-connect/token",
            "clientId": "acme-binder",
            "clientSecret": CLIENT_SECRET,
        },
        "kubeconfig": TENANT_KUBECONFIG,
    }


def central_outputs(**overrides: Any) -> dict[str, Any]:
    """The central stack's outputs as the central program exports them."""
    outputs = {
        "exportUrl": "https://klutch.example.com/export",
        "bindNonInteractiveUrl": "https://klutch.example.com/bind-noninteractive",
        "konnectorImage": catalog.RELEASES["v1.0.0"].konnector_image,
        "bindingApis": [{"group": "anynines.com", "resource": r} for r in EXPORTED],
        "kubeBindCrdUrls": list(catalog.RELEASES["v1.0.0"].kube_bind_crd_urls),
        "kubectlBindCommand": "kubectl bind https://klutch.example.com/export "
        f"--konnector-image={catalog.RELEASES['v1.0.0'].konnector_image}",
        "kubeconfig": "the central admin kubeconfig (a secret the tenant never reads)",
    }
    outputs.update(overrides)
    return {k: v for k, v in outputs.items() if v is not None}


def parse(
    overrides: dict[str, Any] | None = None, *, drop: tuple[str, ...] = (), secret_keys: tuple[str, ...] = SECRET_KEYS
) -> tenant_config.TenantConfig:
    raw = copy.deepcopy(base_raw())
    for k, v in (overrides or {}).items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
            raw[k] = {kk: vv for kk, vv in raw[k].items() if vv is not None}
        else:
            raw[k] = v
    for k in drop:
        raw.pop(k)
    return tenant_config.parse(raw, set(secret_keys), stack="acme-dev")


def problems(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


# ------------------------------------------------------------------------------- valid input
def test_minimal_config_parses_with_defaults():
    cfg = parse()
    assert cfg.central_stack == CENTRAL_STACK and cfg.cluster_id == "acme-dev"
    assert cfg.apis == () and cfg.namespaces == () and cfg.konnector_image is None
    assert cfg.release is catalog.RELEASES[catalog.DEFAULT_RELEASE] and cfg.protect is False
    assert cfg.oidc.client_secret.reveal() == CLIENT_SECRET and cfg.oidc.scope is None
    assert cfg.cluster.kubeconfig.reveal() == TENANT_KUBECONFIG and cfg.cluster.eks_cluster_name is None
    assert CLIENT_SECRET not in repr(cfg) and "tenant-admin-token" not in repr(cfg)


def test_apis_accept_qualified_bare_and_object_forms():
    cfg = parse(
        {"apis": ["postgresqlinstances.anynines.com", "backups", {"group": "anynines.com", "resource": "restores"}]}
    )
    assert [(s.resource, s.group) for s in cfg.apis] == [
        ("postgresqlinstances", "anynines.com"),
        ("backups", None),
        ("restores", "anynines.com"),
    ]


def test_structured_values_arrive_as_json_strings_like_the_cli_passes_them():
    raw = {
        **base_raw(),
        "oidc": '{"tokenUrl": "https://idp.example.com/t", "clientId": "c", "clientSecret": "s"}',
        "namespaces": '["apps", "web"]',
        "apis": '["backups.anynines.com"]',
        "protect": "true",
    }
    cfg = tenant_config.parse(raw, set(SECRET_KEYS), stack="s")
    assert cfg.namespaces == ("apps", "web") and cfg.protect is True and cfg.oidc.client_id == "c"
    assert [(a.resource, a.group) for a in cfg.apis] == [("backups", "anynines.com")]


def test_eks_tenant_cluster_needs_no_kubeconfig():
    cfg = parse({"eksClusterName": "acme-dev-eks"}, drop=("kubeconfig",))
    assert cfg.cluster.eks_cluster_name == "acme-dev-eks" and cfg.cluster.kubeconfig is None


def test_secret_paths_name_the_client_secret_and_the_kubeconfig_unless_eks():
    assert tenant_config.secret_paths(base_raw()) == [("oidc", "oidc.clientSecret"), ("kubeconfig", "kubeconfig")]
    assert tenant_config.secret_paths({"eksClusterName": "x"}) == [("oidc", "oidc.clientSecret")]


# ------------------------------------------------------------------------------- bad input
def test_bad_cluster_id_names_key_value_and_rule():
    with pytest.raises(ConfigError) as e:
        parse({"clusterId": "Acme_Dev"})
    assert problems(e) == [
        f"{NS}:clusterId = 'Acme_Dev': must be a DNS label (lowercase a-z, 0-9 and '-', "
        "at most 63, no leading or trailing '-')"
    ]


def test_missing_client_secret_says_how_to_set_it():
    with pytest.raises(ConfigError) as e:
        parse({"oidc": {"clientSecret": None}})
    assert problems(e) == [
        f"{NS}:oidc.clientSecret = <unset>: required secret; set it with "
        "`pulumi config set --secret --path 'oidc.clientSecret' <value>`"
    ]


def test_client_secret_in_plain_text_is_refused():
    with pytest.raises(ConfigError) as e:
        parse(secret_keys=("kubeconfig",))
    assert problems(e) == [
        f"{NS}:oidc.clientSecret = '[not shown]': is stored in plain text; set it as a secret "
        "with `pulumi config set --secret --path 'oidc.clientSecret' <value>`"
    ]
    assert CLIENT_SECRET not in str(e.value)


def test_every_problem_is_reported_together():
    with pytest.raises(ConfigError) as e:
        parse(
            {
                "centralStack": "klutch-central/dev",
                "clusterId": "-x",
                "oidc": {"tokenUrl": "http://idp/token", "clientId": None, "clientSecret": None},
                "namespaces": ["Apps", "ok"],
                "konnectorImage": "Bad Image",
                "apis": ["postgresqlinstances.anynines.com", "Not An Api"],
                "colour": "blue",
            }
        )
    got = problems(e)
    assert got == [
        f"{NS}:centralStack = 'klutch-central/dev': must be the central stack's fully qualified name "
        "'<organization>/<project>/<stack>', e.g. 'my-org/klutch-central/prod' (self-managed backends: "
        "'organization/klutch-central/prod')",
        f"{NS}:clusterId = '-x': must be a DNS label (lowercase a-z, 0-9 and '-', at most 63, "
        "no leading or trailing '-')",
        f"{NS}:apis[1] = 'Not An Api': must be '<resource>.<group>' (e.g. 'postgresqlinstances.anynines.com'), "
        "a bare '<resource>', or {group, resource}",
        f"{NS}:oidc.tokenUrl = 'http://idp/token': must be an absolute https URL",
        f"{NS}:oidc.clientId = <unset>: required",
        f"{NS}:oidc.clientSecret = <unset>: required secret; set it with "
        "`pulumi config set --secret --path 'oidc.clientSecret' <value>`",
        f"{NS}:konnectorImage = 'Bad Image': must be a container image reference, e.g. "
        "'registry.example.com/konnector:v1.3.0'",
        f"{NS}:namespaces[0] = 'Apps': must be a DNS label (lowercase a-z, 0-9 and '-', at most 63, no leading or "
        "trailing '-')",
        f"{NS}:colour = 'blue': unknown key; valid keys: 'apis', 'centralStack', 'clusterId', 'eksClusterName', "
        "'klutchRelease', 'konnectorImage', 'kubeconfig', 'namespaces', 'oidc', 'protect' (see "
        "docs/tenant.md)",
    ]
    assert str(e.value).startswith("invalid configuration for stack 'acme-dev' (9 problems):")


def test_required_keys_are_named_when_missing():
    with pytest.raises(ConfigError) as e:
        tenant_config.parse({}, set(), stack="s")
    assert problems(e) == [
        f"{NS}:centralStack = <unset>: required",
        f"{NS}:clusterId = <unset>: required",
        f"{NS}:oidc.tokenUrl = <unset>: required",
        f"{NS}:oidc.clientId = <unset>: required",
        f"{NS}:oidc.clientSecret = <unset>: required secret; set it with "
        "`pulumi config set --secret --path 'oidc.clientSecret' <value>`",
    ]


def test_without_a_tenant_cluster_only_the_binding_is_prepared_and_a_warning_says_so():
    cfg = parse(drop=("kubeconfig",))
    assert not cfg.cluster.configured
    assert cfg.warnings == (
        "no tenant cluster configured (kubeconfig or eksClusterName): only the binding and its central side are "
        "created — use the providerKubeconfig output to prepare instances before the tenant cluster exists, then "
        "set the cluster (`pulumi config set --secret 'kubeconfig' <value> (or: cat tenant.kubeconfig | pulumi "
        "config set --secret kubeconfig)`) and run `pulumi up` again to install the konnector",
    )
    assert parse().warnings == () and parse().cluster.configured


def test_kubeconfig_and_eks_name_are_exclusive():
    with pytest.raises(ConfigError) as e:
        parse({"eksClusterName": "acme"})
    assert problems(e) == [f"{NS}:kubeconfig = '[secret]': set either kubeconfig or eksClusterName, not both"]


def test_unusable_kubeconfig_is_reported_without_its_content():
    with pytest.raises(ConfigError) as e:
        parse({"kubeconfig": "apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: leaked-token}}]\n"})
    assert problems(e) == [
        f"{NS}:kubeconfig = '[secret]': is not a usable kubeconfig: no current-context naming one of its contexts"
    ]
    assert "leaked-token" not in str(e.value)


@pytest.mark.parametrize(
    ("apis", "expected"),
    [
        ([], f"{NS}:apis = []: must be a non-empty list"),
        ("postgresqlinstances", f"{NS}:apis = 'postgresqlinstances': must be a non-empty list"),
        (["backups", "backups"], f'{NS}:apis = ["backups", "backups"]: must not list an API twice'),
        ([{"resource": "backups", "kind": "x"}], f'{NS}:apis[0] = {{"resource": "backups", "kind": "x"}}: must be'),
    ],
)
def test_malformed_apis(apis, expected):
    with pytest.raises(ConfigError) as e:
        parse({"apis": apis})
    assert len(problems(e)) == 1 and problems(e)[0].startswith(expected)


def test_duplicate_namespaces_and_unknown_release():
    with pytest.raises(ConfigError) as e:
        parse({"namespaces": ["apps", "apps"], "klutchRelease": "v9.9.9"})
    assert problems(e) == [
        f'{NS}:namespaces = ["apps", "apps"]: must not repeat a namespace',
        f"{NS}:klutchRelease = 'v9.9.9': must be one of 'v1.0.0', 'v1.5.0'",
    ]


# ------------------------------------------------------------------------------- the central stack
def test_default_apis_are_everything_the_central_stack_exports():
    facts, apis = tenant_config.resolve_central(parse(), central_outputs())
    assert [a.name for a in apis] == [f"{r}.anynines.com" for r in EXPORTED]
    assert facts.bind_url == "https://klutch.example.com/bind-noninteractive"
    assert facts.export_url == "https://klutch.example.com/export"
    assert facts.crd_urls == catalog.RELEASES["v1.0.0"].kube_bind_crd_urls
    assert facts.konnector_image == catalog.RELEASES["v1.0.0"].konnector_image
    assert facts.ca_pem is None and facts.kubectl_bind_command.startswith("kubectl bind ")


def test_configured_apis_resolve_in_configured_order():
    cfg = parse({"apis": ["servicebindings", "postgresqlinstances.anynines.com"]})
    _, apis = tenant_config.resolve_central(cfg, central_outputs())
    assert apis == (Api("anynines.com", "servicebindings"), Api("anynines.com", "postgresqlinstances"))


def test_an_api_the_central_stack_does_not_export_names_the_valid_ones():
    cfg = parse({"apis": ["postgresqlinstances", "redisinstances.anynines.com", "backups.example.org"]})
    with pytest.raises(ConfigError) as e:
        tenant_config.resolve_central(cfg, central_outputs())
    valid = ", ".join(f"{r}.anynines.com" for r in EXPORTED)
    assert problems(e) == [
        f"{NS}:apis[1] = 'redisinstances.anynines.com': is not exported by central stack '{CENTRAL_STACK}'; "
        f"valid: {valid}",
        f"{NS}:apis[2] = 'backups.example.org': is not exported by central stack '{CENTRAL_STACK}'; valid: {valid}",
    ]


def test_a_bare_resource_exported_in_two_groups_is_ambiguous():
    outputs = central_outputs(
        bindingApis=[{"group": "anynines.com", "resource": "backups"}, {"group": "example.org", "resource": "backups"}]
    )
    with pytest.raises(ConfigError) as e:
        tenant_config.resolve_central(parse({"apis": ["backups"]}), outputs)
    assert problems(e) == [
        f"{NS}:apis[0] = 'backups': is ambiguous; write one of 'backups.anynines.com', 'backups.example.org'"
    ]


def test_a_stack_without_outputs_is_one_clear_problem():
    with pytest.raises(ConfigError) as e:
        tenant_config.resolve_central(parse(), {})
    assert len(problems(e)) == 1
    assert "has none of the outputs a tenant binds with" in problems(e)[0]
    assert f"`pulumi stack output -s {CENTRAL_STACK}`" in problems(e)[0]


def test_missing_and_malformed_outputs_are_all_reported():
    outputs = central_outputs(
        bindNonInteractiveUrl=None,
        exportUrl="http://klutch.example.com/export",
        kubeBindCrdUrls=None,
        konnectorImage=None,
        tlsCaPem="not a pem",
        bindingApis=[{"group": "anynines.com"}],
    )
    with pytest.raises(ConfigError) as e:
        tenant_config.resolve_central(parse(), outputs)
    prefix = f"{NS}:centralStack = '{CENTRAL_STACK}': its output"
    assert problems(e) == [
        f"{prefix} 'exportUrl' = 'http://klutch.example.com/export' is not an https URL",
        f"{prefix} 'bindNonInteractiveUrl' is missing: the central backend offers no non-interactive bind "
        "(backend.kind open-source); bind this tenant interactively: kubectl bind https://klutch.example.com/export "
        f"--konnector-image={catalog.RELEASES['v1.0.0'].konnector_image}",
        f"{prefix} 'kubeBindCrdUrls' = <unset> is not a list of http(s) URLs of the kube-bind CRD files",
        f"{prefix} 'konnectorImage' = <unset> is not a container image (or set {NS}:konnectorImage)",
        f"{prefix} 'tlsCaPem' is not a PEM certificate",
        f'{prefix} \'bindingApis\' = [{{"group": "anynines.com"}}] is not a non-empty list of {{group, resource}}',
    ]


def test_konnector_image_override_and_self_signed_ca():
    cfg = parse({"konnectorImage": "registry.example.com/mirror/konnector:v1.3.0"})
    facts, _ = tenant_config.resolve_central(cfg, central_outputs(konnectorImage=None, tlsCaPem=PLACEHOLDER_CA_PEM))
    assert facts.konnector_image == "registry.example.com/mirror/konnector:v1.3.0"
    assert facts.ca_pem == PLACEHOLDER_CA_PEM


def test_empty_tls_ca_means_a_public_certificate():
    facts, _ = tenant_config.resolve_central(parse(), central_outputs(tlsCaPem=""))
    assert facts.ca_pem is None


def test_the_docs_document_the_keys_the_parser_accepts():
    from pathlib import Path

    section = (Path(__file__).resolve().parent.parent / "docs" / "tenant.md").read_text()
    table = section.split("## Tenant stack configuration")[1].split("\n## ")[0]
    keys = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    assert keys == [
        "centralStack",
        "clusterId",
        "apis",
        "oidc.tokenUrl",
        "oidc.clientId",
        "oidc.clientSecret",
        "oidc.scope",
        "oidc.issuerUrl",
        "oidc.checkIssuer",
        "kubeconfig",
        "eksClusterName",
        "konnectorImage",
        "namespaces",
        "klutchRelease",
        "protect",
    ]
    # each documented key is one the parser reads (an unread key would be an "unknown key" problem)
    raw = {
        **base_raw(),
        "apis": ["backups"],
        "konnectorImage": "r.example.com/k:v1",
        "namespaces": ["apps"],
        "klutchRelease": "v1.0.0",
        "protect": False,
    }
    raw["oidc"] = {**raw["oidc"], "scope": "openid", "issuerUrl": "https://idp.example.com/x", "checkIssuer": False}
    assert {k.split(".")[0] for k in keys} - {"eksClusterName"} == set(raw)
    tenant_config.parse(raw, set(SECRET_KEYS), stack="s")
    policy = bindclient.Policy()
    prose = " ".join(section.split())  # the docs wrap their lines
    assert f"({policy.timeout:g} s per request)" in prose and f"tried up to {policy.attempts} times" in prose


def test_declared_project_keys_are_required_or_have_a_default():
    """The CLI refuses a stack that lacks a declared key without a default: only required keys may lack one."""
    import yaml

    from tests.harness import ROOT

    declared = yaml.safe_load((ROOT / "tenant" / "Pulumi.yaml").read_text())["config"]
    without_default = {k for k, v in declared.items() if "default" not in v}
    assert without_default == {"centralStack", "clusterId"}


# ------------------------------------------------------------------------------- one round
def test_config_and_central_problems_are_reported_together():
    """load() holds the config's own problems back until the central stack's outputs are checked."""
    raw = {**base_raw(), "clusterId": "ACME", "apis": ["redisinstances", "backups"]}
    cfg = tenant_config.parse(raw, set(SECRET_KEYS), stack="acme-dev", defer=True)
    assert [str(p) for p in cfg.deferred] == [
        f"{NS}:clusterId = 'ACME': must be a DNS label (lowercase a-z, 0-9 and '-', at most 63, no leading or "
        "trailing '-')"
    ]
    with pytest.raises(ConfigError) as e:
        tenant_config.resolve_central(cfg, central_outputs())
    assert [p.key for p in e.value.problems] == [f"{NS}:clusterId", f"{NS}:apis[0]"]
    assert str(e.value).startswith("invalid configuration for stack 'acme-dev' (2 problems):")
    with pytest.raises(ConfigError) as e:  # an undeployed central stack: still every problem
        tenant_config.resolve_central(cfg, {})
    assert [p.key for p in e.value.problems] == [f"{NS}:clusterId", f"{NS}:centralStack"]


def test_a_central_stack_that_cannot_be_read_fails_at_once():
    with pytest.raises(ConfigError) as e:
        tenant_config.parse(
            {**base_raw(), "centralStack": "dev", "clusterId": "ACME"}, set(SECRET_KEYS), stack="s", defer=True
        )
    assert [p.key for p in e.value.problems] == [f"{NS}:centralStack", f"{NS}:clusterId"]


def test_without_defer_parse_raises_every_problem():
    with pytest.raises(ConfigError):
        tenant_config.parse({**base_raw(), "clusterId": "ACME"}, set(SECRET_KEYS), stack="s")


def test_a_release_other_than_the_central_stack_s_is_an_error_naming_both():
    cfg = parse({"klutchRelease": "v1.5.0", "apis": ["backups.anynines.com"]})
    with pytest.raises(ConfigError) as e:
        tenant_config.resolve_central(cfg, central_outputs(klutchRelease="v1.0.0"))
    assert problems(e) == [
        f"{NS}:klutchRelease = 'v1.5.0': differs from the klutchRelease output 'v1.0.0' of central stack "
        f"'{CENTRAL_STACK}'; use the central stack's release: `pulumi config set klutchRelease v1.0.0`"
    ]
    same = parse({"klutchRelease": "v1.0.0"})
    assert tenant_config.resolve_central(same, central_outputs(klutchRelease="v1.0.0"))[0].stack == CENTRAL_STACK


def test_a_misspelt_namespace_is_an_error_and_an_unrelated_one_a_warning():
    others = {"klutch-tenat:clusterId": "acme", "pulumi:disable-default-providers": '["kubernetes"]', "x:y": "1"}
    with pytest.raises(ConfigError) as e:
        tenant_config.parse(base_raw(), set(SECRET_KEYS), stack="s", others=others)
    assert problems(e) == [
        "klutch-tenat:clusterId = 'acme': unknown config namespace 'klutch-tenat'; did you mean "
        "'klutch-tenant:clusterId'?"
    ]
    cfg = tenant_config.parse(base_raw(), set(SECRET_KEYS), stack="s", others={"x:y": "1"})
    assert cfg.warnings[0] == (
        "config 'x:y' ignored: namespace 'x' is not read by this program (it reads 'klutch-tenant', 'pulumi', "
        "'aws', 'kubernetes')"
    )


def test_an_unknown_key_points_at_the_tenant_docs():
    with pytest.raises(ConfigError) as e:
        parse({"clusterID": "acme"})
    assert problems(e)[0].endswith("(see docs/tenant.md)")
