"""A process Colonies hands over before its env is stored (v1.9.12 stores the env after the
process row) still runs with its env: it is read again before its Job is built."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from colonies_operator.colonies.models import FunctionSpec, Process, ProcessState
from colonies_operator.runtime import settling
from tests.unit.runtime_harness import eventually, for_a_while, running


def env_of(job: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


async def test_a_process_assigned_before_its_env_was_stored_runs_with_its_env():
    async with running() as h:
        h.server.env_lands_late = True
        process = await h.submit(env={"GREETING": "hello from the env"})
        await eventually(lambda: h.state(process.processid) is ProcessState.RUNNING, "the process to be assigned")
        h.server.land_env()  # the submission's second statement lands after the assign
        job = (await eventually(lambda: h.jobs_of(process.processid), "its Job"))[0]
        assert env_of(job)["GREETING"] == "hello from the env"
        assert h.server.calls["get_process"] >= 1


async def test_a_process_that_came_with_its_env_is_not_read_again():
    async with running() as h:
        process = await h.submit(env={"GREETING": "hi"})
        job = (await eventually(lambda: h.jobs_of(process.processid), "its Job"))[0]
        assert env_of(job)["GREETING"] == "hi"
        assert h.server.calls["get_process"] == 0


async def test_a_process_without_env_is_read_once_more_and_runs_as_submitted():
    async with running() as h:
        process = await h.submit()
        job = (await eventually(lambda: h.jobs_of(process.processid), "its Job"))[0]
        assert set(env_of(job)) == {"COLONIES_PROCESS_ID"}
        assert h.server.calls["get_process"] == 1


async def test_an_env_that_arrives_invalid_fails_the_process_naming_the_field():
    async with running() as h:
        h.server.env_lands_late = True
        process = await h.submit(env={"COLONIES_PROCESS_ID": "mine"})
        await eventually(lambda: h.state(process.processid) is ProcessState.RUNNING, "the process to be assigned")
        h.server.land_env()
        done = await h.ended(process.processid)
        assert done.state is ProcessState.FAILED
        assert "env.COLONIES_PROCESS_ID" in done.errors[0]
        await for_a_while(0.3)
        assert h.jobs_of(process.processid) == []


def process(submitted: datetime, started: datetime, env: dict | None = None) -> Process:
    raw = {"funcname": "execute", "env": env or {}}
    return Process(processid="a" * 64, state=ProcessState.RUNNING, spec=FunctionSpec(raw=raw), submissiontime=submitted, starttime=started)


T0 = datetime(2026, 11, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize("gap, since, expected", [
    (0.004, 0.0, 0.496),   # assigned 4 ms after its submission: wait until 0.5 s after it
    (0.004, 0.2, 0.296),   # part of that already passed since the assign
    (0.004, 0.9, 0.0),     # all of it: read again at once
    (0.5, 0.0, None),      # assigned later than the settle: the env was stored by then
    (30.0, 0.0, None),
    (-1.0, 0.0, None),     # clocks that disagree: nothing to conclude
])
def test_when_a_process_without_env_is_read_again(gap, since, expected):
    p = process(T0, T0 + timedelta(seconds=gap))
    wait = settling.wait_before_second_look(p, 0.5, since)
    assert wait == (None if expected is None else pytest.approx(expected))


def test_a_process_with_env_or_a_settle_of_zero_is_never_read_again():
    assert settling.wait_before_second_look(process(T0, T0, {"A": "1"}), 0.5, 0.0) is None
    assert settling.wait_before_second_look(process(T0, T0), 0.0, 0.0) is None
