"""Kueue admission (spec.kueue): the Jobs are handed to Kueue suspended, a Job Kueue has not
admitted is queued and holds none of the executor's capacity, and maxQueued bounds how many
wait. Kueue itself is played by the test: it admits a Job by resuming it, as Kueue does."""

from __future__ import annotations

from typing import Any

import pytest

from colonies_operator import config as cfg
from colonies_operator.colonies.models import ProcessState
from colonies_operator.jobs import builder, kueue
from colonies_operator.colonies.crypto import Key
from colonies_operator.jobs.resources import Resources
from colonies_operator.runtime.capacity import Capacity
from tests.fakes.colonies import FakeColoniesServer
from tests.fakes.kube import FakeKube
from tests.unit.runtime_harness import NAMESPACE, eventually, for_a_while, running
from tests.unit.test_builder import SETTINGS as JOB_SETTINGS, run_of

MINIMAL = {"colonyKeySecretRef": {"name": "colony-key"}, "server": {"host": "c"}, "colonyName": "dev"}
GIB = 2**30


def config(**section: Any) -> cfg.ExecutorConfig:
    return cfg.executor_config("jobs", "k8s", {**MINIMAL, "kueue": section}, cfg.OperatorSettings())


# --- the spec ---------------------------------------------------------------------------------

def test_without_spec_kueue_nothing_changes():
    assert cfg.executor_config("jobs", "k8s", MINIMAL, cfg.OperatorSettings()).kueue is None


def test_spec_kueue_names_the_queue_and_bounds_it_at_ten_by_default():
    assert config(queueName="colonies").kueue == kueue.KueueSettings("colonies", 10, ())


def test_a_priority_gets_the_class_with_the_highest_min_priority_at_or_below_it():
    settings = config(queueName="q", priorityClasses=[
        {"minPriority": 0, "name": "normal"}, {"minPriority": 100, "name": "urgent"},
        {"minPriority": -50, "name": "batch"}]).kueue
    assert [settings.priority_class(p) for p in (500, 100, 99, 0, -1, -50, -51)] == [
        "urgent", "urgent", "normal", "normal", "batch", "batch", ""]


@pytest.mark.parametrize("section, field", [
    ({}, "kueue.queueName"),
    ({"queueName": "Not_A_Name"}, "kueue.queueName"),
    ({"queueName": "q", "maxQueued": 0}, "kueue.maxQueued"),
    ({"queueName": "q", "maxQueued": "5"}, "kueue.maxQueued"),
    ({"queueName": "q", "priorityClasses": {"high": 1}}, "kueue.priorityClasses"),
    ({"queueName": "q", "priorityClasses": [{"minPriority": 1}]}, "kueue.priorityClasses[0].name"),
    ({"queueName": "q", "priorityClasses": [{"name": "a", "minPriority": 1.5}]}, "kueue.priorityClasses[0].minPriority"),
    ({"queueName": "q", "priorityClasses": [{"name": "a", "minPriority": 60000}]}, "kueue.priorityClasses[0].minPriority"),
    ({"queueName": "q", "priorityClasses": [{"name": "a", "minPriority": 1}, {"name": "b", "minPriority": 1}]},
     "kueue.priorityClasses[1].minPriority"),
])
def test_a_bad_kueue_section_is_a_config_error_naming_the_field(section, field):
    with pytest.raises(cfg.ConfigError) as info:
        config(**section)
    assert info.value.field == field and f"spec.{field}:" in str(info.value)


# --- the Job ----------------------------------------------------------------------------------

def kueue_settings(**overrides: Any) -> builder.JobSettings:
    section = kueue.KueueSettings("colonies", priority_classes=(kueue.PriorityClass(10, "urgent"),))
    return builder.JobSettings(**{**JOB_SETTINGS.__dict__, "kueue": section, **overrides})


def test_a_job_for_kueue_is_created_suspended_in_the_queue():
    job = builder.build_job(run_of(), kueue_settings())
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][kueue.QUEUE_LABEL] == "colonies"
    assert kueue.PRIORITY_CLASS_LABEL not in job["metadata"]["labels"]  # priority 0: below every class
    assert kueue.QUEUE_LABEL not in job["spec"]["template"]["metadata"]["labels"]  # Kueue reads the Job's
    assert kueue.queued(job)


