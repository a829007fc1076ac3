"""The real-engine harness's own helpers, offline: `succeeded`, the doubles' polling through an API server
restart, and the order of the acme tenant story."""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from klutch.sandbox import doubles
from tests.e2e.helpers import STDERR_TAIL, STDOUT_TAIL, CommandFailed, succeeded
from tests.e2e.test_tenant import AcmeStory


def finished(returncode: int, stdout: str = "", stderr: str = "") -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["pulumi", "up", "--yes"], returncode, stdout, stderr)


def test_succeeded_returns_the_finished_command_when_it_exited_0():
    done = finished(0, "ok")
    assert succeeded(done, "never shown") is done


def test_succeeded_raises_with_the_command_its_code_its_output_and_the_context():
    with pytest.raises(CommandFailed) as failure:
        succeeded(finished(255, "the engine's report", "error: refused"), "doubles: ['x']")
    message = str(failure.value)
    assert message.splitlines()[0] == "pulumi up --yes failed (255)"
    assert "the engine's report" in message and "error: refused" in message
    assert message.endswith("doubles: ['x']")
    assert isinstance(failure.value, AssertionError)  # a test that calls it fails, not errors


def test_succeeded_keeps_the_tail_of_a_long_output():
    stdout = "a" * STDOUT_TAIL + "END-OF-STDOUT"
    stderr = "b" * STDERR_TAIL + "END-OF-STDERR"
    with pytest.raises(CommandFailed) as failure:
        succeeded(finished(1, stdout, stderr))
    message = str(failure.value)
    assert "END-OF-STDOUT" in message and "END-OF-STDERR" in message
    assert message.count("a") < STDOUT_TAIL and message.count("b") < STDERR_TAIL


def test_succeeded_names_a_shell_command_given_as_one_string():
    done = subprocess.CompletedProcess("bash -c false", 1, None, None)  # output not captured
    with pytest.raises(CommandFailed, match=r"^bash -c false failed \(1\)"):
        succeeded(done)


class RestartingPlane:
    """An API server that cuts every response short (as one going away does) while `down`."""

    name = "restarting"

    def __init__(self) -> None:
        self.down = True
        self.requests = 0

    def api(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        self.requests += 1
        if self.down:
            raise http.client.IncompleteRead(b"{", 100)
        return {"items": []}


class Rounds:
    """The doubles' stop event: records each wait, brings the plane back after `up_after` waits, and
    stops after `rounds`."""

    def __init__(self, plane: RestartingPlane, up_after: int, rounds: int) -> None:
        self.plane, self.up_after, self.rounds = plane, up_after, rounds
        self.waits: list[float] = []

    def wait(self, delay: float) -> bool:
        self.waits.append(delay)
        if len(self.waits) > self.up_after:
            self.plane.down = False
        return len(self.waits) > self.rounds


def test_the_doubles_back_off_while_the_api_server_is_down_and_resume_when_it_is_back():
    plane = RestartingPlane()
    double = doubles.Doubles(plane, Path("/nonexistent"), None)  # type: ignore[arg-type]
    rounds = Rounds(plane, up_after=6, rounds=8)
    double._stop = rounds  # type: ignore[assignment]
    double._run()  # returns: an IncompleteRead does not end the loop
    period, most = doubles.PERIOD, doubles.MAX_BACKOFF
    assert rounds.waits == [period, 2 * period, 4 * period, most, most, most, most, period, period]
    assert any("IncompleteRead" in error for error in double.errors)
    assert plane.requests > 6


def test_a_round_that_reaches_the_api_server_is_not_unreachable():
    plane = RestartingPlane()
    double = doubles.Doubles(plane, Path("/nonexistent"), None)  # type: ignore[arg-type]
    assert double._round() is True
    plane.down = False
    assert double._round() is False


def steps(done: list[str]) -> SimpleNamespace:
    return SimpleNamespace(done=done)


def story_step(index: int, ran: list[str]):
    def test(setup: Any) -> None:
        ran.append(AcmeStory.STEPS[index])

    test.__name__ = AcmeStory.STEPS[index]
    return AcmeStory.step(test)


def test_a_story_step_runs_after_its_predecessors_and_records_itself():
    ran: list[str] = []
    setup = steps(list(AcmeStory.STEPS[:2]))
    story_step(2, ran)(setup)
    assert ran == [AcmeStory.STEPS[2]]
    assert setup.done == list(AcmeStory.STEPS[:3])


def test_a_story_step_whose_predecessor_did_not_pass_is_skipped_and_not_run():
    ran: list[str] = []
    setup = steps([AcmeStory.STEPS[0]])
    with pytest.raises(pytest.skip.Exception, match=AcmeStory.STEPS[1]):
        story_step(2, ran)(setup)
    assert ran == [] and setup.done == [AcmeStory.STEPS[0]]


def test_the_story_names_each_step_once_and_each_is_a_test_of_the_module():
    from tests.e2e import test_tenant

    assert len(set(AcmeStory.STEPS)) == len(AcmeStory.STEPS)
    for name in AcmeStory.STEPS:
        assert callable(getattr(test_tenant, name)), name
