"""An executor identity's life against the in-memory peers: registering without evicting
anyone, adopting after a restart, orphans, draining, and removal with work in flight."""

from __future__ import annotations

import asyncio

import pytest

from colonies_operator.colonies import errors
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import ExecutorState, ProcessState
from colonies_operator.runtime.registration import NameConflict
from tests.fakes.colonies import FakeColoniesServer
from tests.fakes.kube import FakeKube
from tests.unit.runtime_harness import eventually, harness, restarted, running


async def test_a_name_held_by_another_live_executor_is_a_name_conflict_and_the_holder_stays():
    server = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05)
    async with running(server=server, executorName="shared") as first:
        holder = first.runtime.executor_id
        colony_key = Key(first.owner.key.private_hex)
        async with harness(server=server, colony_key=colony_key, executorName="shared") as second:
            with pytest.raises(NameConflict, match=holder):
                await second.runtime.run()
        executor = server.executors[("dev", "shared")]
        assert executor.id == holder and executor.state == ExecutorState.APPROVED


async def test_a_removed_executor_registers_again_but_not_over_a_new_holder_of_its_name():
    server = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05)
    async with harness(server=server, executorName="shared") as h:
        task = asyncio.create_task(h.runtime.run())
        await eventually(lambda: h.runtime.health.assigning, "the runtime to assign")
        await h.owner.remove_executor("dev", "shared")
        newcomer = Key.generate()
        server.add_executor("dev", newcomer, "shared-2", h.executor_type)  # someone else, another name
        await eventually(lambda: server.executors[("dev", "shared")].state == ExecutorState.APPROVED,
                         "our executor to be registered again")
        assert server.executors[("dev", "shared")].id == h.runtime.executor_id
        # now the name goes to someone else while we are removed: we must not take it back
        await h.owner.remove_executor("dev", "shared")
        await h.owner.add_executor("dev", newcomer.id, "shared", h.executor_type)
        with pytest.raises(NameConflict):
            await asyncio.wait_for(task, 15)
        assert server.executors[("dev", "shared")].id == newcomer.id


async def test_jobs_are_adopted_by_executor_id_and_a_closed_process_is_only_marked():
    server, kube = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05), FakeKube()
    key = Key.generate()
    async with running(server=server, kube=kube, executor_key=key) as first:
        ran = await first.submit()
        closed = await first.submit()
        ran_job, closed_job = await first.job_of(ran.processid), await first.job_of(closed.processid)
        kube.start(ran_job)
        kube.start(closed_job)
        kube.log(ran_job, ["one"])
        await eventually(lambda: server.logs, "the first line to be shipped")
    # the operator is gone; one Job ended and its report landed just before the crash, its mark did not
    kube.succeed(closed_job)
    await first.runtime.me.close_successful(closed.processid, [])
    async with restarted(first, key) as again:
        await eventually(lambda: ran.processid in again.runtime.running, "the running one to be adopted")
        assert closed.processid not in again.runtime.supervisors
        kube.log(ran_job, ["two"])
        kube.succeed(ran_job)
        assert (await again.ended(ran.processid)).state is ProcessState.SUCCESS
        logs = "".join(e.message for e in await again.user.get_all_logs("dev", ran.processid))
        assert logs == "one\ntwo\n"
        annotations = again.jobs_of(closed.processid)[0]["metadata"]["annotations"]
        assert annotations.get("colonyos.io/reported") == "success"  # marked: never reported twice


async def test_a_job_whose_pods_ended_it_before_the_crash_is_marked_even_before_the_job_controller_says_complete():
    server, kube = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05), FakeKube()
    key = Key.generate()
    async with running(server=server, kube=kube, executor_key=key) as first:
        closed = await first.submit()
        job = await first.job_of(closed.processid)
        kube.start(job)
    # the pod succeeded and the report landed just before the crash; the Job controller is behind
    kube.jobs.pause()
    kube.succeed(job)
    await first.runtime.me.close_successful(closed.processid, [])
    async with restarted(first, key) as again:
        await eventually(lambda: (again.jobs_of(closed.processid)[0]["metadata"].get("annotations") or {})
                         .get("colonyos.io/reported") == "success", "the Job to be marked")
        assert closed.processid not in again.runtime.supervisors


async def test_an_adopted_process_whose_shipped_lines_cannot_be_read_yet_waits_for_colonies_and_is_not_failed():
    # A restart of an operator with thousands of processes in flight: their resume reads queued
    # for the Colonies pool past its timeout, and each was failed as an operator bug.
    server, kube = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05), FakeKube()
    key = Key.generate()
    async with running(server=server, kube=kube, executor_key=key) as first:
        ran = await first.submit()
        job = await first.job_of(ran.processid)
        kube.start(job)
        kube.log(job, ["one"])
        await eventually(lambda: server.logs, "the first line to be shipped")
    server.fail_next("get_logs", errors.ColoniesUnreachable("http://colonies.test", 1, 30.0, "PoolTimeout"), times=2)
    async with restarted(first, key) as again:
        await eventually(lambda: server.calls["get_logs"] >= 3, "the resume read to land at its third try")
        kube.log(job, ["two"])
        kube.succeed(job)
        assert (await again.ended(ran.processid)).state is ProcessState.SUCCESS
        logs = "".join(e.message for e in await again.user.get_all_logs("dev", ran.processid))
        assert logs == "one\ntwo\n"