def test_a_mapped_priority_becomes_the_workload_priority_class_label():
    job = builder.build_job(run_of(priority=25), kueue_settings())
    assert job["metadata"]["labels"][kueue.PRIORITY_CLASS_LABEL] == "urgent"


def test_without_kueue_the_job_is_neither_suspended_nor_queued():
    job = builder.build_job(run_of(priority=25), JOB_SETTINGS)
    assert "suspend" not in job["spec"] and not kueue.queued(job)
    assert not any(label.startswith("kueue.x-k8s.io/") for label in job["metadata"]["labels"])


def test_a_resumed_job_is_no_longer_queued():
    job = builder.build_job(run_of(), kueue_settings())
    job["spec"]["suspend"] = False
    assert not kueue.queued(job)


# --- capacity ---------------------------------------------------------------------------------

def test_newcomers_are_offered_only_the_free_places_of_the_queue():
    capacity = Capacity(Resources(8000, 16 * GIB, 0, 100))
    capacity.set_queue_limit(3)
    capacity.enqueue()
    capacity.enqueue()
    assert capacity.offered() == Resources(8000, 16 * GIB, 0, 1)  # the budget is untouched, one place left
    capacity.enqueue()
    assert capacity.offered().jobs == 0
    capacity.dequeue()
    assert capacity.offered().jobs == 1


# --- the runtime, with the test as Kueue ------------------------------------------------------

async def admit(h, job: str) -> None:
    """What Kueue does when it admits a Workload: resume its Job."""
    await h.kube.patch_job(NAMESPACE, job, {"spec": {"suspend": False}})


def jobs(h) -> list[dict[str, Any]]:
    return list(h.kube.objects["Job"].values())


async def test_queued_jobs_hold_no_capacity_and_max_queued_bounds_what_is_assigned():
    async with running(kueue={"queueName": "colonies", "maxQueued": 2}, capacity={"cpu": "1", "memory": "1Gi"},
                       heartbeatSeconds=1) as h:
        processes = [await h.submit(conditions={"cpu": "500m", "mem": "256Mi"}) for _ in range(3)]
        await eventually(lambda: len(jobs(h)) == 2, "two Jobs")
        assert all(job["spec"]["suspend"] for job in jobs(h))
        await for_a_while(2.5)  # long polls and heartbeats go on: the third stays in Colonies' queue
        assert len(jobs(h)) == 2 and h.runtime.capacity.queued == 2
        assert h.runtime.capacity.used == Resources()  # queued Jobs hold none of the budget
        assert sum(h.state(p.processid) is ProcessState.WAITING for p in processes) == 1

        first = jobs(h)[0]["metadata"]["name"]
        await admit(h, first)
        await eventually(lambda: len(jobs(h)) == 3, "the third process to take the admitted Job's place in the queue")
        assert h.runtime.capacity.used == Resources(500, 256 * 2**20, 0, 1)  # the admitted Job's requests
        assert h.runtime.capacity.queued == 2  # the third waits for Kueue too

        h.kube.start(first)
        h.kube.succeed(first)
        for job in [j["metadata"]["name"] for j in jobs(h) if j["metadata"]["name"] != first]:
            await admit(h, job)
            h.kube.start(job)
            h.kube.succeed(job)
        for p in processes:
            assert (await h.ended(p.processid)).state is ProcessState.SUCCESS
        await eventually(lambda: h.runtime.capacity.queued == 0 and h.runtime.capacity.used == Resources(),
                         "every place and every request given back")


async def test_a_job_kueue_admits_beyond_the_budget_is_held_all_the_same():
    async with running(kueue={"queueName": "colonies"}, capacity={"cpu": "1", "memory": "1Gi"}) as h:
        processes = [await h.submit(conditions={"cpu": "600m"}) for _ in range(2)]
        await eventually(lambda: len(jobs(h)) == 2, "both Jobs, queued: neither holds the budget")
        for job in jobs(h):
            await admit(h, job["metadata"]["name"])
        await eventually(lambda: h.runtime.capacity.queued == 0, "both admitted")
        assert h.runtime.capacity.used.cpu_millis == 1200  # Kueue's quota decided, not the executor's budget
        assert all(h.state(p.processid) is ProcessState.RUNNING for p in processes)


