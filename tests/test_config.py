"""Configuration: parsed once, every problem reported together, before any resource exists."""

from __future__ import annotations

import pytest

from klutch import catalog
from klutch.config import central
from klutch.config.central import ConfigError, subnet_layout
from klutch.config.reader import Secret
from klutch.offline.curated import mock_kubeconfig
from tests import harness

KUBECONFIG = mock_kubeconfig("https://10.1.2.3:6443", "kind-klutch")


def test_base_config_parses_to_typed_objects():
    cfg = harness.parse()
    assert cfg.environment == "dev" and cfg.protect is False
    assert cfg.network.cidr == "10.0.0.0/16" and cfg.network.az_count == 3 and cfg.network.nat_gateways == "single"
    assert cfg.cluster.mode == "eks" and cfg.cluster.name == "klutch-test"
    assert cfg.cluster.kubernetes_version == catalog.DEFAULT_KUBERNETES_VERSION
    assert cfg.cluster.instance_type == "t3a.xlarge"
    assert (cfg.cluster.nodes.min, cfg.cluster.nodes.desired, cfg.cluster.nodes.max) == (3, 3, 6)
    assert cfg.cluster.public_access_cidrs == ("0.0.0.0/0",)
    assert cfg.release == catalog.RELEASES["v1.0.0"]
    assert cfg.crossplane_version == "1.20.11"
    assert [s.key for s in cfg.data_services] == ["postgresql"]
    assert cfg.data_services[0].service_broker.password == Secret(harness.BROKER_PASSWORD)
    assert cfg.oidc.client_id == "kube-bind" and cfg.oidc.client_secret == Secret(harness.OIDC_SECRET)
    assert cfg.exposure.acme_server == "https://acme-staging-v02.api.letsencrypt.org/directory"


def test_prod_environment_protects_by_default():
    assert harness.parse({"environment": "prod", "exposure": {"acmeServer": "letsencrypt"}}).protect is True


def test_secret_repr_never_shows_the_value():
    cfg = harness.parse()
    assert harness.OIDC_SECRET not in repr(cfg)
    assert harness.BROKER_PASSWORD not in repr(cfg)


# Each bad configuration: (overrides, the key the message must name, a phrase of what is allowed).
BAD = [
    ({"network": {"cidr": "10.0.0.0/33"}}, "klutch-central:network.cidr", "IPv4 CIDR"),
    ({"network": {"cidr": "10.0.0.1/16"}}, "klutch-central:network.cidr", "no host bits"),
    ({"network": {"cidr": "10.0.0.0/24"}}, "klutch-central:network.cidr", "/16 to /20"),
    ({"network": {"cidr": "8.8.0.0/16"}}, "klutch-central:network.cidr", "private range"),
    ({"network": {"azCount": 2}}, "klutch-central:network.azCount", "between 3 and 6"),
    ({"network": {"natGateways": "none"}}, "klutch-central:network.natGateways", "'single', 'one-per-az'"),
    (
        {"network": {"availabilityZones": ["eu-central-1a", "eu-central-1b"]}},
        "klutch-central:network.availabilityZones",
        "exactly azCount (3)",
    ),
    ({"cluster": {"nodes": {"min": 2}}}, "klutch-central:cluster.nodes.min", "between 3 and 100"),
    (
        {"cluster": {"nodes": {"min": 4, "desired": 3, "max": 6}}},
        "klutch-central:cluster.nodes.desired",
        "min (4) <= desired (3) <= max (6)",
    ),
    ({"cluster": {"nodes": {"desired": 7, "max": 6}}}, "klutch-central:cluster.nodes.desired", "<= max (6)"),
    ({"cluster": {"instanceType": "t3a.large"}}, "klutch-central:cluster.instanceType", "at least 4 vCPU / 16 GiB"),
    ({"cluster": {"instanceType": "m6g.xlarge"}}, "klutch-central:cluster.instanceType", "x86_64"),
    ({"cluster": {"kubernetesVersion": "1.29"}}, "klutch-central:cluster.kubernetesVersion", "supported: 1.30"),
    ({"cluster": {"kubernetesVersion": "v1.33.0"}}, "klutch-central:cluster.kubernetesVersion", "'MAJOR.MINOR'"),
    ({"cluster": {"mode": "gke"}}, "klutch-central:cluster.mode", "'eks', 'existing'"),
    (
        {"cluster": {"publicAccessCidrs": ["0.0.0.0/0", "300.1.1.0/24"]}},
        "klutch-central:cluster.publicAccessCidrs[1]",
        "CIDR block",
    ),
    (
        {"cluster": {"endpointPublicAccess": False, "publicAccessCidrs": ["203.0.113.0/24"]}},
        "klutch-central:cluster.publicAccessCidrs",
        "only be set when endpointPublicAccess is true",
    ),
    (
        {"cluster": {"adminPrincipalArns": ["admin"]}},
        "klutch-central:cluster.adminPrincipalArns[0]",
        "IAM role or user ARN",
    ),
    ({"cluster": {"logTypes": ["api", "everything"]}}, "klutch-central:cluster.logTypes[1]", "must be one of api"),
    ({"cluster": {"nodes": {"min": "three"}}}, "klutch-central:cluster.nodes.min", "whole number"),
    ({"cluster": {"deletionProtection": "yes"}}, "klutch-central:cluster.deletionProtection", "true or false"),
    ({"environment": "production"}, "klutch-central:environment", "'dev', 'staging', 'prod'"),
    ({"klutchRelease": "v9.9.9"}, "klutch-central:klutchRelease", "'v1.0.0'"),
    ({"clustre": {"mode": "eks"}}, "klutch-central:clustre", "unknown key"),
    ({"cluster": {"instancetype": "t3a.xlarge"}}, "klutch-central:cluster.instancetype", "unknown key"),
    ({"network": {"cidr": "10.0.0.0/16", "nat": "single"}}, "klutch-central:network.nat", "unknown key"),
]