async def test_an_orphan_found_at_start_is_run_and_one_that_had_started_is_failed():
    server, kube = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05), FakeKube()
    key = Key.generate()
    async with harness(server=server, kube=kube, executor_key=key) as h:
        fresh, started = await h.submit(), await h.submit()
        await h.runtime.registration.register()
        for _ in range(2):  # assigned to us, and then the operator crashed before creating any Job
            await h.runtime.me.assign("dev", -1)
        await h.runtime.me.add_log(started.processid, "it had begun\n")
        task = asyncio.create_task(h.runtime.run())
        try:
            job = await h.job_of(fresh.processid)
            kube.start(job)
            kube.succeed(job)
            assert (await h.ended(fresh.processid)).state is ProcessState.SUCCESS
            done = await h.ended(started.processid)
            assert done.state is ProcessState.FAILED and done.errors[0].startswith("Orphaned(")
            assert h.job_name(started.processid) is None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_draining_takes_nothing_new_and_ends_when_everything_in_flight_has_ended():
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        drained = asyncio.create_task(h.runtime.drain())
        # in_flight may already be 0 before drain() first runs (between two assigns): wait for both
        await eventually(lambda: h.runtime.assigner.draining and h.runtime.assigner.in_flight == 0,
                         "the drain to begin and the assign poll in flight to end")
        later = await h.submit()
        await asyncio.sleep(0.3)
        assert h.state(later.processid) is ProcessState.WAITING and not drained.done()
        h.kube.start(job)
        h.kube.succeed(job)
        await asyncio.wait_for(drained, 10)
        assert h.state(process.processid) is ProcessState.SUCCESS
        assert h.state(later.processid) is ProcessState.WAITING


async def test_removal_fails_everything_in_flight_deletes_the_jobs_and_unregisters():
    async with harness(capacity={"cpu": "1000m", "memory": "16Gi"}) as h:
        task = asyncio.create_task(h.runtime.run())
        await eventually(lambda: h.runtime.health.assigning, "the runtime to assign")
        runs = [await h.submit(conditions={"cpu": "400m"}) for _ in range(2)]
        for p in runs:
            h.kube.start(await h.job_of(p.processid))
        # Colonies matches 200m per container against the 200m free and assigns it; its 400m wait
        waiting = await h.submit(conditions={"cpu": "200m", "nodes": 2})
        await eventually(lambda: h.state(waiting.processid) is ProcessState.RUNNING, "the third to be assigned")
        await h.runtime.remove("ExecutorRemoved: gone", task)
        for p in [*runs, waiting]:
            done = await h.user.get_process(p.processid)
            assert done.state is ProcessState.FAILED and done.errors == ("ExecutorRemoved: gone",)
        assert not h.kube.objects["Job"] or all(j["metadata"].get("deletionTimestamp")
                                                for j in h.kube.objects["Job"].values())
        assert h.server.executors[("dev", h.runtime.config.executor_name)].state == ExecutorState.UNREGISTERED


async def test_ready_means_assigning_the_loop_starts_only_after_the_watch_listed():
    kube = FakeKube()
    kube.fail_next("list_jobs", RuntimeError("apiserver away"), times=3)
    async with harness(kube=kube) as h:
        task = asyncio.create_task(h.runtime.run())
        await eventually(lambda: kube.calls["list_jobs"] >= 2, "the watch to try listing")
        assert not h.runtime.health.assigning
        await eventually(lambda: h.runtime.health.assigning, "the loop, once the watch could list", timeout=15)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_key_edited_while_the_operator_was_down_strands_nothing():
    server, kube = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05), FakeKube()
    async with running(server=server, kube=kube, executorName="edited") as before:
        colony_key = Key(before.owner.key.private_hex)
        process = await before.submit()
        job = await before.job_of(process.processid)
        kube.start(job)
        old_id = before.runtime.executor_id
    # the operator is down; the resource gets a new executor key; the operator starts again
    async with running(server=server, kube=kube, colony_key=colony_key, executorName="edited",
                       executorType=before.executor_type) as after:
        assert after.runtime.executor_id != old_id
        # the old registration is taken back (its process re-queued), the old Job stopped, and
        # the process runs again under the new identity
        await eventually(lambda: [j for j in after.jobs_of(process.processid)
                                  if j["metadata"]["annotations"]["colonyos.io/executor-id"] == after.runtime.executor_id],
                         "a Job under the new identity")
        new_job = [j for j in after.jobs_of(process.processid) if not j["metadata"].get("deletionTimestamp")][-1]
        kube.start(new_job["metadata"]["name"])
        kube.succeed(new_job["metadata"]["name"])
        done = await after.ended(process.processid)
        assert done.state is ProcessState.SUCCESS and done.assignedexecutorid == after.runtime.executor_id


async def test_log_lines_whose_answer_was_lost_after_they_were_stored_are_in_colonies_once():
    """The soak stopped the operator for 30 s with an addlogmsg in flight: the server stored the
    lines, the operator woke to a read timeout and sent them again."""
    server, kube = FakeColoniesServer(timeout_scale=0.05), FakeKube()
    async with running(server=server, kube=kube) as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        kube.start(job)
        server.lose_next_reply("add_log")
        kube.log(job, ["one", "two"])
        await eventually(lambda: server.logs, "the first batch to be stored")
        kube.log(job, ["three"])
        kube.succeed(job)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS
        logs = "".join(e.message for e in await h.user.get_all_logs("dev", process.processid))
        assert logs == "one\ntwo\nthree\n"
