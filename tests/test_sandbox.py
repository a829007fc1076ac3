"""klutch-sandbox without a control plane: where its state lives, its arguments, the pid handling that
`down` relies on, and the stack settings it writes (tests/e2e/test_sandbox.py runs it for real)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time

import pytest

from klutch.sandbox import command, deploy, processes
from klutch.sandbox.state import Layout, Service, state_dir


def test_state_dir_prefers_the_override_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir({"KLUTCH_SANDBOX_DIR": "/x/sb", "XDG_STATE_HOME": "/xdg"}) == tmp_path.joinpath("/x/sb")
    assert str(state_dir({"XDG_STATE_HOME": "/xdg"})) == "/xdg/klutch-central/sandbox"
    assert state_dir({}) == tmp_path / "home/.local/state/klutch-central/sandbox"
    assert state_dir({"XDG_STATE_HOME": ""}) == tmp_path / "home/.local/state/klutch-central/sandbox"


def test_the_passphrase_is_generated_once_and_private(tmp_path):
    layout = Layout(tmp_path / "sb")
    first = layout.passphrase()
    assert len(first) >= 24 and layout.passphrase() == first
    assert stat.S_IMODE((layout.root / "passphrase").stat().st_mode) == 0o600
    assert Layout(tmp_path / "other").passphrase() != first


def test_the_service_record_round_trips_privately(tmp_path):
    service = Service(pid=10, pids={"central/etcd": 11}, servers={"backend": "https://127.0.0.1:1"})
    service.started = {"10": 5, "11": 6}
    path = tmp_path / "service.json"
    service.save(path)
    assert Service.load(path) == service
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert service.all_pids() == [10, 11]
    assert Service.load(tmp_path / "missing.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert Service.load(tmp_path / "bad.json") is None


@pytest.mark.parametrize("verb", ["up", "status", "down"])
def test_arguments(verb, tmp_path):
    args = command.parse_args(["--state-dir", str(tmp_path), verb])
    assert (args.command, args.state_dir) == (verb, tmp_path)


@pytest.mark.parametrize("argv", [[], ["start"], ["up", "extra"]])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        command.parse_args(argv)
    assert e.value.code == 2


def test_down_without_a_sandbox_succeeds_twice_and_status_says_none(tmp_path, capsys):
    argv = ["--state-dir", str(tmp_path / "none"), "down"]
    assert command.main(argv) == 0
    assert command.main(argv) == 0
    assert capsys.readouterr().out.count("no sandbox in") == 2
    assert command.main(["--state-dir", str(tmp_path / "none"), "status"]) == command.NO_SANDBOX == 3


def test_down_removes_a_stopped_sandbox_state(tmp_path):
    layout = Layout(tmp_path / "sb")
    layout.root.mkdir()
    Service(pid=2**22 + 7).save(layout.service_file)  # above pid_max's default: never a running process
    assert command.main(["--state-dir", str(layout.root), "down"]) == 0
    assert not layout.root.exists()


def test_alive_tells_the_recorded_process_from_a_reused_pid():
    own = os.getpid()
    assert processes.alive(own) and processes.alive(own, processes.start_time(own))
    assert not processes.alive(own, (processes.start_time(own) or 0) + 1)
    child = subprocess.Popen(["true"])
    child.wait()
    assert not processes.alive(child.pid) and processes.start_time(child.pid) is None


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def test_stop_terminates_the_service_group_and_reports_none_left():
    proc = sleeper()
    service = Service(pid=proc.pid)
    processes.record_start_times(service)
    assert processes.running(service) == [proc.pid]
    assert processes.stop(service, timeout=10) == []
    assert proc.wait(timeout=5) == -signal.SIGTERM


def test_stop_kills_what_ignores_sigterm():
    proc = subprocess.Popen(["bash", "-c", "trap '' TERM; sleep 60"], start_new_session=True)
    time.sleep(0.3)
    service = Service(pid=proc.pid)
    processes.record_start_times(service)
    assert processes.stop(service, timeout=0.5) == []
    assert proc.wait(timeout=5) == -signal.SIGKILL


def test_stop_leaves_a_pid_alone_whose_start_time_differs():
    proc = sleeper()
    try:
        service = Service(pid=proc.pid, started={str(proc.pid): 1})  # another process had this pid
        assert processes.running(service) == []
        assert processes.stop(service, timeout=0.2) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_sandbox_with_a_stopped_process_is_named_by_status_and_refused_by_up(tmp_path, capsys):
    proc = sleeper()
    try:
        layout = Layout(tmp_path / "sb")
        layout.root.mkdir()
        service = Service(pid=proc.pid, pids={"central": 2**22 + 7})  # the central control plane is gone
        processes.record_start_times(service)
        service.save(layout.service_file)
        assert processes.stopped(service) == ["central"]
        assert command.main(["--state-dir", str(layout.root), "status"]) == command.NOT_RUNNING
        assert "the sandbox is not running: stopped central" in capsys.readouterr().out
        with pytest.raises(SystemExit, match=r"is not running any more .* run `./klutch-sandbox down`, then `up`"):
            command.ensure_service(layout, progress=None)  # type: ignore[arg-type]  # refused before any step
    finally:
        proc.kill()
        proc.wait()


def test_missing_passwords_are_the_brokers_without_one():
    document = {
        "config": {
            "klutch-central:dataServices": {
                "postgresql": {
                    "serviceBroker": {"url": "u", "password": {"secure": "x"}},
                    "backupManager": {"url": "u"},
                },
                "mongodb": {"serviceBroker": {"url": "u"}},
            }
        }
    }
    assert deploy.missing_passwords(document) == [
        "dataServices.postgresql.backupManager.password",
        "dataServices.mongodb.serviceBroker.password",
    ]
    assert deploy.missing_passwords({}) == []


def test_the_first_stack_file_names_the_sandbox_idp_and_mirrors_locally():
    issuer = "https://127.0.0.1:7/realms/klutch"
    service = Service(pid=1, servers={"charts": "http://127.0.0.1:5", "issuer": issuer})
    config = deploy.central_config(service)
    assert config["oidc"] == {"issuerUrl": issuer, "clientId": "kube-bind"}  # the issuer check stays on
    assert config["cluster"] == {"mode": "existing"}
    assert set(config["mirrors"]["charts"].values()) == {"http://127.0.0.1:5"}
    assert config["mirrors"]["kubeBindCrds"][0].startswith("http://127.0.0.1:5/kube-bind-")
    assert list(config["dataServices"]) == ["postgresql"]


def test_the_tenant_reads_the_backend_double_in_place_of_the_real_urls():
    service = Service(pid=1, servers={"backend": "https://127.0.0.1:6"}, client={"ca": "CA PEM"})
    real = {"klutchRelease": "v1.5.0", "exportUrl": "https://h/export", "bindingApis": [], "konnectorImage": "k"}
    outputs = deploy.bind_outputs({**real, "kubeconfig": "ADMIN", "clusterName": "c"}, service)
    assert "kubeconfig" not in outputs and "clusterName" not in outputs  # only what a tenant reads, no secret
    assert outputs["exportUrl"] == "https://127.0.0.1:6/export"
    assert outputs["bindNonInteractiveUrl"] == "https://127.0.0.1:6/bind-noninteractive"
    assert outputs["tlsCaPem"] == "CA PEM" and outputs["konnectorImage"] == "k"
    assert deploy.tenant_apis({"bindingApis": [{"group": "anynines.com", "resource": "backups"}]}) == [
        "backups.anynines.com"
    ]


def test_changes_is_the_resources_summary_on_one_line():
    out = "Updating (sandbox):\n...\nResources:\n    + 4 created\n    61 unchanged\n\nDuration: 1m2s\n"
    assert command.changes(out) == "+ 4 created, 61 unchanged"
    assert command.changes("no summary") == ""


def test_paths_under_home_are_shown_with_a_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert command.shown(tmp_path / ".local/state/x") == "~/.local/state/x"
    assert command.shown(tmp_path.parent / "elsewhere") == str(tmp_path.parent / "elsewhere")