@pytest.mark.parametrize("overrides,key,allowed", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_bad_config_names_key_value_and_what_is_allowed(overrides, key, allowed):
    message = harness.problems_of(overrides)
    line = next((ln for ln in message.splitlines() if ln.strip().startswith(f"- {key} =")), None)
    assert line is not None, message
    assert allowed in line


@pytest.mark.parametrize("overrides,key,allowed", BAD[:6], ids=[b[1] for b in BAD[:6]])
def test_bad_config_fails_before_any_resource_is_registered(overrides, key, allowed):
    from klutch.offline.mockengine import RecordingMonitor

    seen: list = []
    original = RecordingMonitor.RegisterResource

    def spy(self, request):
        seen.append(request.type)
        return original(self, request)

    RecordingMonitor.RegisterResource = spy
    try:
        with pytest.raises(ConfigError) as err:
            harness.run(overrides)
    finally:
        RecordingMonitor.RegisterResource = original
    assert key in str(err.value)
    assert seen == ["pulumi:pulumi:Stack"], seen


def test_all_problems_are_reported_together():
    message = harness.problems_of(
        {
            "network": {"cidr": "bad", "azCount": 1},
            "cluster": {"instanceType": "t2.micro", "nodes": {"min": 1}},
            "typo": "x",
        }
    )
    assert message.startswith("invalid configuration for stack 'test' (5 problems):")
    for key in ("network.cidr", "network.azCount", "cluster.instanceType", "cluster.nodes.min", "klutch-central:typo"):
        assert key in message


def test_problem_line_shows_the_bad_value():
    assert "klutch-central:cluster.instanceType = 't3a.large': must be" in harness.problems_of(
        {"cluster": {"instanceType": "t3a.large"}}
    )


def test_missing_oidc_client_secret_is_required():
    raw = harness.merged()
    del raw["oidc"]["clientSecret"]
    message = harness.problems_of(raw=raw)
    assert (
        "klutch-central:oidc.clientSecret = <unset>: required secret; set it with "
        "`pulumi config set --secret --path 'oidc.clientSecret' <value>`" in message
    )


def test_plain_text_secret_is_rejected_without_echoing_it():
    message = harness.problems_of(secret_keys=("dataServices",))  # oidc not marked secret
    assert "klutch-central:oidc.clientSecret" in message and "stored in plain text" in message
    assert harness.OIDC_SECRET not in message


def test_unknown_key_inside_secret_object_does_not_echo_its_value():
    message = harness.problems_of({"oidc": {"clientSecrett": "s3cr3t-typo"}})
    assert "klutch-central:oidc.clientSecrett = '[secret]': unknown key" in message
    assert "s3cr3t-typo" not in message


def test_existing_mode_requires_a_secret_kubeconfig():
    message = harness.problems_of({"cluster": {"mode": "existing"}}, raw=None)
    assert "klutch-central:kubeconfig = <unset>: required secret" in message


def test_existing_mode_rejects_eks_only_keys_and_network():
    raw = harness.merged({"cluster": {"mode": "existing", "instanceType": "t3a.xlarge"}, "kubeconfig": KUBECONFIG})
    message = harness.problems_of(raw=raw, secret_keys=("dataServices", "oidc", "kubeconfig"))
    assert "klutch-central:cluster.instanceType" in message and "applies to cluster.mode 'eks' only" in message
    assert "klutch-central:network" in message and "must not be set when cluster.mode is 'existing'" in message


def test_existing_mode_parses_kubeconfig():
    raw = harness.merged({"cluster": {"mode": "existing"}, "kubeconfig": KUBECONFIG}, drop=("network",))
    cfg = harness.parse(raw=raw, secret_keys=("dataServices", "oidc", "kubeconfig"))
    assert cfg.cluster.mode == "existing" and cfg.cluster.kubeconfig == Secret(KUBECONFIG)


def test_existing_mode_rejects_an_unusable_kubeconfig():
    raw = harness.merged(
        {"cluster": {"mode": "existing"}, "kubeconfig": "apiVersion: v1\nkind: Config\n"}, drop=("network",)
    )
    message = harness.problems_of(raw=raw, secret_keys=("dataServices", "oidc", "kubeconfig"))
    assert "klutch-central:kubeconfig = '[secret]': is not a usable kubeconfig: no current-context" in message


def test_kubeconfig_in_eks_mode_is_an_error():
    raw = harness.merged({"kubeconfig": KUBECONFIG})
    message = harness.problems_of(raw=raw, secret_keys=("dataServices", "oidc", "kubeconfig"))
    assert "klutch-central:kubeconfig" in message and "only for cluster.mode 'existing'" in message


def test_structured_values_arrive_as_json_strings_like_the_cli_passes_them():
    import json

    raw = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in harness.merged().items()}
    raw["protect"] = "true"
    cfg = harness.parse(raw=raw)
    assert cfg.protect is True and cfg.oidc.issuer_url == "https://idp.example.com/realms/klutch"


