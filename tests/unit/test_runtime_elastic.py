"""capacity.elastic against the in-memory peers: with no node free, exactly `elastic` Jobs wait
for a node (never failed after pendingGraceSeconds), the rest of the queue stays WAITING in
Colonies, and each Job that gets a node lets one more in."""

from __future__ import annotations

import asyncio

import pytest

from colonies_operator.colonies.models import ProcessState
from colonies_operator.runtime.placement import Placement, job_placed
from tests.fakes.kube import FakeKube
from tests.unit.runtime_harness import eventually, for_a_while, harness, running

ELASTIC = {"cpu": "8", "memory": "16Gi", "elastic": 2, "elasticPendingSeconds": 600}


def pod(node: str = "", phase: str = "Pending") -> dict:
    return {"spec": {"nodeName": node} if node else {}, "status": {"phase": phase}}


@pytest.mark.parametrize("parallelism, pods, placed", [
    (None, [], False),                                  # the Job controller has not made its pod yet
    (None, [pod()], False),
    (None, [pod("n1")], True),
    (2, [pod("n1"), pod()], False),                     # an Indexed Job waits for all its pods
    (2, [pod("n1"), pod("n2")], True),
    (1, [pod(phase="Failed")], True),                   # finished: nothing left to place
])
def test_a_job_is_placed_once_every_pod_it_runs_at_once_has_a_node(parallelism, pods, placed):
    job = {"spec": {"parallelism": parallelism} if parallelism else {}}
    assert job_placed(job, pods) is placed


def test_without_elastic_there_is_no_bound_and_with_it_each_admitted_process_takes_a_slot():
    assert Placement(0).slots() is None
    woken = []
    placement = Placement(2, on_change=lambda: woken.append(1))
    a, b = object(), object()
    placement.admitted(a)
    placement.admitted(b)
    assert placement.slots() == 0
    placement.placed(a)
    placement.placed(a)  # twice (placed, then ended) frees one slot once
    assert placement.slots() == 1 and woken == [1]


def jobs(h) -> list[str]:
    return sorted(name for (_, name) in h.kube.objects["Job"])


async def test_with_no_node_free_exactly_elastic_jobs_wait_and_the_rest_stays_waiting_in_colonies():
    async with harness(kube=FakeKube(auto_schedule=False), capacity=ELASTIC) as h:
        processes = [await h.submit() for _ in range(5)]  # a backlog before the loop starts: a burst of assigns
        task = asyncio.create_task(h.runtime.run())
        try:
            await eventually(lambda: len(jobs(h)) == 2, "two Jobs")
            for name in jobs(h):
                h.kube.unschedulable(name)
            await for_a_while(3.0)  # pendingGraceSeconds 1, heartbeats every second: time to go wrong
            assert len(jobs(h)) == 2
            states = [h.state(p.processid) for p in processes]
            assert states.count(ProcessState.RUNNING) == 2 and states.count(ProcessState.WAITING) == 3
            assert h.runtime.placement.unplaced == 2

            h.kube.kubelet.schedule(jobs(h)[0])  # a node came: one more may wait
            await eventually(lambda: len(jobs(h)) == 3, "a third Job")
            await for_a_while(1.0)
            assert len(jobs(h)) == 3

            done = set()
            while len(done) < 5:  # nodes for everyone: every process runs to success
                for name in jobs(h):
                    if name not in done:
                        h.kube.kubelet.schedule(name)
                        h.kube.start(name)
                        h.kube.succeed(name)
                        done.add(name)
                if len(done) < 5:
                    await eventually(lambda: len(jobs(h)) > len(done), "the next Job")
            for p in processes:
                assert (await h.ended(p.processid)).state is ProcessState.SUCCESS
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_without_elastic_every_process_the_budget_allows_gets_a_job_at_once():
    async with running(kube=FakeKube(auto_schedule=False), capacity={"cpu": "8", "memory": "16Gi"}) as h:
        for _ in range(5):
            await h.submit()
        await eventually(lambda: len(jobs(h)) == 5, "five Jobs")


async def test_a_job_waiting_for_a_node_fails_as_unschedulable_only_after_elastic_pending_seconds():
    async with running(kube=FakeKube(auto_schedule=False), capacity={**ELASTIC, "elasticPendingSeconds": 3}) as h:
        process = await h.submit()
        name = await h.job_of(process.processid)
        h.kube.unschedulable(name)
        await for_a_while(1.5)  # past pendingGraceSeconds (1)
        assert h.state(process.processid) is ProcessState.RUNNING
        done = await h.ended(process.processid)
        assert done.state is ProcessState.FAILED and done.errors[0].startswith("Unschedulable(")
        # the supervisor frees its place as it ends, just after the failure reached Colonies
        await eventually(lambda: h.runtime.placement.unplaced == 0, "the ended process to free its place")
