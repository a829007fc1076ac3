"""klutch-recover's decisions: each pending operation of an interrupted `up` against what the cluster holds,
the refresh flags that carry them out, and when a lock may be lifted."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from klutch.ops import recover
from klutch.ops.recovery import (
    Action,
    HelmRecord,
    Lock,
    ObjectRef,
    PendingOp,
    Process,
    decide,
    import_args,
    live_holder,
    object_ref,
    orphaned_plugins,
    plan,
)

STACK_URN = "urn:pulumi:prod::klutch-central"
PROVIDER = f"{STACK_URN}::klutch:cluster:Cluster$pulumi:providers:kubernetes::cluster-k8s::0a1b"


@dataclass
class FakeCluster:
    """Kinds served (api_version, kind) -> namespaced; objects present; Helm records per release."""

    kinds: dict[tuple[str, str], bool] = field(default_factory=dict)
    objects: set[tuple[str, str, str, str | None]] = field(default_factory=set)
    releases: dict[tuple[str, str], list[HelmRecord]] = field(default_factory=dict)

    def namespaced(self, api_version: str, kind: str) -> bool | None:
        return self.kinds.get((api_version, kind))

    def exists(self, api_version: str, kind: str, name: str, namespace: str | None) -> bool:
        return (api_version, kind, name, namespace) in self.objects

    def helm_records(self, namespace: str, release: str) -> list[HelmRecord]:
        return self.releases.get((namespace, release), [])


def pending(type_: str, name: str, inputs: dict, operation: str = "creating") -> dict:
    """A pending operation as `pulumi stack export` writes it."""
    urn = f"{STACK_URN}::klutch:crossplane:Crossplane${type_}::{name}"
    return {"resource": {"urn": urn, "type": type_, "inputs": inputs, "provider": PROVIDER}, "type": operation}


def op(type_: str, name: str, inputs: dict, operation: str = "creating") -> PendingOp:
    return PendingOp.from_state(pending(type_, name, inputs, operation))


SECRET = op(
    "kubernetes:core/v1:Secret",
    "crossplane-postgresql-service-broker-creds",
    {"metadata": {"name": "postgresql-service-broker-creds", "namespace": "crossplane-system"}},
)
NAMESPACE = op("kubernetes:core/v1:Namespace", "crossplane-namespace", {"metadata": {"name": "crossplane-system"}})
PROVIDER_CONFIG = op(
    "kubernetes:dataservices.anynines.com/v1:ProviderConfig",
    "crossplane-postgresql-service-broker",
    {"metadata": {"name": "postgresql-service-broker"}},
)
RELEASE = op("kubernetes:helm.sh/v3:Release", "crossplane", {"name": "crossplane", "namespace": "crossplane-system"})
CLUSTER = FakeCluster(
    kinds={
        ("v1", "Secret"): True,
        ("v1", "Namespace"): False,
        ("dataservices.anynines.com/v1", "ProviderConfig"): False,
    },
    objects={
        ("v1", "Secret", "postgresql-service-broker-creds", "crossplane-system"),
        ("v1", "Namespace", "crossplane-system", None),
        ("dataservices.anynines.com/v1", "ProviderConfig", "postgresql-service-broker", None),
    },
    releases={("crossplane-system", "crossplane"): [HelmRecord("sh.helm.release.v1.crossplane.v1", 1, "deployed")]},
)
EMPTY = FakeCluster(kinds=CLUSTER.kinds)


def test_object_refs_of_built_in_and_crd_backed_types():
    assert object_ref(SECRET) == ObjectRef("v1", "Secret", "postgresql-service-broker-creds", "crossplane-system")
    assert object_ref(PROVIDER_CONFIG) == ObjectRef(
        "dataservices.anynines.com/v1", "ProviderConfig", "postgresql-service-broker", None
    )
    assert object_ref(op("kubernetes:apps/v1:Deployment", "d", {"metadata": {"name": "x"}})).api_version == "apps/v1"
    assert object_ref(RELEASE) is None  # a Helm release is no Kubernetes object of its own
    assert object_ref(op("random:index/randomBytes:RandomBytes", "k", {})) is None


@pytest.mark.parametrize(
    "pending_op, expected_id",
    [
        (SECRET, "crossplane-system/postgresql-service-broker-creds"),  # namespaced: namespace/name
        (NAMESPACE, "crossplane-system"),  # cluster-scoped: name
        (PROVIDER_CONFIG, "postgresql-service-broker"),  # CRD-backed, cluster-scoped
    ],
)
def test_an_existing_object_is_imported_with_the_providers_id(pending_op, expected_id):
    decision = decide(pending_op, CLUSTER)
    assert (decision.action, decision.id) == (Action.IMPORT, expected_id)


@pytest.mark.parametrize("pending_op", [SECRET, NAMESPACE, PROVIDER_CONFIG])
def test_a_missing_object_is_cleared(pending_op):
    decision = decide(pending_op, EMPTY)
    assert (decision.action, decision.id) == (Action.CLEAR, None)
    assert "does not exist" in decision.why


def test_an_object_of_a_kind_the_cluster_does_not_serve_is_cleared():
    decision = decide(PROVIDER_CONFIG, FakeCluster())  # its CRD is not installed yet
    assert decision.action is Action.CLEAR
    assert "serves no ProviderConfig (dataservices.anynines.com/v1)" in decision.why


def test_a_namespaced_object_without_a_namespace_is_looked_up_in_default():
    cm = op("kubernetes:core/v1:ConfigMap", "cm", {"metadata": {"name": "settings"}})
    cluster = FakeCluster(kinds={("v1", "ConfigMap"): True}, objects={("v1", "ConfigMap", "settings", "default")})
    assert decide(cm, cluster).id == "default/settings"


def test_a_helm_release_with_records_is_reinstalled_over_its_objects():
    decision = decide(RELEASE, CLUSTER)
    assert decision.action is Action.REINSTALL
    assert [r.secret for r in decision.records] == ["sh.helm.release.v1.crossplane.v1"]
    assert decision.id is None  # never imported: the refresh leaves no release in the state
    assert "crossplane-system/crossplane" in decision.why and "v1 deployed" in decision.why


def test_a_helm_release_cut_off_while_installing_drops_its_pending_record():
    cut = FakeCluster(releases={("crossplane-system", "crossplane"): [HelmRecord("r.v1", 1, "pending-install")]})
    assert [r.status for r in decide(RELEASE, cut).records] == ["pending-install"]


def test_a_helm_release_without_records_is_cleared():
    assert decide(RELEASE, EMPTY).action is Action.CLEAR


def test_a_helm_upgrade_cut_off_goes_back_to_the_last_deployed_revision():
    records = [
        HelmRecord("r.v1", 1, "superseded"),
        HelmRecord("r.v2", 2, "deployed"),
        HelmRecord("r.v3", 3, "pending-upgrade"),
    ]
    cluster = FakeCluster(releases={("crossplane-system", "crossplane"): records})
    decision = decide(op(RELEASE.type, "crossplane", dict(RELEASE.inputs), "updating"), cluster)
    assert decision.action is Action.DROP_PENDING_RECORDS
    assert [r.secret for r in decision.records] == ["r.v3"]


def test_pending_updates_and_deletes_are_left_to_the_refresh():
    for operation in ("updating", "deleting"):
        assert decide(op(SECRET.type, "s", dict(SECRET.inputs), operation), CLUSTER).action is Action.REFRESH


def test_state_only_resources_are_cleared_and_cloud_resources_are_left_to_the_operator():
    assert decide(op("random:index/randomBytes:RandomBytes", "k", {"length": 32}), EMPTY).action is Action.CLEAR
    assert decide(op("tls:index/privateKey:PrivateKey", "k", {}), EMPTY).action is Action.CLEAR
    vpc = decide(op("aws:ec2/vpc:Vpc", "network-vpc", {"cidrBlock": "10.0.0.0/16"}), EMPTY)
    assert vpc.action is Action.MANUAL and "aws:ec2/vpc:Vpc" in vpc.why


def test_plan_and_refresh_flags_for_an_exported_state():
    state = {
        "deployment": {
            "pending_operations": [
                pending(SECRET.type, "secret", dict(SECRET.inputs)),
                pending(NAMESPACE.type, "ns", dict(NAMESPACE.inputs)),
                pending(RELEASE.type, "crossplane", dict(RELEASE.inputs)),
                pending("kubernetes:core/v1:Secret", "gone", {"metadata": {"name": "gone", "namespace": "bind"}}),
            ]
        }
    }
    decisions = plan(state, CLUSTER)
    assert [d.action for d in decisions] == [Action.IMPORT, Action.IMPORT, Action.REINSTALL, Action.CLEAR]
    flag = "--import-pending-creates"
    assert import_args(decisions) == [
        *(flag, decisions[0].op.urn, flag, "crossplane-system/postgresql-service-broker-creds"),
        *(flag, decisions[1].op.urn, flag, "crossplane-system"),
        "--clear-pending-creates",
    ]


def test_a_release_whose_install_failed_before_the_cut_is_dropped_only_when_the_state_has_no_trace_of_it():
    failed = [HelmRecord("sh.helm.release.v1.crossplane.v1", 1, "failed")]
    cluster = FakeCluster(
        releases={
            ("crossplane-system", "crossplane"): failed,
            ("cert-manager", "cert-manager"): [HelmRecord("sh.helm.release.v1.cert-manager.v1", 1, "pending-install")],
            ("monitoring", "kube-prometheus-stack"): [  # installed once: not this update's leftover
                HelmRecord("sh.helm.release.v1.kube-prometheus-stack.v1", 1, "deployed"),
                HelmRecord("sh.helm.release.v1.kube-prometheus-stack.v2", 2, "failed"),
            ],
        }
    )
    releases = recover.PROGRAM_RELEASES  # ingress-nginx, envoy-gateway and kube-state-metrics have no records
    known = {
        "type": RELEASE.type,
        "urn": "urn:x::edge-cert-manager",
        "inputs": {"name": "cert-manager", "namespace": "cert-manager"},
    }
    state = {
        "deployment": {"resources": [known], "pending_operations": [pending(SECRET.type, "s", dict(SECRET.inputs))]}
    }
    decisions = plan(state, cluster, releases)
    assert [(d.action, d.op.name) for d in decisions] == [(Action.CLEAR, "s"), (Action.REINSTALL, "crossplane")]
    stray = decisions[1]
    assert stray.records == tuple(failed) and stray.op.inputs == {
        "name": "crossplane",
        "namespace": "crossplane-system",
    }
    assert (
        stray.why
        == "Helm release crossplane-system/crossplane has records (v1 failed) and the state no trace of it: dropped"
    )
    assert import_args(decisions) == ["--clear-pending-creates"]  # nothing of it to import or clear
    state["deployment"]["pending_operations"].append(pending(RELEASE.type, "crossplane", dict(RELEASE.inputs)))
    assert [d.op.name for d in plan(state, cluster, releases)] == ["s", "crossplane"]  # decided once, as pending


NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)


def lock(host: str, pid: int, minutes_ago: int) -> Lock:
    content = {
        "pid": pid,
        "username": "ci",
        "hostname": host,
        "timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
    }
    return Lock.from_json("locks/x.json", content)


def test_a_lock_of_this_host_is_stale_once_its_pulumi_process_is_gone():
    assert live_holder(lock("runner", 4242, 1), "runner", NOW, timedelta(hours=2), running=[]) is None
    why = live_holder(lock("runner", 4242, 600), "runner", NOW, timedelta(hours=2), running=[4242])
    assert why == "pulumi (pid 4242) still runs on this host"


def test_a_lock_of_another_host_is_stale_only_after_the_given_age():
    why = live_holder(lock("other", 7, 30), "runner", NOW, timedelta(hours=2), running=[7])
    assert why == "taken on another host 30 min ago: an update may still run there"
    assert live_holder(lock("other", 7, 121), "runner", NOW, timedelta(hours=2), running=[]) is None


def test_lock_files_of_a_file_backend(tmp_path: Path):
    locks = tmp_path / ".pulumi" / "locks" / "organization" / "klutch-central" / "prod"
    locks.mkdir(parents=True)
    (locks / "abc.json").write_text(json.dumps({"pid": 1}))
    assert recover.lock_files(tmp_path.as_uri(), "klutch-central", "prod") == [locks / "abc.json"]
    assert recover.lock_files(tmp_path.as_uri(), "klutch-central", "organization/klutch-central/prod") == [
        locks / "abc.json"
    ]
    assert recover.lock_files("s3://bucket/state", "klutch-central", "prod") is None


def backend_files(root: Path) -> dict[str, Path]:
    """A file backend's checkpoint and lock of stack prod, each with its metadata file."""
    stacks, locks = root / ".pulumi" / "stacks" / "klutch-central", root / ".pulumi" / "locks" / "organization"
    files = {
        "checkpoint": stacks / "prod.json.attrs",
        "backup": stacks / "prod.json.bak.attrs",
        "lock": locks / "klutch-central" / "prod" / "a.json.attrs",
        "other stack": stacks / "prod2.json.attrs",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"user.content_type":"application/octet-stream","md5":"AA=="}\n')
    return files


