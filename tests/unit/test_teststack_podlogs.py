"""What the test cluster's fake containers "print" (teststack.podlogs), and its CRI log format."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from teststack import kubeapi, podlogs
from teststack.podlogs import container_output, cri_lines


def env(**kv: str) -> list[dict]:
    return [{"name": k, "value": v} for k, v in kv.items()]


def test_a_shell_script_prints_its_echo_statements_only():
    script = "echo hello; ls -l && echo 'two  words' || echo \"a;b\"\necho -n last; echo hidden > /dev/termination-log"
    assert container_output({"command": ["/bin/sh", "-c", script]}) == ["hello", "two  words", "a;b", "last"]


def test_command_and_args_are_joined_and_bash_counts_as_a_shell():
    assert container_output({"command": ["bash"], "args": ["-c", "echo from args"]}) == ["from args"]
    assert container_output({"command": ["echo", "plain", "words"]}) == ["plain words"]
    assert container_output({"image": "busybox"}) == []


def test_log_env_wins_over_the_command():
    c = {"command": ["sh", "-c", "echo ignored"], "env": env(KWOK_LOG="one\ntwo\\nthree")}
    assert container_output(c) == ["one", "two", "three"]
    assert container_output({"env": env(KWOK_LOG_LINES="3")}) == ["line 1", "line 2", "line 3"]


def test_cri_lines_have_strictly_increasing_nanosecond_timestamps():
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert cri_lines(["a", "b"], start) == (
        "2026-01-01T00:00:00.000000000Z stdout F a\n"
        "2026-01-01T00:00:00.001000000Z stdout F b\n")


def test_escapes_in_the_log_env_stand_for_control_characters_inside_a_line():
    c = {"env": env(KWOK_LOG="a\\rb\\nnul\\0byte\\fff")}
    assert container_output(c) == ["a\rb", "nul\x00byte\fff"]


def test_a_log_interval_makes_the_file_grow_line_by_line(tmp_path):
    from teststack.podlogs import _grow
    f = tmp_path / "c.log"
    f.write_text("")
    _grow(f, ["one", "two"], 1)
    lines = f.read_text().splitlines()
    assert [line.split(" stdout F ")[1] for line in lines] == ["one", "two"]


class FakeClock:
    """podlogs' `time`: sleeping advances it, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


POD = {"metadata": {"namespace": "ns", "name": "p", "uid": "0123456789"},
       "spec": {"containers": [{"name": "main", "command": ["echo", "hi"]}]}}


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(podlogs, "time", clock)
    return clock


def test_a_pod_gets_its_logs_object_when_the_apiserver_is_away_for_half_a_minute(tmp_path, monkeypatch, clock):
    """An apiserver restart under load took ~27 s in the soak; the pod was released without
    its Logs object after ~9 s of tries, and kwok then served none of its 100 lines."""
    logs = podlogs.PodLogs(api=None, out=tmp_path, workers=1)
    steps = []

    def logs_object(pod, entries):
        if clock.now < 30:
            raise httpx.ConnectError("connection refused")
        steps.append(("Logs", [e["containers"] for e in entries]))

    monkeypatch.setattr(logs, "_write_logs_object", logs_object)
    monkeypatch.setattr(logs, "_annotate", lambda ns, name: steps.append(("ready", name)))
    logs._set_up(POD)
    assert steps == [("Logs", [["main"]]), ("ready", "p")]
    assert (tmp_path / "ns" / "p-01234567" / "main.log").read_text().endswith(" stdout F hi\n")


def test_a_refusal_no_retry_can_change_ends_the_tries_at_once(tmp_path, monkeypatch, clock):
    """A pod whose namespace is being deleted would otherwise hold one of the set-up workers
    for the whole PATIENCE_S; the pod is still released."""
    logs = podlogs.PodLogs(api=None, out=tmp_path, workers=1)
    tries, steps = [], []

    def logs_object(pod, entries):
        tries.append(clock.now)
        raise kubeapi.ApiError(403, 'logs "p" is forbidden: unable to create new content in namespace ns '
                                    'because it is being terminated', "POST logs")

    monkeypatch.setattr(logs, "_write_logs_object", logs_object)
    monkeypatch.setattr(logs, "_annotate", lambda ns, name: steps.append(("ready", name)))
    logs._set_up(POD)
    assert tries == [0.0] and steps == [("ready", "p")]


@pytest.mark.parametrize("status", [404, 403, 429])
def test_refusals_a_restarting_apiserver_gives_are_tried_again(tmp_path, monkeypatch, clock, status):
    logs = podlogs.PodLogs(api=None, out=tmp_path, workers=1)
    steps = []

    def logs_object(pod, entries):
        if clock.now < 10:
            raise kubeapi.ApiError(status, "the server could not find the requested resource", "POST logs")
        steps.append("Logs")

    monkeypatch.setattr(logs, "_write_logs_object", logs_object)
    monkeypatch.setattr(logs, "_annotate", lambda ns, name: steps.append("ready"))
    logs._set_up(POD)
    assert steps == ["Logs", "ready"]
