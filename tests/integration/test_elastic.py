"""The autoscaling signals on the real stack: with `capacity.elastic: 2` and a node too small,
exactly two Jobs sit Pending (not failed after pendingGraceSeconds) while the rest of the
queue stays WAITING in Colonies and is counted by the waiting gauge and status.waiting;
a new kwok node (what a cluster autoscaler would add) lets them run, then the rest."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import datetime, timezone

import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from colonies_operator.colonies.models import ProcessState
from tests.fixtures.operator import GROUP, PLURAL, VERSION, executor_resource, start_executor
from tests.helpers import wait_for
from tests.integration.test_operator import scrape, total
from teststack import kube as teststack_kube

pytestmark = pytest.mark.integration

POOL = "colonies-it/elastic"  # label and taint of this test's nodes: no other test's pod lands there
GRACE = 3                     # the fixture's pendingGraceSeconds


def pool_node(name: str, pool: str, cpu: str) -> dict:
    """A kwok node of the test's own pool, as the stack makes its nodes, with `cpu` cores."""
    node = copy.deepcopy(teststack_kube.node_manifest(name, gpu=False))
    node["metadata"]["labels"][POOL] = pool
    node["spec"] = {"taints": [{"key": POOL, "value": pool, "effect": "NoSchedule"}]}
    node["status"]["capacity"] = node["status"]["allocatable"] = {"cpu": cpu, "memory": "16Gi", "pods": "110"}
    return node


async def add_node(api, body: dict) -> None:
    core = client.CoreV1Api(api)
    await core.create_node(body)

    async def ready() -> bool:
        node = await core.read_node(body["metadata"]["name"])
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    await wait_for(ready, 60, f"node {body['metadata']['name']} Ready")


async def unschedulable_since(api, namespace: str, job_name: str) -> datetime | None:
    pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job_name}")
    for pod in pods.items:
        for c in pod.status.conditions or []:
            if (c.type, c.status, c.reason) == ("PodScheduled", "False", "Unschedulable") and "Insufficient cpu" in c.message:
                return c.last_transition_time
    return None


async def test_elastic_two_keeps_exactly_two_jobs_pending_until_a_node_comes_and_then_runs_them_all(
        api, colonies, namespace, stack, operator):
    pool = namespace
    suffix = uuid.uuid4().hex[:6]
    nodes = [f"kwok-elastic-small-{suffix}", f"kwok-elastic-big-{suffix}"]
    core = client.CoreV1Api(api)
    await add_node(api, pool_node(nodes[0], pool, cpu="1"))  # too small for a 2-core process
    try:
        ex = await start_executor(
            api, colonies, namespace, stack, capacity={"cpu": "16", "memory": "16Gi", "elastic": 2},
            waitingPollSeconds=2, heartbeatSeconds=2,
            jobTemplate={"nodeSelector": {POOL: pool},
                         "tolerations": [{"key": POOL, "operator": "Equal", "value": pool, "effect": "NoSchedule"}]})
        created: list[str] = []

        async def record_jobs() -> None:
            async with watch.Watch() as w:
                async for event in w.stream(client.BatchV1Api(api).list_namespaced_job, namespace, timeout_seconds=300):
                    if event["type"] == "ADDED" and event["object"].metadata.name not in created:
                        created.append(event["object"].metadata.name)

        recorder = asyncio.create_task(record_jobs())
        processes = [await ex.submit(conditions={"cpu": "2000m"}, env={"KWOK_RUN_FOR": "1s"}) for _ in range(4)]

        async def two_pending_since() -> datetime | None:
            jobs = await ex.jobs()
            if len(jobs) != 2:
                return None
            since = [await unschedulable_since(api, namespace, j.metadata.name) for j in jobs]
            return max(since) if all(since) else None  # type: ignore[type-var]
        pending_since = await wait_for(two_pending_since, 60, "two Jobs Pending, Unschedulable")

        async def quiet_long_enough() -> bool:
            """Three grace periods passed since both were Unschedulable, and Colonies heard an
            assign of this executor after that: time for a third Job, or a failure, to come."""
            name = ((await ex.resource()).get("status") or {}).get("executorName", "")
            heard = (await colonies.user.get_executor(colonies.colony, name)).lastheardfromtime
            return heard is not None and (heard - pending_since).total_seconds() > 3 * GRACE
        await wait_for(quiet_long_enough, 120, "three grace periods and an assign after them")

        assert len(await ex.jobs()) == 2 and len(created) == 2
        states = [(await colonies.user.get_process(p.processid)).state for p in processes]
        assert sorted(states) == [ProcessState.WAITING] * 2 + [ProcessState.RUNNING] * 2

        async def waiting_counted() -> bool:
            status = (await ex.resource()).get("status") or {}
            gauge = total(scrape(operator.metrics_url), "colonies_operator_waiting_processes",
                          executor=f"{namespace}/{ex.name}", executor_type=ex.executor_type)
            return status.get("waiting") == 2 and status.get("waitingCapped") is False and gauge == 2
        await wait_for(waiting_counted, 30, "status.waiting and the gauge to count the two WAITING processes")
        assert total(scrape(operator.metrics_url), "colonies_operator_processes_without_node",
                     executor=f"{namespace}/{ex.name}") == 2

        await add_node(api, pool_node(nodes[1], pool, cpu="8"))  # the autoscaler's new node
        for process in processes:
            done = await ex.final(process.processid, timeout=120)
            assert done.state is ProcessState.SUCCESS, done.errors
        assert len(created) == 4
        scheduled_on = {p.spec.node_name for p in (await core.list_namespaced_pod(namespace)).items}
        assert scheduled_on == {nodes[1]}
        await wait_for(lambda: _waiting_is_zero(ex), 30, "status.waiting back to 0")
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
    finally:
        for name in nodes:
            try:
                await core.delete_node(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


async def _waiting_is_zero(ex) -> bool:
    return ((await ex.resource()).get("status") or {}).get("waiting") == 0


async def test_the_apiserver_refuses_a_waiting_poll_faster_than_two_seconds_and_a_negative_elastic(
        api, colonies, namespace):
    objects = client.CustomObjectsApi(api)
    for spec, words in [({"waitingPollSeconds": 1}, "waitingPollSeconds must be 0 (off) or at least 2"),
                        ({"capacity": {"elastic": -1}}, "spec.capacity.elastic")]:
        body = executor_resource(f"bad-{uuid.uuid4().hex[:6]}", "t", colonies.colony, **spec)
        with pytest.raises(ApiException) as info:
            await objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        assert info.value.status == 422 and words in info.value.body