def test_metadata_files_a_kill_cut_off_are_found_for_the_stack_alone(tmp_path: Path):
    files = backend_files(tmp_path)
    assert recover.cut_off_sidecars(tmp_path.as_uri(), "klutch-central", "prod") == []
    files["checkpoint"].write_text("")  # cut off right after it was truncated
    files["lock"].write_text('{"user.content_')  # cut off while written
    files["other stack"].write_text("")
    found = recover.cut_off_sidecars(tmp_path.as_uri(), "klutch-central", "organization/klutch-central/prod")
    assert found == sorted([files["checkpoint"], files["lock"]])
    assert recover.cut_off_sidecars("s3://bucket/state", "klutch-central", "prod") == []


def test_the_kubeconfig_comes_from_the_pending_operations_provider():
    secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "plaintext": '"apiVersion: v1"'}
    provider = {
        "urn": PROVIDER.rsplit("::", 1)[0],
        "type": "pulumi:providers:kubernetes",
        "inputs": {"kubeconfig": secret},
    }
    state = {"deployment": {"resources": [provider], "pending_operations": [pending(SECRET.type, "s", {})]}}
    assert recover.stack_kubeconfig(state) == "apiVersion: v1"
    with pytest.raises(recover.RecoverError, match="pass --kubeconfig"):
        recover.stack_kubeconfig({"deployment": {"pending_operations": [pending(SECRET.type, "s", {})]}})