async def test_a_job_that_waits_for_kueue_longer_than_the_pending_grace_is_not_failed():
    async with running(kueue={"queueName": "colonies"}, pendingGraceSeconds=1) as h:
        process = await h.submit()
        job = await h.job_of(process.processid)
        await for_a_while(3.5)  # three grace periods, and the supervisor's recheck of refused pods
        assert h.state(process.processid) is ProcessState.RUNNING
        assert h.kube.get("Job", NAMESPACE, job) is not None
        await admit(h, job)
        h.kube.start(job)
        h.kube.succeed(job)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS


async def test_a_job_kueue_evicts_goes_back_to_the_queue_and_gives_its_requests_back():
    async with running(kueue={"queueName": "colonies"}) as h:
        process = await h.submit(conditions={"cpu": "500m"})
        job = await h.job_of(process.processid)
        await admit(h, job)
        await eventually(lambda: h.runtime.capacity.used.cpu_millis == 500, "the admitted Job's requests held")
        await h.kube.patch_job(NAMESPACE, job, {"spec": {"suspend": True}})  # Kueue preempts it
        await eventually(lambda: h.runtime.capacity.queued == 1 and h.runtime.capacity.used == Resources(),
                         "the Job queued again, holding nothing")
        assert h.state(process.processid) is ProcessState.RUNNING


async def test_after_a_restart_a_job_still_waiting_for_kueue_is_adopted_as_queued():
    server, kube = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05), FakeKube()
    key = Key.generate()
    same = {"kueue": {"queueName": "colonies"}, "executorName": "kueue-ex"}  # one identity across the restart
    async with running(server=server, kube=kube, executor_key=key, **same) as first:
        colony_key = Key(first.owner.key.private_hex)
        waiting, admitted = await first.submit(conditions={"cpu": "300m"}), await first.submit(conditions={"cpu": "700m"})
        waiting_job, admitted_job = await first.job_of(waiting.processid), await first.job_of(admitted.processid)
        await admit(first, admitted_job)
        await eventually(lambda: first.runtime.capacity.queued == 1, "one admitted, one waiting")
    async with running(server=server, kube=kube, executor_key=key, colony_key=colony_key,
                       executorType=first.executor_type, **same) as again:
        await eventually(lambda: {waiting.processid, admitted.processid} <= set(again.runtime.running), "both adopted")
        assert again.runtime.capacity.queued == 1
        assert again.runtime.capacity.used.cpu_millis == 700  # only the admitted Job's requests
        await admit(again, waiting_job)
        await eventually(lambda: again.runtime.capacity.queued == 0 and again.runtime.capacity.used.cpu_millis == 1000,
                         "the adopted Job admitted: its requests held")
        for job in (waiting_job, admitted_job):
            kube.start(job)
            kube.succeed(job)
        for p in (waiting, admitted):
            assert (await again.ended(p.processid)).state is ProcessState.SUCCESS


async def test_a_job_of_a_profile_kueue_admits_holds_its_profile_pool_and_gives_it_back_when_done():
    async with running(kueue={"queueName": "colonies"}, profiles={"big": {"capacity": {"cpu": "1"}}}) as h:
        process = await h.submit(kwargs={"docker-image": "busybox", "cmd": "true", "profile": "big"},
                                 conditions={"cpu": "600m"})
        job = await h.job_of(process.processid)
        assert h.runtime.capacity.pool_used.get("big", Resources()) == Resources()  # queued: nothing held
        await admit(h, job)
        await eventually(lambda: h.runtime.capacity.pool_used.get("big", Resources()).cpu_millis == 600, "the pool held once admitted")
        h.kube.start(job)
        h.kube.succeed(job)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS
        await eventually(lambda: h.runtime.capacity.pool_used["big"] == Resources(), "the pool given back")
