"""The demand signal: WAITING processes this executor could take, polled from the fake Colonies
at a bounded rate; a failed poll keeps the last count (marked stale) and harms nothing."""

from __future__ import annotations

import pytest

from colonies_operator.colonies import errors
from colonies_operator.colonies.models import Process, ProcessState
from colonies_operator.runtime import demand
from colonies_operator.runtime.demand import Demand, Waiting
from tests.fakes import ManualClock
from tests.unit.runtime_harness import COLONY, eventually, running

UNREACHABLE = errors.ColoniesUnreachable("fake", 1, 0.0, "refused")


def process(waitforparents: bool = False, **conditions) -> Process:
    return Process.from_json({"processid": "p" * 64, "state": 0, "waitforparents": waitforparents,
                              "spec": {"conditions": {"executortype": "t", **conditions}}})


@pytest.mark.parametrize("candidate, takes", [
    (process(), True),
    (process(executornames=["me"]), True),
    (process(executornames=["other", "me"]), True),
    (process(executornames=["*"]), True),
    (process(executornames=["other"]), False),
    (process(locationname="Lab-1"), True),  # the server compares locations case-insensitively
    (process(locationname="lab-2"), False),
    (process(waitforparents=True), False),  # a workflow child whose parents have not ended
])
def test_a_waiting_process_counts_when_colonies_would_assign_it_to_this_executor(candidate, takes):
    assert demand.could_take(candidate, "me", "lab-1") is takes


def poller(h, **kwargs) -> Demand:
    config = h.runtime.config
    return Demand(h.runtime.me, COLONY, config.executor_type, config.executor_name, config.location_name, **kwargs)


async def test_the_count_is_the_waiting_processes_of_our_type_that_name_us_or_nobody():
    async with running(waitingPollSeconds=0, paused=True) as h:
        for _ in range(3):
            await h.submit()
        await h.submit(conditions={"executornames": [h.runtime.config.executor_name]})
        await h.submit(conditions={"executornames": ["someone-else"]})
        await h.submit(conditions={"executortype": "another-type"})
        gauge = poller(h)
        await gauge.poll_once()
        assert gauge.waiting == Waiting(count=4, capped=False, stale=False)


async def test_a_full_page_from_the_server_is_marked_capped():
    async with running(waitingPollSeconds=0, paused=True) as h:
        for _ in range(demand.PAGE + 5):
            await h.submit()
        gauge = poller(h)
        await gauge.poll_once()
        assert gauge.waiting == Waiting(count=demand.PAGE, capped=True, stale=False)


class Stop(Exception):
    pass


def fake_sleep(clock: ManualClock, until: float):
    """Sleeping moves the manual clock; the run stops once it passes `until` seconds."""
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if clock.now > until:
            raise Stop
    return sleep


@pytest.mark.parametrize("asked, polls", [(10.0, 7), (2.0, 31), (0.1, 31)])  # 60 s; never more often than 2 s
async def test_polls_are_at_most_one_per_interval_and_never_more_often_than_the_floor(asked, polls):
    async with running(waitingPollSeconds=0, paused=True) as h:
        clock = ManualClock(start=0.0)
        gauge = poller(h, interval=asked, sleep=fake_sleep(clock, until=60.0))
        before = h.server.calls["get_processes"]
        with pytest.raises(Stop):
            await gauge.run()
        assert gauge.polls == polls
        assert h.server.calls["get_processes"] - before == polls


async def test_a_failed_poll_keeps_the_last_count_marked_stale_until_a_poll_answers_again():
    async with running(waitingPollSeconds=0, paused=True) as h:
        await h.submit()
        changes = []
        gauge = poller(h, on_change=lambda: changes.append(gauge.waiting))
        await gauge.poll_once()
        h.server.fail_next("getprocessesmsg", UNREACHABLE)
        await gauge.poll_once()
        assert gauge.waiting == Waiting(count=1, capped=False, stale=True)
        h.server.fail_next("getprocessesmsg", ValueError("a reply we cannot read"))
        await gauge.poll_once()  # any error: the poller never raises
        assert gauge.waiting == Waiting(count=1, capped=False, stale=True)
        await h.submit()
        await gauge.poll_once()
        assert gauge.waiting == Waiting(count=2, capped=False, stale=False)
        assert changes == [Waiting(1, False, False), Waiting(1, False, True), Waiting(2, False, False)]


async def test_before_any_poll_answers_there_is_no_count_at_all():
    async with running(waitingPollSeconds=0, paused=True) as h:
        gauge = poller(h)
        h.server.fail_next("getprocessesmsg", UNREACHABLE)
        await gauge.poll_once()
        assert gauge.waiting is None


async def test_the_executor_polls_at_start_and_runs_processes_while_its_polls_fail():
    async with running(waitingPollSeconds=2) as h:
        await eventually(lambda: h.runtime.demand.waiting == Waiting(0, False, False), "the first poll")
        h.server.fail_next("getprocessesmsg", UNREACHABLE, times=1000)  # the fencing poll's too
        await eventually(lambda: h.runtime.demand.waiting == Waiting(0, False, True), "a failed poll", timeout=5)
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.succeed(job)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS


async def test_an_interval_of_zero_polls_nothing_and_turning_it_off_forgets_the_count():
    async with running(waitingPollSeconds=0, paused=True) as h:
        clock = ManualClock(start=0.0)
        gauge = poller(h, interval=0, sleep=fake_sleep(clock, until=60.0))
        with pytest.raises(Stop):
            await gauge.run()
        assert gauge.polls == 0 and gauge.waiting is None
        gauge.set_interval(10)
        await gauge.poll_once()
        assert gauge.waiting == Waiting(0, False, False)
        gauge.set_interval(0)
        assert gauge.waiting is None
