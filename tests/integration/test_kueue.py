"""Kueue admission on the real stack: the real Kueue manager (v0.17) decides when the
operator's Jobs run. A ClusterQueue with quota for two Jobs, five processes: exactly two run
at once, the others wait as Queued (in the ColonyExecutor's status and the metric), all five
succeed, and a Job's walltime counts from its admission, not from its creation.

Pods are kwok's, steered through funcspec env (KWOK_RUN_FOR)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client, watch

from colonies_operator.colonies.models import ProcessState
from colonies_operator.jobs import kueue as job_kueue
from tests.fixtures.kueue import GROUP as KUEUE_GROUP, VERSION as KUEUE_VERSION, cluster_queue, create, delete, listed
from tests.fixtures.operator import GROUP, PLURAL, VERSION, Executor, create_colony_key_secret, start_executor
from tests.helpers import scrape_total, wait_for

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kueue"
QUEUE = "colonies"
RUN_FOR = "8s"   # each pod
WALLTIME = 12    # seconds: longer than a pod runs, shorter than the last Job waits for admission


def _finished(job: Any) -> bool:
    return any(c.type in ("Complete", "Failed") and c.status == "True" for c in job.status.conditions or [])


@dataclass
class Sampler:
    """Follows the executor's Jobs through a watch, which brings every version of every Job in
    order, so a Job that ran for a moment is seen too: the most Jobs running (resumed and not
    finished, as Kueue judges it) after any one change, which Jobs ever ran, and how long each
    waited between its creation and its (last) start. Meanwhile polls the status and the
    metric for the most processes they showed as queued."""

    most_running: int = 0
    ran: set[str] = field(default_factory=set)
    waited: dict[str, float] = field(default_factory=dict)
    most_queued_status: int = 0
    most_queued_metric: float = 0.0

    async def follow_jobs(self, ex) -> None:
        running: set[str] = set()
        async with watch.Watch() as w:
            async for event in w.stream(client.BatchV1Api(ex.api).list_namespaced_job, ex.namespace,
                                        timeout_seconds=600):
                job = event["object"]
                name = job.metadata.name
                if event["type"] == "DELETED" or job.spec.suspend or _finished(job):
                    running.discard(name)
                else:
                    running.add(name)
                    self.ran.add(name)
                self.most_running = max(self.most_running, len(running))
                if job.status.start_time is not None:  # set anew when Kueue resumes the Job
                    self.waited[name] = (job.status.start_time - job.metadata.creation_timestamp).total_seconds()

    async def poll_queued(self, ex, metrics_url: str, executor_key: str) -> None:
        while True:
            status = (await ex.resource()).get("status") or {}
            self.most_queued_status = max(self.most_queued_status, int(status.get("queued") or 0))
            metric = await asyncio.to_thread(scrape_total, metrics_url, "colonies_operator_processes_queued",
                                             executor=executor_key)
            self.most_queued_metric = max(self.most_queued_metric, metric)
            await asyncio.sleep(0.2)


async def test_a_cluster_queue_with_room_for_two_runs_five_processes_two_at_a_time(
        api, colonies, namespace, stack, operator, kueue):
    async with cluster_queue(api, namespace, QUEUE, {"cpu": "1", "memory": "4Gi"}):
        ex = await start_executor(api, colonies, namespace, stack, kueue={"queueName": QUEUE},
                                  capacity={"cpu": "8", "memory": "16Gi"})
        sampler = Sampler()
        sampling = [asyncio.create_task(sampler.follow_jobs(ex)),
                    asyncio.create_task(sampler.poll_queued(ex, operator.metrics_url, f"{namespace}/{ex.name}"))]
        try:
            processes = [await ex.submit(conditions={"cpu": "500m", "mem": "64Mi", "walltime": WALLTIME},
                                         env={"KWOK_RUN_FOR": RUN_FOR}) for _ in range(5)]
            ended = [await ex.final(p.processid, timeout=240) for p in processes]
        finally:
            for task in sampling:
                task.cancel()
            await asyncio.gather(*sampling, return_exceptions=True)

        assert [p.state for p in ended] == [ProcessState.SUCCESS] * 5, [p.errors for p in ended]
        jobs = await ex.jobs()
        assert len(jobs) == 5 and all(j.metadata.labels[job_kueue.QUEUE_LABEL] == QUEUE for j in jobs)
        assert sampler.ran == {j.metadata.name for j in jobs}  # every Job was admitted and ran
        assert sampler.most_running == 2, f"two Jobs at once at most, and at some point two; saw {sampler.most_running}"
        assert sampler.most_queued_status >= 1 and sampler.most_queued_metric >= 1
        # Some Job waited for admission longer than its walltime, yet succeeded: its deadline
        # (activeDeadlineSeconds) started when Kueue admitted it.
        assert max(sampler.waited.values()) > WALLTIME, sampler.waited
        await wait_for(lambda: _status_is(ex, queued=0, succeeded=5), 30, "the status to show all five done, none queued")


async def test_the_funcspec_priority_becomes_the_workloads_priority_class_and_max_queued_bounds_the_wait(
        api, colonies, namespace, stack, operator, kueue):
    urgent = f"urgent-{namespace}"
    await create(api, "workloadpriorityclasses", {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}",
                                                  "kind": "WorkloadPriorityClass", "metadata": {"name": urgent},
                                                  "value": 1000})
    try:
        async with cluster_queue(api, namespace, QUEUE, {"cpu": "0", "memory": "0"}):  # admits nothing
            ex = await start_executor(api, colonies, namespace, stack, kueue={
                "queueName": QUEUE, "maxQueued": 2, "priorityClasses": [{"minPriority": 5, "name": urgent}]})
            high = await ex.submit(priority=10, env={"KWOK_RUN_FOR": "1s"})
            low = await ex.submit(priority=0, env={"KWOK_RUN_FOR": "1s"})
            third = await ex.submit(priority=-1, env={"KWOK_RUN_FOR": "1s"})  # Colonies hands it out last

            async def workloads() -> dict[str, dict[str, Any]] | None:
                found = {w["metadata"]["ownerReferences"][0]["name"]: w for w in await listed(api, "workloads", namespace)}
                return found if len(found) == 2 else None
            by_job = await wait_for(workloads, 60, "Kueue's Workloads of both Jobs")
            job_of = {j.metadata.annotations["colonyos.io/process-id"]: j.metadata.name for j in await ex.jobs()}
            high_wl, low_wl = by_job[job_of[high.processid]], by_job[job_of[low.processid]]
            assert high_wl["spec"]["priorityClassRef"]["name"] == urgent and high_wl["spec"]["priority"] == 1000
            assert "priorityClassRef" not in low_wl["spec"] and low_wl["spec"].get("priority", 0) == 0
            # neither fits a queue with no quota: both stay queued, and neither is failed meanwhile
            await wait_for(lambda: _status_is(ex, queued=2), 30, "both processes queued in the status")
            # maxQueued is reached: the third stays in Colonies through more than one long poll
            # (assignTimeoutSeconds 5) and pending grace period (3 s) of the executor
            await asyncio.sleep(8)
            assert (await colonies.user.get_process(third.processid)).state is ProcessState.WAITING
            assert len(await ex.jobs()) == 2
            assert {(await colonies.user.get_process(p.processid)).state for p in (high, low)} == {ProcessState.RUNNING}
    finally:
        await delete(api, "workloadpriorityclasses", urgent)


async def _status_is(ex, **expected: int) -> bool:
    status = (await ex.resource()).get("status") or {}
    return all(status.get(k) == v for k, v in expected.items())


async def test_the_kueue_example_admits_a_process_under_its_priority_class(api, colonies, namespace, stack, operator,
                                                                           kueue):
    """examples/kueue/ as it is (only the executor type made this test's own), through the
    apiserver's schema checks of both CRDs and the real Kueue."""
    objects = [o for o in yaml.safe_load_all((EXAMPLES / "queues.yaml").read_text()) if o]
    executor = yaml.safe_load((EXAMPLES / "colonyexecutor.yaml").read_text())
    cluster_wide = [o for o in objects if o["kind"] != "LocalQueue"]
    plurals = {"ResourceFlavor": "resourceflavors", "ClusterQueue": "clusterqueues",
               "WorkloadPriorityClass": "workloadpriorityclasses", "LocalQueue": "localqueues"}
    try:
        for obj in objects:
            await create(api, plurals[obj["kind"]], obj, None if obj in cluster_wide else namespace)
        await create_colony_key_secret(api, namespace, stack.colonies.colony_prvkey)
        executor["spec"]["executorType"] = f"it-type-{uuid.uuid4().hex[:8]}"
        await client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, executor)
        ex = Executor(api, colonies, namespace, executor["metadata"]["name"], executor["spec"]["executorType"])
        process = await ex.submit(priority=150, env={"KWOK_RUN_FOR": "1s"})
        assert (await ex.final(process.processid, timeout=120)).state is ProcessState.SUCCESS
        [job] = await ex.jobs()
        assert job.metadata.labels[job_kueue.PRIORITY_CLASS_LABEL] == "colonies-urgent"
        [workload] = await listed(api, "workloads", namespace)
        assert workload["spec"]["priority"] == 1000
    finally:
        for obj in reversed(cluster_wide):
            await delete(api, plurals[obj["kind"]], obj["metadata"]["name"])