def test_integer_strings_are_accepted_for_numbers():
    cfg = harness.parse({"cluster": {"nodes": {"min": "4", "desired": "4", "max": "8"}}})
    assert (cfg.cluster.nodes.min, cfg.cluster.nodes.desired, cfg.cluster.nodes.max) == (4, 4, 8)


@pytest.mark.parametrize(
    "cidr,az", [("10.0.0.0/16", 3), ("10.0.0.0/20", 3), ("172.16.0.0/16", 4), ("192.168.0.0/16", 6)]
)
def test_subnet_layout_fits_without_overlap(cidr, az):
    import ipaddress

    private, public = subnet_layout(cidr, az)
    nets = [ipaddress.ip_network(c) for c in private + public]
    assert len(private) == len(public) == az
    vpc = ipaddress.ip_network(cidr)
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert min(n.prefixlen for n in nets[:az]) < min(n.prefixlen for n in nets[az:])  # private subnets are larger


def test_subnet_layout_for_the_default_vpc():
    assert subnet_layout("10.0.0.0/16", 3) == (
        ["10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18"],
        ["10.0.192.0/20", "10.0.208.0/20", "10.0.224.0/20"],
    )


def test_existing_mode_kubeconfig_must_embed_the_ca():
    import json as _json

    doc = _json.loads(KUBECONFIG)
    del doc["clusters"][0]["cluster"]["certificate-authority-data"]
    raw = harness.merged({"cluster": {"mode": "existing"}, "kubeconfig": _json.dumps(doc)}, drop=("network",))
    message = harness.problems_of(raw=raw, secret_keys=("dataServices", "oidc", "kubeconfig"))
    assert (
        "klutch-central:kubeconfig = '[secret]': is not a usable kubeconfig: "
        "its cluster must embed certificate-authority-data" in message
    )


def test_missing_secret_names_the_command_with_its_path():
    raw = harness.merged()
    del raw["dataServices"]["postgresql"]["backupManager"]["password"]
    message = harness.problems_of(raw=raw)
    assert (
        "klutch-central:dataServices.postgresql.backupManager.password = <unset>: required secret; set it with "
        "`pulumi config set --secret --path 'dataServices.postgresql.backupManager.password' <value>`"
    ) in message