def test_a_lock_file_as_the_cli_writes_it():
    content = {"pid": 4242, "username": "ci", "hostname": "runner", "timestamp": "2026-12-02T14:35:36.123456789Z"}
    parsed = Lock.from_json("file:///state/.pulumi/locks/organization/klutch-central/prod/1.json", content)
    assert (parsed.pid, parsed.host, parsed.created) == (4242, "runner", datetime(2026, 12, 2, 14, 35, 36, 123456, UTC))
    assert str(parsed).endswith("taken by ci@runner (pid 4242) at 2026-12-02T14:35:36.123456+00:00")


class FakeCli:
    """The Pulumi CLI of one stack on a file backend in `root`: records the commands that change something."""

    def __init__(self, root: Path, states: list[dict]) -> None:
        self.root, self.states, self.stack, self.calls = root, states, "prod", []

    def backend_url(self) -> str:
        return self.root.as_uri()

    def project(self) -> str:
        return "klutch-central"

    def state(self) -> dict:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def run(self, *args: str, **_: object) -> str:
        self.calls.append(args)
        return ""


class RecordingCluster(FakeCluster):
    def drop_helm_record(self, namespace: str, record: HelmRecord) -> None:
        self.releases[(namespace, record.secret.split(".")[-2])].remove(record)


