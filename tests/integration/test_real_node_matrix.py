"""The operator's promises, proven with real containers on the stack's real node
(teststack/realnode.py: kubelet 1.37, containerd, runc; busybox:1.36 is Debian's busybox-static):
the examples as they are, logs as a real container runtime hands them over, a SIGKILLed
operator resuming a live log stream, argv without a shell, init-cmd, Indexed Jobs with
several containers per pod, cancellation, Pod Security "restricted" and a ResourceQuota.

Log lines are compared exactly, cut on "\\n" only (README "Nothing lost, nothing twice"),
never with str.splitlines(), which would also cut at "\\r" and other characters.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest
from colonies_operator.colonies.models import ProcessState
from colonies_operator.runtime.logs import MAX_LINE_BYTES
from kubernetes_asyncio import client

from tests.fixtures.kube import temporary_namespace
from tests.fixtures.operator import (
    GROUP,
    PLURAL,
    VERSION,
    Executor,
    real_node_template,
    running_operator,
    start_executor,
)
from tests.helpers import scrape_total, wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 120  # the first pod on a fresh node also creates its sandbox
SMALL = {"cpu": "50m", "mem": "32Mi"}  # the real node has 2 CPUs for every container of the test
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def shipped(ex: Executor, process_id: str) -> list[str]:
    """The process's log as Colonies holds it, cut on "\\n" only; every line ends with one."""
    entries = await ex.colonies.user.get_all_logs(ex.colonies.colony, process_id)
    *lines, rest = "".join(e.message for e in entries).split("\n")
    assert rest == "", f"the log does not end with a newline: {rest[-80:]!r}"
    return lines


async def pods(ex: Executor) -> list[client.V1Pod]:
    return (await client.CoreV1Api(ex.api).list_namespaced_pod(ex.namespace)).items


async def succeeded(ex: Executor, process_id: str, timeout: float = TIMEOUT):
    done = await ex.final(process_id, timeout=timeout)
    assert done.state is ProcessState.SUCCESS, done.errors
    return done


# --- 1. the examples, unchanged ------------------------------------------------------------------

# What each example does here; the ones that cannot run on this node say why.
RUN_HERE = {
    "hello.json": (ProcessState.SUCCESS, lambda pid: ["hello world"]),
    "failing.json": (ProcessState.FAILED, lambda pid: ["about to fail"]),
    "long-running.json": (ProcessState.SUCCESS, lambda pid: [f"step {i} of 100" for i in range(1, 101)]),
    "shell-free.json": (ProcessState.SUCCESS, lambda pid: [f"no shell involved for process {pid}"]),
    "output.json": (ProcessState.SUCCESS, lambda pid: ["computing the answer"]),
}
NOT_HERE = {
    "resources.json": "python:3.12-slim is not on the node, and no registry is reachable",
    "gpu.json": "the node has no GPU (nor the nvidia/cuda image)",
}


async def test_every_example_that_can_run_here_ends_as_documented_with_its_lines_once_and_its_output(
        real_executor, stack):
    ex = real_executor
    assert {p.name for p in EXAMPLES.glob("*.json")} == set(RUN_HERE) | set(NOT_HERE)
    submitted = {}
    for name in RUN_HERE:
        spec = json.loads((EXAMPLES / name).read_text())
        spec["conditions"].update(colonyname=ex.colonies.colony, executortype=ex.executor_type)
        submitted[name] = (await ex.colonies.user.submit(spec)).processid
    for name, (state, lines) in RUN_HERE.items():
        pid = submitted[name]
        done = await ex.final(pid, timeout=TIMEOUT + 100)  # long-running.json sleeps 100 s
        assert done.state is state, (name, done.errors)
        assert await shipped(ex, pid) == lines(pid), name
    done = await ex.colonies.user.get_process(submitted["output.json"])
    assert done.output == ('{"answer": 42}',)  # /dev/termination-log, an object as its JSON text
    failed = await ex.colonies.user.get_process(submitted["failing.json"])
    assert failed.errors[0].startswith("ExitCode(3)") and "about to fail" in failed.errors[0], failed.errors
    assert {p.spec.node_name for p in await pods(ex)} == {stack.real_node.name}


# --- 2. what a real container prints ----------------------------------------------------------

LONG_LINE = 2 * 2**20  # bytes of "x", with no newline after them