def test_credentials_inside_a_secret_object_are_never_echoed():
    raw = harness.merged()
    raw["dataServices"]["postgresql"]["serviceBroker"]["username"] = " topsecret-user "
    raw["dataServices"]["postgresql"]["backupManager"]["url"] = "https://admin:hunter2@backup.example.com"
    message = harness.problems_of(raw=raw)
    assert (
        "klutch-central:dataServices.postgresql.serviceBroker.username = '[secret]': must be a non-empty user name"
        in message
    )
    assert "topsecret-user" not in message and "hunter2" not in message
    assert (
        "klutch-central:dataServices.postgresql.backupManager.url = 'https://[redacted]@backup.example.com': "
        "must not carry credentials"
    ) in message


# ------------------------------------------------------------------------------- unknown keys, shown values
@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            {"network": {"natGateway": "single"}},
            "klutch-central:network.natGateway = 'single': unknown key; did you mean 'natGateways'? "
            "valid keys: 'availabilityZones', 'azCount', 'cidr', 'natGateways'",
        ),
        (
            {"cluster": {"nodes": {"mni": 3}}},
            "klutch-central:cluster.nodes.mni = 3: unknown key; did you mean 'min'? "
            "valid keys: 'desired', 'max', 'min'",
        ),
        (
            {"cluster": {"instancetype": "t3a.xlarge"}},
            "klutch-central:cluster.instancetype = 't3a.xlarge': unknown key; did you mean 'instanceType'?",
        ),
        (
            {"network": {"zzz": 1}},
            "klutch-central:network.zzz = 1: unknown key; valid keys: 'availabilityZones', 'azCount', 'cidr', "
            "'natGateways'",
        ),
        (
            {"clustre": {"mode": "eks"}},
            'klutch-central:clustre = {"mode": "eks"}: unknown key; did you mean \'cluster\'? valid keys: '
            "'backend', 'cluster', 'crossplaneVersion', 'dataServices', 'environment', 'exposure', 'klutchRelease', "
            "'kubeconfig', ",
        ),
    ],
    ids=["nested", "deeper", "case", "no-close-match", "top-level"],
)
def test_unknown_key_names_the_closest_and_the_valid_keys(overrides, line):
    message = harness.problems_of(overrides)
    assert any(ln.strip()[2:].startswith(line) for ln in message.splitlines()), message
    if "clustre" in overrides:  # top level: every key the program reads, and where they are documented
        top = next(ln for ln in message.splitlines() if "clustre" in ln)
        assert "'network', 'networkPolicy', 'observability', 'oidc', 'protect', 'rotation', 'tags'" in top
        assert top.endswith("(see docs/configuration.md)")


def test_a_bad_acme_email_is_one_problem():
    message = harness.problems_of({"exposure": {"acmeEmail": "not-an-email"}})
    assert message.startswith("invalid configuration for stack 'test' (1 problem):")
    assert "klutch-central:exposure.acmeEmail = 'not-an-email': must be an e-mail address" in message
    assert "needs exposure.acmeEmail" not in message


def test_an_unset_acme_email_with_a_host_is_still_required():
    assert "klutch-central:backend.host = 'klutch.example.com': needs exposure.acmeEmail" in harness.problems_of(
        {"exposure": {"acmeEmail": None}}
    )


def test_an_object_key_that_is_not_an_object_is_one_problem():
    raw = harness.merged()
    raw["oidc"] = ["issuerUrl", "clientSecret"]
    message = harness.problems_of(raw=raw)
    assert message == (
        "invalid configuration for stack 'test' (1 problem):\n"
        '  - klutch-central:oidc = ["issuerUrl", "clientSecret"]: must be an object'
    )


def test_long_values_are_shortened_the_same_way_everywhere():
    from klutch.config import tenant as tenant_config
    from klutch.config.reader import SHOW_LIMIT, show

    long = "x" * 300
    assert show(long) == f"'{'x' * (SHOW_LIMIT - 21)}... (302 characters)" and len(show(long)) < SHOW_LIMIT + 10
    assert show(["a"] * 100).endswith("... (500 characters)")
    message = harness.problems_of({"network": {"natGateways": long}})
    assert f"klutch-central:network.natGateways = {show(long)}: must be one of" in message
    cfg = tenant_config.parse(
        {
            "centralStack": "o/klutch-central/dev",
            "clusterId": "a",
            "oidc": {"tokenUrl": "https://i.example.com/t", "clientId": "c", "clientSecret": "s"},
            "eksClusterName": "e",
        },
        {"oidc"},
        stack="t",
    )
    with pytest.raises(ConfigError) as e:
        tenant_config.resolve_central(cfg, {"exportUrl": f"http://{long}"})
    assert f"its output 'exportUrl' = {show('http://' + long)} is not an https URL" in str(e.value)


