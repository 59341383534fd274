"""A supervisor against the in-memory peers always ends with its process closed or fenced:
refused log lines, a close refused after a cancel, an unexpected error, refused pods,
re-queued assignments and Jobs that never appear."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import aiohttp
import pytest

from colonies_operator.colonies.models import ProcessState
from colonies_operator.jobs import builder
from colonies_operator.runtime import supervisor
from tests.unit.runtime_harness import eventually, running


async def test_a_nul_byte_is_replaced_and_a_line_the_server_still_refuses_becomes_a_marker():
    async with running() as h:
        h.server.refuse_log = lambda message: "\x00" in message or "forbidden words" in message
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.log(job, ["before", "nul\x00byte", "some forbidden words", "after"])
        h.kube.succeed(job)
        done = await h.ended(process.processid)
        assert done.state is ProcessState.SUCCESS
        logs = "".join(e.message for e in await h.user.get_all_logs("dev", process.processid)).split("\n")
        assert logs[:2] == ["before", "nul\ufffdbyte"]
        assert logs[2].startswith("[colonies-operator: Colonies refused this log line")
        assert logs[3:] == ["after", ""]


async def test_a_process_whose_pods_all_succeeded_is_closed_before_the_job_controller_marks_the_job_complete():
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.log(job, ["done"])
        h.kube.jobs.pause()
        h.kube.succeed(job, "42")
        done = await h.ended(process.processid)
        assert done.state is ProcessState.SUCCESS and done.output == (42,)
        assert not h.kube.jobs.find(job).get("status", {}).get("conditions")
        assert "".join(e.message for e in await h.user.get_all_logs("dev", process.processid)) == "done\n"
        h.kube.jobs.resume()
        await eventually(lambda: any(c["type"] == "Complete" for c in h.kube.jobs.find(job)["status"]["conditions"]),
                         "the Job to complete")


async def test_a_400_on_the_successful_close_after_a_cancel_is_fencing(monkeypatch):
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        original = h.runtime.me.close_successful

        async def cancelled_first(pid, output=None):  # the user cancels just before the close lands
            await h.user.cancel(pid)
            await original(pid, output)

        monkeypatch.setattr(h.runtime.me, "close_successful", cancelled_first)
        h.kube.succeed(job)
        await eventually(lambda: h.runtime.stats.fenced == 1, "the supervisor to end as fenced")
        assert h.state(process.processid) is ProcessState.CANCELLED
        assert h.job_name(process.processid) is None  # its Job deleted


async def test_an_unexpected_error_fails_the_process_with_internal_error_and_stops_its_job(monkeypatch):
    def broken(pods):
        raise KeyError("surprise")

    monkeypatch.setattr(supervisor.diagnosis, "termination_output", broken)
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.succeed(job)
        done = await h.ended(process.processid)
        assert done.state is ProcessState.FAILED
        assert done.errors[0].startswith("InternalError(KeyError: 'surprise')")


async def test_pods_the_job_controller_cannot_create_fail_with_its_own_words():
    from tests.fakes.kube import FakeKube
    async with running(kube=FakeKube(auto_pods=False)) as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.refuse_pods(job, 'Error creating: pods "x" is forbidden: exceeded quota: q, requested: pods=1')
        h.kube.create_pods(job)
        done = await h.ended(process.processid)
        assert done.state is ProcessState.FAILED
        assert done.errors[0].startswith('PodCreateRefused(Error creating: pods "x" is forbidden: exceeded quota')
        await eventually(lambda: h.job_name(process.processid) is None, "the Job to be deleted")


async def test_a_requeued_process_gets_a_fresh_job_only_once_the_old_one_and_its_pods_are_gone():
    from tests.fakes.kube import FakeKube
    async with running(kube=FakeKube(termination_grace=True)) as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        old_uid = h.jobs_of(process.processid)[0]["metadata"]["uid"]
        # The executor is removed in Colonies: the process is re-queued with its retries count
        # unchanged, and (once registered again) given back to us under the same Job name.
        await h.owner.remove_executor("dev", h.runtime.config.executor_name)
        await eventually(lambda: h.kube.kubelet.terminating(), "the old pod to be stopped", timeout=15)
        assert [j["metadata"]["uid"] for j in h.jobs_of(process.processid)] == [old_uid]  # not replaced yet
        h.kube.kubelet.finish_termination()  # the kubelet lets the old pod go
        await eventually(lambda: [j["metadata"]["uid"] for j in h.jobs_of(process.processid)] not in ([], [old_uid]),
                         "a fresh Job", timeout=15)
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.succeed(job)
        done = await h.ended(process.processid)
        assert done.state is ProcessState.SUCCESS and done.retries == 0


async def test_a_job_that_never_appears_fails_the_process_as_deleted(monkeypatch):
    monkeypatch.setattr(supervisor, "JOB_APPEAR_SECONDS", 0.2)
    monkeypatch.setattr(supervisor, "RECHECK_SECONDS", 0.2)
    async with running() as h:
        original = h.kube.create_job

        async def created_then_lost(namespace, job):  # created, then deleted before any watch event
            created = await original(namespace, job)
            await h.kube.delete_job(namespace, job["metadata"]["name"], propagation="Background")
            return created

        h.kube.create_job = created_then_lost
        process = await h.submit()
        done = await h.ended(process.processid)
        assert done.state is ProcessState.FAILED
        assert done.errors[0].startswith("JobDeleted")


async def test_the_job_is_marked_reported_and_only_then_given_its_ttl():
    async with running(jobTemplate={"ttlSecondsAfterFinished": 0}) as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        created = h.jobs_of(process.processid)[0]
        assert "ttlSecondsAfterFinished" not in created["spec"]
        h.kube.start(job)
        h.kube.succeed(job)
        await h.ended(process.processid)
        # reported, then removed by its TTL of 0
        await eventually(lambda: h.job_name(process.processid) is None, "the TTL to remove the reported Job")
        patches = [c for c in h.kube.counter.counts if c[0] == "patch" and c[1] == "jobs"]
        assert patches


async def test_each_assignment_of_a_process_is_written_on_its_job():
    async with running() as h:
        process = await h.submit()
        await h.job_of(process.processid)
        running_process = await h.user.get_process(process.processid)
        stamp = h.jobs_of(process.processid)[0]["metadata"]["annotations"][builder.ASSIGNED_AT_ANNOTATION]
        from colonies_operator.colonies.models import parse_time, same_instant
        assert same_instant(parse_time(stamp), running_process.starttime)


async def test_a_supervisor_cancelled_in_the_turn_its_job_changes_still_stops():
    # Python 3.11's asyncio.wait_for swallows a cancel that meets the end of its wait: seen as
    # five of 1,000 supervisors supervising on through an executor's removal (135 s, not 10 s).
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        await eventually(lambda: h.state(process.processid) is ProcessState.RUNNING, "the process to run")
        for _ in range(20):  # let the supervisor settle into its wait for the Job's next change
            await asyncio.sleep(0)
        task = h.runtime.supervisors[process.processid]
        h.runtime.running[process.processid]._event.set()  # the watch wakes it ...
        task.cancel()                                        # ... in the turn it is cancelled
        for _ in range(20):
            await asyncio.sleep(0)
        assert task.cancelled()


async def test_an_apiserver_that_drops_the_reported_mark_leaves_the_success_and_the_mark_lands_at_the_next_try():
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.fail_next("patch_job", aiohttp.ServerDisconnectedError(), times=2)  # an apiserver restart
        h.kube.succeed(job)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS
        await eventually(lambda: h.runtime.stats.succeeded == 1, "the supervisor to end as succeeded")
        annotations = h.jobs_of(process.processid)[0]["metadata"].get("annotations") or {}
        assert annotations.get("colonyos.io/reported") == "success"


async def test_a_fenced_jobs_delete_that_meets_an_apiserver_restart_is_tried_again_until_the_job_is_gone():
    async with running() as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.fail_next("delete_job", aiohttp.ClientConnectionError("Cannot connect to host"), times=2)
        await h.user.cancel(process.processid)
        await eventually(lambda: h.job_name(process.processid) is None, "the cancelled process's Job to be deleted")
        await eventually(lambda: h.runtime.stats.fenced == 1, "the supervisor to end as fenced")


async def succeeds(h, process, job) -> None:
    h.kube.succeed(job)
    await h.ended(process.processid)


async def fails(h, process, job) -> None:
    h.kube.fail(job)
    await h.ended(process.processid)


async def is_cancelled(h, process, job) -> None:
    await h.user.cancel(process.processid)
    await eventually(lambda: h.runtime.stats.fenced == 1, "the supervisor to end as fenced")


async def job_deleted_by_hand(h, process, job) -> None:
    namespace = next(ns for ns, name in h.kube.objects["Job"] if name == job)
    await h.kube.delete_job(namespace, job)
    await h.ended(process.processid)


@pytest.mark.parametrize("end", [succeeds, fails, is_cancelled, job_deleted_by_hand])
async def test_a_supervisor_that_ended_is_freed_by_reference_counting_alone(monkeypatch, end):
    """The operator collects cycles rarely (runtime/shared.py `tune_gc`): a supervisor caught in
    a reference cycle lives on, with its process, shipper and follower, until a full collection,
    and the soak's RSS grew with them."""
    made: list[weakref.ref[Any]] = []
    init = supervisor.Supervisor.__init__

    def tracked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.extend(weakref.ref(o) for o in (self, self.shipper, self.follower, self.process))

    monkeypatch.setattr(supervisor.Supervisor, "__init__", tracked)
    gc.disable()
    try:
        async with running() as h:
            process = await h.submit()
            job = await h.job_of(process.processid)
            h.kube.start(job)
            h.kube.log(job, ["one", "two"])
            await end(h, process, job)
            await eventually(lambda: made and all(ref() is None for ref in made),
                             "the supervisor, its shipper, follower and process to be freed")
    finally:
        gc.enable()