def run_recover(
    monkeypatch, tmp_path: Path, ops: list[dict], *flags: str, procs: list[Process] | None = None
) -> tuple[int, FakeCli]:
    """`klutch-recover --stack prod` with a stale lock of this host, the given pending operations and
    processes (none by default), and CLUSTER."""
    locks = tmp_path / ".pulumi" / "locks" / "organization" / "klutch-central" / "prod"
    locks.mkdir(parents=True, exist_ok=True)
    gone = {"pid": 2**22 + 1, "username": "ci", "hostname": recover.socket.gethostname(), "timestamp": NOW.isoformat()}
    (locks / "a.json").write_text(json.dumps(gone))
    (tmp_path / "kubeconfig").write_text("apiVersion: v1")
    cli = FakeCli(tmp_path, [{"deployment": {"pending_operations": ops}}, {"deployment": {}}])
    releases = {key: list(records) for key, records in CLUSTER.releases.items()}
    monkeypatch.setattr(recover, "processes", lambda: procs or [])
    monkeypatch.setattr(recover, "Cli", lambda cwd, stack: cli)
    monkeypatch.setattr(
        recover, "LiveCluster", lambda kubeconfig: RecordingCluster(CLUSTER.kinds, CLUSTER.objects, releases)
    )
    code = recover.main(["--stack", "prod", "--kubeconfig", str(tmp_path / "kubeconfig"), *flags])
    return code, cli