# ------------------------------------------------------------------------------- property trees
def test_one_walker_unwraps_finds_and_masks_secrets():
    from pulumi.runtime import rpc

    from klutch.sdk.tree import contains_secret, dotted_get, dotted_set, dotted_walk, unwrap_secrets, walk_secrets

    def secret(v):
        return {rpc._special_sig_key: rpc._special_secret_sig, "value": v}

    tree = {"a": [1, {"b": secret({"c": "s3cr3t", "d": [secret("x")]})}], "e": "plain"}
    assert unwrap_secrets(tree) == {"a": [1, {"b": {"c": "s3cr3t", "d": ["x"]}}], "e": "plain"}
    assert contains_secret(tree) and contains_secret(secret([])) and not contains_secret({"a": [1, "b"]})
    masked = walk_secrets(tree, lambda v, s: "***" if s else v)
    assert masked == {"a": [1, {"b": {"c": "***", "d": ["***"]}}], "e": "plain"}
    assert dotted_get(tree, "a.1.b.c") == "s3cr3t" and dotted_get(tree, "a.5.b", "none") == "none"
    assert dotted_walk(tree, "a.1.b.d") == ([secret("x")], True) and dotted_walk(tree, "e") == ("plain", False)
    target: dict = {"x": None, "l": [1]}
    assert dotted_set(target, "x.y.z", 1) and target["x"] == {"y": {"z": 1}}
    assert not dotted_set(target, "l.y", 1) and target["l"] == [1]


# ------------------------------------------------------------------------------- holes the CLI does not see
REGION = {"aws:region": "eu-central-1"}


def test_a_misspelt_config_namespace_is_an_error_with_the_key_it_meant():
    message = harness.problems_of(
        others={**REGION, "klutch-centrall:environment": "prod", "klutch_central:protect": "true"}
    )
    assert (
        "  - klutch-centrall:environment = 'prod': unknown config namespace 'klutch-centrall'; "
        "did you mean 'klutch-central:environment'?"
    ) in message.splitlines()
    assert "did you mean 'klutch-central:protect'?" in message


def test_an_unrelated_config_namespace_is_a_warning():
    cfg = harness.parse(others={**REGION, "pulumi:disable-default-providers": '["*"]', "myteam:owner": "ops"})
    assert (
        "config 'myteam:owner' ignored: namespace 'myteam' is not read by this program (it reads 'klutch-central', "
        "'pulumi', 'aws', 'eks', 'kubernetes', 'random', 'tls')"
    ) in cfg.warnings


def test_a_public_access_cidr_without_prefix_is_rejected():
    message = harness.problems_of({"cluster": {"publicAccessCidrs": ["10.0.0.0"]}})
    assert (
        "  - klutch-central:cluster.publicAccessCidrs[0] = '10.0.0.0': must be a CIDR block with its prefix "
        "length, e.g. '10.0.0.0/32' for this one address"
    ) in message.splitlines()


@pytest.mark.parametrize("cidr", ["169.254.0.0/16", "100.64.0.0/16", "172.32.0.0/16"])
def test_a_vpc_cidr_outside_rfc_1918_is_rejected(cidr):
    assert (
        f"  - klutch-central:network.cidr = '{cidr}': must be inside an RFC 1918 private range: 10.0.0.0/8, "
        "172.16.0.0/12 or 192.168.0.0/16"
    ) in harness.problems_of({"network": {"cidr": cidr}}).splitlines()


def test_an_eks_stack_without_aws_region_is_an_error_before_any_cloud_call():
    assert (
        "  - aws:region = <unset>: required for cluster.mode 'eks', an AWS region such as 'eu-central-1' (where the "
        "cluster and its network are created): `pulumi config set aws:region <region>`"
    ) in harness.problems_of(others={}).splitlines()
    existing = {"cluster": {"mode": "existing"}, "network": None, "kubeconfig": KUBECONFIG}
    assert harness.parse(existing, secret_keys=(*harness.BASE_SECRET_KEYS, "kubeconfig"), others={}).cluster.mode == (
        "existing"
    )
    with pytest.raises(ConfigError, match="aws:region"):
        harness.run(region=None)  # the program reads it


