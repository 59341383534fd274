"""Never lose or duplicate work: cancellation, fencing after unassign, adoption after a
SIGKILL, a Colonies server restart, an apiserver restart, and huge logs.

These run on a stack and an operator of their own (restarts must not disturb other tests).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.api_client import ApiClient

from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress
from colonies_operator.colonies.models import ProcessState
from teststack import colonies_server, kube as stack_kube, procs
from teststack.state import StackState
from tests.fixtures.colonies import Colonies
from tests.fixtures.kube import new_namespace
from tests.fixtures.operator import Executor, RunningOperator, running_operator, start_executor
from tests.helpers import fresh_stack, scrape_total, wait_for

pytestmark = pytest.mark.integration

NS_PATTERN = "rs-*"


@pytest.fixture(scope="module")
def own_stack(request, crd_installer) -> Iterator[StackState]:
    with fresh_stack(request) as state:
        crd_installer(state)
        yield state


@pytest.fixture(scope="module")
def crd_installer():
    import subprocess

    from tests.fixtures.operator import CRD

    def install(state: StackState) -> None:
        kubectl = [f"{state.bin_dir}/kubectl", "--kubeconfig", state.kubeconfig]
        subprocess.run([*kubectl, "apply", "-f", str(CRD)], check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "--for", "condition=Established", "--timeout=60s",
                        "crd/colonyexecutors.colonyos.io"], check=True, capture_output=True)
    return install


@pytest_asyncio.fixture(scope="module")
async def own(own_stack) -> AsyncIterator[tuple[ApiClient, Colonies]]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=own_stack.kubeconfig, client_configuration=cfg)
    info = own_stack.colonies
    async with ApiClient(cfg) as api, Connection(ServerAddress(info.host, info.port),
                                                 retry=RetryPolicy(attempts=20, deadline=60)) as connection:
        yield api, Colonies(connection=connection, url=f"http://{info.host}:{info.port}", colony=info.colony_name,
                            server_owner=connection.client(info.server_prvkey),
                            owner=connection.client(info.colony_prvkey), user=connection.client(info.user_prvkey))


@pytest_asyncio.fixture
async def rs_namespace(own) -> AsyncIterator[str]:
    api, _ = own
    name = await new_namespace(api, "rs")
    yield name
    await client.CoreV1Api(api).delete_namespace(name)


@pytest.fixture
def own_operator(own_stack):
    with running_operator(own_stack, "--namespace", NS_PATTERN, name=f"operator-{uuid.uuid4().hex[:6]}") as op:
        yield op


async def executor_in(own, namespace, stack, **spec) -> Executor:
    api, colonies = own
    spec.setdefault("capacity", {"cpu": "64", "memory": "128Gi", "maxConcurrentJobs": 200})
    return await start_executor(api, colonies, namespace, stack, **spec)


async def pod_running(ex: Executor, process_id: str) -> bool:
    pods = await client.CoreV1Api(ex.api).list_namespaced_pod(ex.namespace)
    return any(p.metadata.labels.get("colonyos.io/process") == process_id[:20] and p.status.phase == "Running"
               for p in pods.items)


async def job_names(ex: Executor) -> set[str]:
    return {j.metadata.name for j in await ex.jobs()}


async def test_a_cancelled_process_has_its_job_deleted_and_nothing_reported(own, own_stack, rs_namespace, own_operator):
    ex = await executor_in(own, rs_namespace, own_stack)
    process = await ex.submit(env={"KWOK_RUN_FOR": "120s", "KWOK_LOG_LINES": "3"})
    await wait_for(lambda: pod_running(ex, process.processid), 60, "the pod to run")
    fenced = scrape_total(own_operator.metrics_url, "colonies_operator_processes_total", outcome="fenced")
    await ex.colonies.user.cancel(process.processid)

    async def job_gone():
        return not await job_names(ex)

    await wait_for(job_gone, 30, "the Job to be deleted")
    done = await ex.colonies.user.get_process(process.processid)
    assert done.state is ProcessState.CANCELLED and done.errors == () and done.output == ()
    await wait_for(lambda: scrape_total(own_operator.metrics_url, "colonies_operator_processes_total",
                                        outcome="fenced") == fenced + 1, 30, "the process to be counted as fenced")
    assert scrape_total(own_operator.metrics_url, "colonies_operator_processes_total", outcome="succeeded") == 0


async def test_an_unassigned_process_has_its_job_deleted_and_the_next_attempt_runs_in_a_new_job(
        own, own_stack, rs_namespace, own_operator):
    ex = await executor_in(own, rs_namespace, own_stack)
    api = ex.api
    created: list[str] = []
    active: set[str] = set()
    most = 0

    async def follow() -> None:
        nonlocal most
        async with watch.Watch() as w:
            async for event in w.stream(client.BatchV1Api(api).list_namespaced_job, rs_namespace, timeout_seconds=120):
                job = event["object"]
                if event["type"] == "ADDED":
                    created.append(job.metadata.name)
                done = any(c.type in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget") and c.status == "True"
                           for c in job.status.conditions or [])
                if event["type"] == "DELETED" or done or job.metadata.deletion_timestamp:
                    active.discard(job.metadata.name)
                else:
                    active.add(job.metadata.name)
                most = max(most, len(active))

    watcher = asyncio.create_task(follow())
    process = await ex.submit(maxexectime=4, maxretries=1, env={"KWOK_RUN_FOR": "30s"})
    done = await ex.final(process.processid, timeout=120)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    # Colonies unassigned attempt 0 after 4 s, gave attempt 1 to us, then failed it for good.
    assert done.state is ProcessState.FAILED and done.retries == 1
    assert done.errors == ("Maximum execution time limit exceeded",)
    short = process.processid[:20]
    assert created[:2] == [f"colony-{short}-0", f"colony-{short}-1"]
    assert most == 1  # Kubernetes never ran two attempts at once

    async def jobs_gone():
        return not await job_names(ex)

    await wait_for(jobs_gone, 60, "both attempts' Jobs to be deleted (the operator reported neither)")


async def test_sigkill_with_jobs_running_then_restart_reports_each_once_with_exact_logs(
        own, own_stack, rs_namespace):
    count, lines = 50, 200
    name = f"operator-{uuid.uuid4().hex[:6]}"
    with running_operator(own_stack, "--namespace", NS_PATTERN, name=name) as first:
        ex = await executor_in(own, rs_namespace, own_stack, logs={"flushSeconds": 0.5})
        processes = [await ex.submit(env={"KWOK_RUN_FOR": "20s", "KWOK_LOG_LINES": str(lines)}) for _ in range(count)]

        async def all_running():
            pods = await client.CoreV1Api(ex.api).list_namespaced_pod(rs_namespace)
            return sum(p.status.phase == "Running" for p in pods.items) == count

        await wait_for(all_running, 120, f"{count} pods to run")
        os.kill(first.pid, signal.SIGKILL)
    states = [(await ex.colonies.user.get_process(p.processid)).state for p in processes]
    open_at_kill = sum(s is ProcessState.RUNNING for s in states)
    started = time.monotonic()
    with running_operator(own_stack, "--namespace", NS_PATTERN, name=f"{name}-again") as second:
        async def adopted():
            return scrape_total(second.metrics_url, "colonies_operator_processes_in_flight") == open_at_kill
        await wait_for(adopted, 60, "the restarted operator to adopt every open process")
        readopt = time.monotonic() - started
        for process in processes:
            done = await ex.final(process.processid, timeout=120)
            assert done.state is ProcessState.SUCCESS, done.errors
            assert await ex.log_lines(process.processid) == [f"line {i}" for i in range(1, lines + 1)]
        # each is counted once its Job is marked, just after the close
        await wait_for(lambda: scrape_total(second.metrics_url, "colonies_operator_processes_total",
                                            outcome="succeeded") == open_at_kill, 30, "every process to be counted")
    print(f"\n{open_at_kill} of {count} processes open at SIGKILL; re-adopted in {readopt:.1f}s "
          f"(including the operator's start); {count * lines} log lines compared")


async def run_through_a_restart(own, stack, namespace: str, restart, run_for: str, lines: int,
                                operator: RunningOperator) -> None:
    """Five processes running while `restart(stack)` happens, and one submitted right after:
    every one ends SUCCESS, each log holds each line exactly once, and the executor's runtime
    ran on through it (it is not rebuilt, so no supervisor stopped)."""
    ex = await executor_in(own, namespace, stack, logs={"flushSeconds": 0.5})
    processes = [await ex.submit(env={"KWOK_RUN_FOR": run_for, "KWOK_LOG_LINES": str(lines)}) for _ in range(5)]
    await wait_for(lambda: pod_running(ex, processes[-1].processid), 60, "the pods to run")
    restart(stack)
    later = await ex.submit(env={"KWOK_LOG_LINES": "10"})
    for process in [*processes, later]:
        done = await ex.final(process.processid, timeout=180)
        assert done.state is ProcessState.SUCCESS, done.errors
    for process in processes:
        assert await ex.log_lines(process.processid) == [f"line {i}" for i in range(1, lines + 1)]
    assert scrape_total(operator.metrics_url, "colonies_operator_executor_runtime_starts_total",
                        executor=f"{namespace}/{ex.name}") == 1


async def test_a_colonies_server_restart_while_processes_run_loses_nothing(own, own_stack, rs_namespace, own_operator):
    await run_through_a_restart(own, own_stack, rs_namespace, colonies_server.restart_colonies, "6s", 100,
                                own_operator)


async def test_an_apiserver_restart_while_processes_run_loses_nothing(own, own_stack, rs_namespace, own_operator):
    await run_through_a_restart(own, own_stack, rs_namespace, stack_kube.restart_apiserver, "8s", 50,
                                own_operator)


async def test_a_huge_log_and_a_5mb_line_are_capped_with_a_visible_line_and_memory_stays_bounded(
        own, own_stack, rs_namespace, own_operator):
    ex = await executor_in(own, rs_namespace, own_stack, logs={"maxBytes": 2 * 2**20})
    many = await ex.submit(env={"KWOK_LOG_LINES": "50000"})
    huge = await ex.submit(env={"KWOK_LOG": "before", "KWOK_LOG_LONG_LINE": str(5 * 2**20)})
    done = await ex.final(many.processid, timeout=180)
    assert done.state is ProcessState.SUCCESS, done.errors
    shipped = await ex.log_lines(many.processid)
    assert shipped == [f"line {i}" for i in range(1, 50001)]  # 50,000 short lines fit in 2 MiB
    done = await ex.final(huge.processid, timeout=180)
    assert done.state is ProcessState.SUCCESS, done.errors
    shipped = await ex.log_lines(huge.processid)
    assert shipped[0] == "before"
    assert shipped[-1].startswith("[colonies-operator: log truncated after")
    pieces = shipped[1:-1]
    assert pieces and all(set(p) == {"x"} and len(p) <= 64 * 1024 for p in pieces)
    assert sum(len(p) + 1 for p in shipped[:-1]) <= 2 * 2**20
    rss = procs.rss_kib(own_operator.pid)
    print(f"\noperator RSS after a 50,000-line log and a 5 MiB line: {rss / 1024:.0f} MiB")
    assert rss < 300 * 1024