def test_recover_lifts_the_lock_drops_helm_records_then_refreshes_once(monkeypatch, tmp_path, capsys):
    ops = [pending(RELEASE.type, "crossplane", dict(RELEASE.inputs)), pending(SECRET.type, "s", dict(SECRET.inputs))]
    code, cli = run_recover(monkeypatch, tmp_path, ops)
    assert code == 0
    imports = ("--import-pending-creates", ops[1]["resource"]["urn"])
    imports += ("--import-pending-creates", "crossplane-system/postgresql-service-broker-creds")
    refresh = ("refresh", "--yes", "--skip-preview", *imports, "--clear-pending-creates")
    assert cli.calls == [("cancel", "--yes"), refresh]
    out = capsys.readouterr().out
    assert "lock: stale, its holder is gone" in out
    assert "dropped Helm record crossplane-system/sh.helm.release.v1.crossplane.v1 (deployed)" in out
    assert out.strip().endswith("recovered: run `pulumi up --stack prod`")


@pytest.mark.parametrize("flags", [(), ("--dry-run",)])
def test_recover_changes_nothing_when_one_operation_is_to_be_decided_by_hand(monkeypatch, tmp_path, capsys, flags):
    ops = [pending("aws:ec2/vpc:Vpc", "network-vpc", {}), pending(RELEASE.type, "crossplane", dict(RELEASE.inputs))]
    code, cli = run_recover(monkeypatch, tmp_path, ops, *flags)
    assert (code, cli.calls) == (1, [])
    assert "1 pending operation(s) to decide by hand (above); nothing was changed" in capsys.readouterr().err


def test_a_live_update_keeps_its_lock_and_nothing_is_changed(monkeypatch, tmp_path, capsys):
    ops = [pending(SECRET.type, "s", dict(SECRET.inputs))]
    code, cli = run_recover(monkeypatch, tmp_path, ops, procs=[Process(2**22 + 1, 1, "pulumi")])
    assert (code, cli.calls) == (1, [])
    assert f"pulumi (pid {2**22 + 1}) still runs on this host" in capsys.readouterr().err


def test_provider_plugins_whose_pulumi_is_gone_keep_the_lock(monkeypatch, tmp_path, capsys):
    procs = [
        Process(10, 1, "pulumi"),
        Process(11, 10, "pulumi-resource-kubernetes"),  # a running update's plugin
        Process(12, 1, "pulumi-resource-kubernetes"),  # its pulumi was killed: it may still install a release
        Process(13, 1, "pulumi-language-python"),
    ]
    assert [p.pid for p in orphaned_plugins(procs)] == [12]
    code, cli = run_recover(monkeypatch, tmp_path, [pending(SECRET.type, "s", dict(SECRET.inputs))], procs=procs)
    assert (code, cli.calls) == (1, [])
    assert "pulumi-resource-kubernetes (pid 12) runs without its pulumi" in capsys.readouterr().err


def test_a_cut_off_checkpoint_metadata_file_is_removed_before_the_state_is_read(monkeypatch, tmp_path, capsys):
    files = backend_files(tmp_path)
    files["checkpoint"].write_text("")
    code, cli = run_recover(monkeypatch, tmp_path, [pending(SECRET.type, "s", dict(SECRET.inputs))])
    assert code == 0 and not files["checkpoint"].exists() and files["backup"].exists()
    assert f"checkpoint: {files['checkpoint']} was cut off by the kill: removed" in capsys.readouterr().out


def test_a_dry_run_names_a_cut_off_metadata_file_and_keeps_it(monkeypatch, tmp_path, capsys):
    files = backend_files(tmp_path)
    files["checkpoint"].write_text("")
    code, cli = run_recover(monkeypatch, tmp_path, [pending(SECRET.type, "s", dict(SECRET.inputs))], "--dry-run")
    assert (code, cli.calls) == (1, []) and files["checkpoint"].read_text() == ""
    out, err = capsys.readouterr()
    assert f"checkpoint: {files['checkpoint']} was cut off by the kill\n" in out
    assert "the CLI cannot read the stack until the files above are removed: run without --dry-run" in err