async def test_unicode_ansi_crlf_nul_50000_lines_and_a_2mib_line_arrive_as_the_log_rules_say(real_executor):
    ex = real_executor
    script = "; ".join([
        "echo 'héllo ✓ 日本'",
        r"printf '\033[31mred\033[0m plain\n'",
        r"printf 'windows\r\nline\r\n'",
        r"printf 'progress 10%%\rprogress 20%%\n'",
        r"printf 'bad\000byte\n'",
        "seq 1 50000",
        rf"head -c {LONG_LINE} /dev/zero | tr '\000' x",
    ])
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": script}, conditions={"mem": "64Mi"})
    await succeeded(ex, process.processid)
    lines = await shipped(ex, process.processid)
    head = ["héllo ✓ 日本", "\x1b[31mred\x1b[0m plain",
            # containerd's CRI log keeps a line without the "\r" of its "\r\n"; a "\r" inside
            # a line reaches the operator, and stays inside the line ("\n" alone cuts)
            "windows", "line", "progress 10%\rprogress 20%",
            "bad\ufffdbyte"]  # NUL, which Colonies (PostgreSQL text) refuses, becomes U+FFFD
    assert lines[:6] == head
    assert lines[6:50006] == [str(i) for i in range(1, 50001)]
    # The 2 MiB line comes in pieces of at most 64 KiB (the first one's budget also held the
    # kubelet's timestamp), each a line of its own, and its missing newline loses nothing.
    pieces = lines[50006:]
    assert "".join(pieces) == "x" * LONG_LINE
    assert all(len(p) <= MAX_LINE_BYTES for p in pieces) and all(len(p) == MAX_LINE_BYTES for p in pieces[1:-1])
    assert len(pieces) == LONG_LINE // MAX_LINE_BYTES + 1


# --- 3. a SIGKILLed operator resumes a real log stream ------------------------------------------

def own_operator(stack, tag: str):
    """An operator of this test's own, on `mx-*` namespaces (the session operator serves `it-*`)."""
    return running_operator(stack, "--namespace", "mx-*", name=f"operator-mx-{tag}-{uuid.uuid4().hex[:4]}")


async def remove(ex: Executor) -> None:
    """Delete the ColonyExecutor while an operator runs (its finalizer would keep it otherwise)."""
    api = client.CustomObjectsApi(ex.api)
    await api.delete_namespaced_custom_object(GROUP, VERSION, ex.namespace, PLURAL, ex.name)

    async def gone() -> bool:
        items = (await api.list_namespaced_custom_object(GROUP, VERSION, ex.namespace, PLURAL))["items"]
        return not items
    await wait_for(gone, 60, f"ColonyExecutor {ex.namespace}/{ex.name} to be removed")


async def line_count(ex: Executor, process_id: str) -> int:
    entries = await ex.colonies.user.get_all_logs(ex.colonies.colony, process_id)
    return "".join(e.message for e in entries).count("\n")


async def test_a_sigkilled_operator_resumes_a_real_log_stream_with_no_line_lost_or_repeated(
        api, colonies, stack, crd):
    total = 20_000
    # 1,000 lines a second: the kill lands while the container still prints
    script = "for i in $(seq 0 19); do seq $((i * 1000 + 1)) $((i * 1000 + 1000)); sleep 1; done"
    async with temporary_namespace(api, "mx") as namespace:
        with own_operator(stack, "first") as first:
            ex = await start_executor(api, colonies, namespace, stack, jobTemplate=real_node_template(stack))
            process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": script}, conditions=SMALL)
            await wait_for(lambda: _at_least(ex, process.processid, 3000), TIMEOUT, "3,000 lines to reach Colonies")
            os.kill(first.pid, signal.SIGKILL)
        at_kill = await line_count(ex, process.processid)
        [job] = await ex.jobs()
        assert at_kill < total, "the stream had ended before the kill"
        with own_operator(stack, "again"):
            await succeeded(ex, process.processid)
            assert await shipped(ex, process.processid) == [str(i) for i in range(1, total + 1)]
            [adopted] = await ex.jobs()
            assert adopted.metadata.uid == job.metadata.uid  # adopted, not created again
            await remove(ex)


async def _at_least(ex: Executor, process_id: str, lines: int) -> bool:
    return await line_count(ex, process_id) >= lines


# --- 4. argv without a shell, and init-cmd ----------------------------------------------------

# Words a shell or the kubelet ($(VAR) expansion, "$$" → "$") would change or act on.
ARGV = ["; rm -rf /", "$(id)", "`id`", "a string with spaces", "$(COLONIES_PROCESS_ID)", "$$", "$HOME",
        "'single' \"double\"", "back\\slash", "*", ""]


async def test_shell_free_args_reach_argv_unchanged_and_init_cmd_runs_before_cmd(real_executor):
    ex = real_executor
    argv = await ex.submit(kwargs={"docker-image": "busybox:1.36", "command": ["printf", "%s\\n"], "args": ARGV},
                           conditions=SMALL)
    init = await ex.submit(kwargs={"docker-image": "busybox:1.36",
                                   "init-cmd": "echo init ran; echo written by init-cmd > /tmp/init.out",
                                   "cmd": "cat", "args": ["/tmp/init.out"]}, conditions=SMALL)
    await succeeded(ex, argv.processid)
    assert await shipped(ex, argv.processid) == ARGV
    await succeeded(ex, init.processid)
    assert await shipped(ex, init.processid) == ["init ran", "written by init-cmd"]


