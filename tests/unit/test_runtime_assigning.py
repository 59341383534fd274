"""The assign loop against the in-memory peers: it never stops polling or heartbeating, takes
nothing while paused, offers freed room at once, and rides out a colony paused on the server."""

from __future__ import annotations

import asyncio

from colonies_operator.colonies.models import ProcessState
from tests.unit.runtime_harness import eventually, for_a_while, running


async def test_a_process_runs_to_success_with_its_logs_and_output():
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.log(job, ["hello", "world"])
        h.kube.succeed(job, termination_message='{"answer": 42}')
        done = await h.ended(process.processid)
        assert done.state is ProcessState.SUCCESS
        assert done.output == ('{"answer": 42}',)
        logs = await h.user.get_all_logs("dev", process.processid)
        assert "".join(e.message for e in logs) == "hello\nworld\n"


async def test_a_process_waiting_for_room_leaves_the_loop_assigning_and_heartbeating():
    async with running(capacity={"cpu": "2000m", "memory": "16Gi"}) as h:
        first = await h.submit(conditions={"cpu": "750m"})
        h.kube.start(await h.job_of(first.processid))
        wide = await h.submit(conditions={"cpu": "750m", "nodes": 2})  # 1,500m in all; 1,250m free
        await eventually(lambda: h.state(wide.processid) is ProcessState.RUNNING, "the wide one to be assigned")
        small = await h.submit(conditions={"cpu": "100m"})
        job = await h.job_of(small.processid)  # it fits: its Job exists while the wide one waits
        assert h.job_name(wide.processid) is None
        heard = h.server.lastheard(h.runtime.config.executor_name)
        loop_went_round = h.runtime.health.last_loop_time
        # the assign that was heard may have left before the time read above: wait for both
        await eventually(lambda: h.server.lastheard(h.runtime.config.executor_name) > heard
                         and h.runtime.health.last_loop_time > loop_went_round, "another assign and loop round")
        h.kube.start(job)
        h.kube.succeed(job)
        assert (await h.ended(small.processid)).state is ProcessState.SUCCESS
        h.kube.succeed(await h.job_of(first.processid))
        wide_job = await h.job_of(wide.processid)  # room at last
        h.kube.start(wide_job)
        h.kube.succeed(wide_job)
        assert (await h.ended(wide.processid)).state is ProcessState.SUCCESS


async def test_a_paused_executor_heartbeats_with_an_assign_that_takes_nothing():
    async with running(paused=True) as h:
        bare = h.submit_spec()
        for key in ("cpu", "mem"):  # no conditions: any assign with room 0 would match it
            bare["conditions"].pop(key)
        process = await h.user.submit(bare)
        name = h.runtime.config.executor_name
        for _ in range(3):  # heartbeatSeconds 1: three heartbeats
            heard = h.server.lastheard(name)
            await eventually(lambda heard=heard: h.server.lastheard(name) > heard, "a heartbeat", timeout=5)
        assert h.state(process.processid) is ProcessState.WAITING
        assert h.runtime.health.paused


async def test_a_freed_slot_is_offered_by_a_new_assign_without_waiting_for_the_long_poll():
    async with running(capacity={"cpu": "200m", "memory": "16Gi"}, assignTimeoutSeconds=300) as h:
        first = await h.submit(conditions={"cpu": "200m"})
        job = await h.job_of(first.processid)
        # full: the loop only heartbeats now; the next long poll would advertise nothing
        waiting = await h.submit(conditions={"cpu": "150m"})
        await for_a_while(0.3)
        assert h.state(waiting.processid) is ProcessState.WAITING
        h.kube.start(job)
        h.kube.succeed(job)
        await h.job_of(waiting.processid)  # offered as soon as the room was freed


async def test_room_freed_during_a_long_poll_restarts_it_with_all_the_room():
    async with running(capacity={"cpu": "300m", "memory": "16Gi"}, assignTimeoutSeconds=300) as h:
        first = await h.submit(conditions={"cpu": "200m"})
        job = await h.job_of(first.processid)
        await for_a_while(0.2)  # a long poll now advertises the 100m left, for 300 s (× the fake's scale)
        h.kube.start(job)
        h.kube.succeed(job)
        await eventually(lambda: h.state(first.processid) is ProcessState.SUCCESS, "the first to end")
        bigger = await h.submit(conditions={"cpu": "250m"})  # fits only in the room freed meanwhile
        await h.job_of(bigger.processid)