def test_every_availability_zone_problem_is_reported_in_one_round():
    zones = ["eu-central-1a", "eu-central-1a", "us-east-1b", "central"]
    lines = harness.problems_of({"network": {"availabilityZones": zones}}, others=REGION).splitlines()
    assert lines[1:] == [
        "  - klutch-central:network.availabilityZones[2] = 'us-east-1b': is not a zone of aws:region "
        "'eu-central-1' (e.g. 'eu-central-1a')",
        "  - klutch-central:network.availabilityZones[3] = 'central': must be an availability-zone name such as "
        "'eu-central-1a'",
        '  - klutch-central:network.availabilityZones = ["eu-central-1a", "eu-central-1a", "us-east-1b", '
        '"central"]: must not repeat a zone',
    ]


def test_reserved_example_hosts_are_warned_about_first():
    warnings = harness.parse().warnings  # the base config names example.com hosts everywhere
    assert list(warnings[:4]) == [
        "klutch-central:backend.host = 'klutch.example.com' names the reserved example host 'klutch.example.com', "
        "where nothing answers: set your own (`pulumi config set --path backend.host <value>`) before `pulumi up`",
        "klutch-central:oidc.issuerUrl = 'https://idp.example.com/realms/klutch' names the reserved example host "
        "'idp.example.com', where nothing answers: set your own (`pulumi config set --path oidc.issuerUrl <value>`) "
        "before `pulumi up`",
        "klutch-central:dataServices.postgresql.serviceBroker.url = 'http://postgresql-broker.example.com:3000' "
        "names the reserved example host 'postgresql-broker.example.com', where nothing answers: set your own "
        "(`pulumi config set --path dataServices.postgresql.serviceBroker.url <value>`) before `pulumi up`",
        "klutch-central:dataServices.postgresql.backupManager.url = 'http://postgresql-backup.example.com:3000' "
        "names the reserved example host 'postgresql-backup.example.com', where nothing answers: set your own "
        "(`pulumi config set --path dataServices.postgresql.backupManager.url <value>`) before `pulumi up`",
    ]
    real = harness.parse(
        {
            "backend": {"host": "klutch.acme.io"},
            "oidc": {"issuerUrl": "https://login.acme.io/realms/klutch"},
            "dataServices": {},
        }
    )
    assert not any("reserved example host" in w for w in real.warnings)


@pytest.mark.parametrize(
    ("host", "reserved"),
    [
        ("example.com", True),
        ("idp.example.org", True),
        ("a.b.example.net", True),
        ("klutch.example", True),
        ("nothing.invalid", True),
        ("EXAMPLE.COM.", True),
        ("example.com.au", False),
        ("myexample.com", False),
        ("klutch.e2e.test", False),
        ("", False),
    ],
)
def test_reserved_hosts(host, reserved):
    from klutch.config.reader import reserved_host

    assert reserved_host(host) is reserved


def test_network_policy_defaults_follow_the_cluster_mode_and_the_issuer_url():
    cfg = harness.parse({"oidc": {"issuerUrl": "https://idp.example.com:8443/realms/klutch"}})
    assert cfg.network_policy == central.NetworkPolicyConfig(
        api_server_cidrs=("10.0.0.0/16",),  # EKS: the private endpoints live in the VPC
        oidc_issuer_cidrs=("0.0.0.0/0",),
        oidc_issuer_namespace=None,
        oidc_issuer_port=8443,
        data_service_cidrs=("0.0.0.0/0",),
    )


def test_network_policy_problems_are_reported_with_key_value_and_allowed():
    message = harness.problems_of(
        {
            "networkPolicy": {
                "apiServerCidrs": ["10.0.0.1/16"],
                "oidcIssuerNamespace": "Key_cloak",
                "oidcIssuerCidrs": ["192.0.2.0/24"],
                "oidcIssuerPort": 0,
                "dataServiceCidrs": [],
            }
        }
    )
    for line in (
        "networkPolicy.apiServerCidrs",
        "networkPolicy.oidcIssuerNamespace = 'Key_cloak'",
        "networkPolicy.oidcIssuerCidrs = '(set)': must not be set with oidcIssuerNamespace",
        "networkPolicy.oidcIssuerPort = 0",
        "networkPolicy.dataServiceCidrs = []: must list at least one CIDR",
    ):
        assert line in message, message