# --- 5. nodes and processes per node ------------------------------------------------------------

async def test_two_nodes_run_as_an_indexed_job_each_pod_sees_its_index_and_runs_two_containers(real_executor, stack):
    ex = real_executor
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo index $JOB_COMPLETION_INDEX"},
                              conditions={"nodes": 2, "processespernode": 2, **SMALL})
    await succeeded(ex, process.processid)
    [job] = await ex.jobs()
    assert job.spec.completion_mode == "Indexed" and job.spec.completions == job.spec.parallelism == 2
    # each container's lines carry its pod's index and its own name
    assert sorted(await shipped(ex, process.processid)) == sorted(
        f"[{i}/main-{c}] index {i}" for i in range(2) for c in range(2))
    ran = await pods(ex)
    assert len(ran) == 2 and {p.spec.node_name for p in ran} == {stack.real_node.name}
    for pod in ran:
        ended = {s.name: s.state.terminated.exit_code for s in pod.status.container_statuses}
        assert ended == {"main-0": 0, "main-1": 0}


# --- 6. cancellation ------------------------------------------------------------------------------

async def test_a_cancelled_running_process_has_its_pod_removed_and_nothing_reported(real_executor, operator):
    ex = real_executor
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo started; sleep 600"},
                              conditions=SMALL)
    await wait_for(lambda: _at_least(ex, process.processid, 1), TIMEOUT, "the container to start")
    await ex.colonies.user.cancel(process.processid)

    async def pod_gone() -> bool:
        return not await pods(ex) and not await ex.jobs()
    # sleep, as PID 1, ignores SIGTERM: the kubelet kills it after the grace period (30 s)
    await wait_for(pod_gone, TIMEOUT, "the Job and its pod to be deleted")
    metric = "colonies_operator_processes_total"
    key = f"{ex.namespace}/{ex.name}"
    # the supervisor has ended: a report, had there been one, would have been sent by now
    await wait_for(lambda: scrape_total(operator.metrics_url, metric, executor=key, outcome="fenced") == 1,
                   30, "the process to be counted as fenced")
    assert scrape_total(operator.metrics_url, metric, executor=key, outcome="succeeded") == 0
    assert scrape_total(operator.metrics_url, metric, executor=key, outcome="failed") == 0
    done = await ex.colonies.user.get_process(process.processid)
    assert done.state is ProcessState.CANCELLED and done.errors == () and done.output == ()
    assert await shipped(ex, process.processid) == ["started"]


# --- 7. Pod Security "restricted", and a ResourceQuota ------------------------------------------

async def test_restricted_pod_security_runs_as_nobody_and_a_resource_quota_refusal_fails_with_its_words(
        api, colonies, namespace, stack, operator):
    core = client.CoreV1Api(api)
    enforce = {"pod-security.kubernetes.io/enforce": "restricted"}
    await core.patch_namespace(namespace, {"metadata": {"labels": enforce}})
    ex = await start_executor(api, colonies, namespace, stack,
                              jobTemplate=real_node_template(stack, securityProfile="restricted"))
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "id -u; id -g"}, conditions=SMALL)
    await succeeded(ex, process.processid)
    assert await shipped(ex, process.processid) == ["65534", "65534"]
    [pod] = await pods(ex)
    assert pod.spec.node_name == stack.real_node.name

    quota = client.V1ResourceQuota(metadata=client.V1ObjectMeta(name="small"),
                                   spec=client.V1ResourceQuotaSpec(hard={"requests.memory": "16Mi"}))
    await core.create_namespaced_resource_quota(namespace, quota)
    await wait_for(lambda: _quota_counted(core, namespace), 30, "the quota controller to count the quota")
    refused = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo never"}, conditions=SMALL)
    done = await ex.final(refused.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("PodCreateRefused("), done.errors
    assert "exceeded quota: small" in done.errors[0] and "limited: requests.memory=16Mi" in done.errors[0]
    assert await shipped(ex, refused.processid) == []
    await wait_for(lambda: _no_job_of(ex, refused.processid), 30, "the refused Job to be deleted")


async def _quota_counted(core: client.CoreV1Api, namespace: str) -> bool:
    status = (await core.read_namespaced_resource_quota("small", namespace)).status
    return bool(status and status.hard)


async def _no_job_of(ex: Executor, process_id: str) -> bool:
    return all(j.metadata.labels.get("colonyos.io/process") != process_id[:20] for j in await ex.jobs())