async def test_a_colony_paused_on_the_server_keeps_the_loop_running_and_says_so():
    async with running() as h:
        h.server.pause_assignments("dev")
        await eventually(lambda: h.runtime.health.colony_paused, "the pause to be seen", timeout=15)
        process = await h.submit()
        name = h.runtime.config.executor_name
        heard = h.server.lastheard(name)
        await eventually(lambda: h.server.lastheard(name) > heard, "assigns to go on", timeout=15)
        assert h.state(process.processid) is ProcessState.WAITING
        task_alive = h.runtime.health.assigning
        h.server.resume_assignments("dev")
        await h.job_of(process.processid)
        assert task_alive and not h.runtime.health.colony_paused


async def test_a_lost_assign_reply_leaves_an_orphan_that_the_poll_finds_and_runs(monkeypatch):
    from colonies_operator.runtime import fencing
    monkeypatch.setattr(fencing, "POLL_SECONDS", 0.2)
    async with running() as h:
        h.server.lose_next_assign_reply()
        process = await h.submit()
        await eventually(lambda: h.state(process.processid) is ProcessState.RUNNING, "the lost assignment")
        job = await h.job_of(process.processid)  # found as an orphan, and run
        h.kube.start(job)
        h.kube.succeed(job)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS


async def test_the_loop_waits_for_a_create_slot_rather_than_assign_faster_than_jobs_are_created():
    from colonies_operator.runtime import assigning
    async with running(capacity={"cpu": "64", "memory": "64Gi", "maxConcurrentJobs": 200}) as h:
        h.kube.fail_next("create_job", asyncio.TimeoutError(), times=1000)  # the apiserver hangs up
        processes = [await h.submit() for _ in range(40)]
        await for_a_while(0.5)
        assigned = sum(h.state(p.processid) is ProcessState.RUNNING for p in processes)
        assert assigned <= assigning.CREATES_IN_FLIGHT


async def test_a_long_poll_with_room_for_the_largest_process_yet_is_not_restarted_when_a_job_ends():
    async with running(capacity={"cpu": "8", "memory": "16Gi"}, assignTimeoutSeconds=300) as h:
        first = await h.submit()
        job = await h.job_of(first.processid)
        await for_a_while(0.3)  # the long poll now advertises 7.9 cpu: room for any 100m process
        assigns = h.server.calls["assign"]
        h.kube.start(job)
        h.kube.succeed(job)
        await eventually(lambda: h.state(first.processid) is ProcessState.SUCCESS, "the first to end")
        await for_a_while(0.5)
        # restarting would only risk its answer (the server may assign as the connection closes)
        assert h.server.calls["assign"] == assigns
        second = await h.submit()
        await h.job_of(second.processid)  # the same long poll takes it


async def test_a_long_poll_ended_early_makes_fencing_look_for_a_lost_answer_within_seconds(monkeypatch):
    from colonies_operator.runtime import fencing
    looks = []
    async with running(capacity={"cpu": "300m", "memory": "16Gi"}, assignTimeoutSeconds=300) as h:
        original = h.runtime.fencing.look_soon
        monkeypatch.setattr(h.runtime.fencing, "look_soon", lambda: (looks.append(1), original()))
        first = await h.submit(conditions={"cpu": "200m"})
        job = await h.job_of(first.processid)
        await for_a_while(0.2)  # the long poll advertises 100m: less than the 200m process
        h.kube.start(job)
        h.kube.succeed(job)
        await eventually(lambda: looks, "the restarted long poll to ask for a look")
        # an answer lost that way: the process is RUNNING on us and nobody runs it
        h.server.lose_next_assign_reply()
        lost = await h.submit(conditions={"cpu": "100m"})
        await eventually(lambda: h.state(lost.processid) is ProcessState.RUNNING, "the lost assignment")
        h.runtime.fencing.look_soon()
        assert fencing.POLL_SECONDS == 10.0
        await eventually(lambda: h.job_name(lost.processid), "the orphan to run", timeout=fencing.SOON_SECONDS * 3.5)
