"""Hard paths across an operator restart, on the session's stack with an operator of this
module's own (serving `hp-*` namespaces), which the tests SIGKILL and start again."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from colonies_operator.colonies.models import ProcessState
from tests.fixtures.kube import new_namespace
from tests.fixtures.operator import running_operator, start_executor
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

NS_PATTERN = "hp-*"


@pytest_asyncio.fixture
async def hp_namespace(api) -> AsyncIterator[str]:
    name = await new_namespace(api, "hp")
    yield name
    await client.CoreV1Api(api).delete_namespace(name)


def operator(stack, tag: str):
    return running_operator(stack, "--namespace", NS_PATTERN, name=f"operator-hp-{tag}-{uuid.uuid4().hex[:4]}")


async def job_finished(api, namespace: str) -> bool:
    jobs = (await client.BatchV1Api(api).list_namespaced_job(namespace)).items
    return bool(jobs) and all(any(c.type == "Complete" and c.status == "True" for c in j.status.conditions or [])
                              for j in jobs)


async def canary_collected(api, namespace: str) -> None:
    """A Job with ttlSecondsAfterFinished 0 that finishes after ours: once the TTL controller
    has removed it, it has had its chance to remove ours too."""
    body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ttl-canary"},
            "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 0, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1.36",
                                                          "env": [{"name": "KWOK_RUN_FOR", "value": "1s"}]}]}}}}
    batch = client.BatchV1Api(api)
    await batch.create_namespaced_job(namespace, body)

    async def gone():
        return "ttl-canary" not in {j.metadata.name for j in (await batch.list_namespaced_job(namespace)).items}
    await wait_for(gone, 60, "the TTL controller to remove the canary Job")


async def test_a_finished_job_is_kept_until_its_result_is_in_colonies(api, colonies, stack, crd, hp_namespace):
    with operator(stack, "ttl") as first:
        ex = await start_executor(api, colonies, hp_namespace, stack, jobTemplate={"ttlSecondsAfterFinished": 0})
        process = await ex.submit(env={"KWOK_RUN_FOR": "4s", "KWOK_LOG_LINES": "5"})
        await wait_for(lambda: _running(api, hp_namespace), 60, "the pod to run")
        os.kill(first.pid, signal.SIGKILL)
    # The Job finishes while no operator runs; ttlSecondsAfterFinished 0 would remove it at once.
    await wait_for(lambda: job_finished(api, hp_namespace), 60, "the Job to finish")
    await canary_collected(api, hp_namespace)
    assert await ex.jobs(), "the finished Job was removed before its result reached Colonies"
    with operator(stack, "ttl-again"):
        done = await ex.final(process.processid, timeout=90)
        assert done.state is ProcessState.SUCCESS, done.errors
        assert await ex.log_lines(process.processid) == [f"line {i}" for i in range(1, 6)]

        async def collected():  # reported: now the TTL may remove it
            return not await ex.jobs()
        await wait_for(collected, 60, "the reported Job to be removed by its TTL")


async def _running(api, namespace: str) -> bool:
    pods = (await client.CoreV1Api(api).list_namespaced_pod(namespace)).items
    return bool(pods) and all(p.status.phase == "Running" for p in pods)


# Lines with every character Python's str.splitlines() also splits on, but a log line does not.
ODD_LINES = ["progress 10%\rprogress 20%", "page\fbreak", "vertical\x0btab", "para\u2028graph", "next\u2029para",
             "nel\x85here", "file\x1cgroup\x1drecord\x1eunit"]


async def test_log_resume_is_exact_across_a_restart_with_carriage_returns_and_line_separators(
        api, colonies, stack, crd, hp_namespace):
    lines = [f"line {i}" if i % 3 else ODD_LINES[(i // 3) % len(ODD_LINES)] for i in range(1, 61)]
    # KWOK_LOG escapes: \r and \f spelled as two characters (see teststack/podlogs.py)
    text = "\\n".join(line.replace("\r", "\\r").replace("\f", "\\f") for line in lines)
    with operator(stack, "logs") as first:
        ex = await start_executor(api, colonies, hp_namespace, stack, logs={"flushSeconds": 0.2})
        process = await ex.submit(env={"KWOK_LOG": text, "KWOK_LOG_INTERVAL_MS": "100", "KWOK_RUN_FOR": "12s"})

        async def partly_shipped():
            entries = await colonies.user.get_all_logs(colonies.colony, process.processid)
            return "".join(e.message for e in entries).count("\n") >= 20
        await wait_for(partly_shipped, 60, "the first 20 lines to reach Colonies")
        os.kill(first.pid, signal.SIGKILL)
    with operator(stack, "logs-again"):
        done = await ex.final(process.processid, timeout=90)
        assert done.state is ProcessState.SUCCESS, done.errors
    entries = await colonies.user.get_all_logs(colonies.colony, process.processid)
    shipped = "".join(e.message for e in entries).split("\n")
    assert shipped[-1] == ""
    assert shipped[:-1] == lines
