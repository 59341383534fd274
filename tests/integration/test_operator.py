"""The operator end to end, on the real stack: a ColonyExecutor registers an executor, its
processes run as Jobs on kwok nodes, logs come back to Colonies, and every end is reported
with a reason a person can act on. Pods are steered through funcspec env (KWOK_*)."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
import pytest
from kubernetes_asyncio import client, watch

from colonies_operator.colonies import errors
from colonies_operator.colonies.models import ExecutorState, ProcessState
from colonies_operator.jobs import diagnosis
from tests.fixtures.operator import GROUP, PLURAL, VERSION, create_colony_key_secret, start_executor
from tests.helpers import colonies_cli, wait_for

pytestmark = pytest.mark.integration


async def job_of(ex, process_id: str):
    for job in await ex.jobs():
        if job.metadata.annotations.get("colonyos.io/process-id") == process_id:
            return job
    return None


def scrape(url: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value}."""
    samples = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for k, v in samples.items() if k.split("{")[0] == name and all(w in k for w in wanted))


async def test_hello_world_runs_as_a_job_and_its_logs_and_output_come_back(executor_cr, operator):
    ex = executor_cr
    before = scrape(operator.metrics_url)
    process = await ex.submit(
        kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hello", "world"]},
        conditions={"cpu": "250m", "mem": "128Mi"},
        env={"KWOK_TERMINATION_MESSAGE": '{"answer": 42}'},
    )
    done = await ex.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert done.output == ('{"answer": 42}',)  # objects go as their JSON text: see termination_output
    assert await ex.log_lines(process.processid) == ["hello world"]

    async def marked():  # the mark follows the close
        job = await job_of(ex, process.processid)
        return job if job.metadata.annotations.get("colonyos.io/reported") == "success" else None
    job = await wait_for(marked, 30, "the Job to be marked reported")
    container = job.spec.template.spec.containers[0]
    assert container.command == ["/bin/sh", "-c", "echo hello world"]
    assert container.resources.requests == {"cpu": "250m", "memory": "128Mi"} == container.resources.limits
    assert job.spec.backoff_limit == 0
    # this executor's series: another test's executor removed meanwhile takes its own along
    succeeded = ("colonies_operator_processes_total", {"executor": f"{ex.namespace}/{ex.name}", "outcome": "succeeded"})
    await wait_for(lambda: total(scrape(operator.metrics_url), succeeded[0], **succeeded[1])
                   > total(before, succeeded[0], **succeeded[1]), 30, "the process to be counted")
    after = scrape(operator.metrics_url)
    for name, labels in [
        ("colonies_operator_colonies_rpcs_total", {"method": "assignprocessmsg", "outcome": "ok"}),
        ("colonies_operator_colonies_rpcs_total", {"method": "closesuccessfulmsg", "outcome": "ok"}),
        ("colonies_operator_kube_requests_total", {"verb": "post", "resource": "jobs", "code": "201"}),
        succeeded,
        ("colonies_operator_log_lines_shipped_total", {}),
        ("colonies_operator_assign_roundtrip_seconds_count", {}),
        ("colonies_operator_assigned_to_job_created_seconds_count", {}),
        ("colonies_operator_assigned_to_job_create_sent_seconds_count", {}),
    ]:
        assert total(after, name, **labels) > total(before, name, **labels), (name, labels)
    assert total(after, "colonies_operator_event_loop_lag_seconds_count") > 0


async def test_a_json_object_output_is_read_back_by_pycolonies_and_the_go_cli(executor_cr, stack):
    from pycolonies import Colonies

    process = await executor_cr.submit(env={"KWOK_TERMINATION_MESSAGE": '{"answer": 42}'})
    info = stack.colonies
    pycolonies = Colonies(info.host, info.port)
    submitted = await asyncio.to_thread(pycolonies.get_process, process.processid, info.user_prvkey)
    done = await asyncio.to_thread(pycolonies.wait, submitted, 90, info.user_prvkey)  # get_process once it ends
    assert (done.state, done.output) == (Colonies.SUCCESSFUL, ['{"answer": 42}']), done.errors
    # --json prints the process and then " <nil>" (the CLI prints its error value too)
    printed, _ = json.JSONDecoder().raw_decode(colonies_cli(stack, "process", "get", "-p", process.processid, "--json"))
    assert printed["out"] == ['{"answer": 42}']
    assert colonies_cli(stack, "process", "get", "-p", process.processid, "--out").strip() == '{"answer": 42}'


async def test_a_termination_message_kubernetes_cut_comes_back_as_text_with_a_note_in_the_log(executor_cr):
    cut = json.dumps({"rows": list(range(2000))})[:4096]  # what Kubernetes keeps of a longer message
    process = await executor_cr.submit(env={"KWOK_TERMINATION_MESSAGE": cut})
    done = await executor_cr.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert done.output == (cut,)
    assert await executor_cr.log_lines(process.processid) == [
        "hello", "[colonies-operator: the termination message of container main reached Kubernetes' limit of "
                 "4096 bytes, so Kubernetes probably cut it, and it is not valid JSON: the output holds it as text]"]


async def test_many_log_lines_arrive_in_order_without_duplicates(executor_cr):
    process = await executor_cr.submit(env={"KWOK_LOG_LINES": "500", "KWOK_RUN_FOR": "2s"})
    done = await executor_cr.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await executor_cr.log_lines(process.processid) == [f"line {i}" for i in range(1, 501)]


async def test_cpu_memory_and_a_named_gpu_become_requests_limits_and_a_node_selector(
        api, colonies, namespace, stack, operator):
    label = "gpu.example.com/model"
    await client.CoreV1Api(api).patch_node(stack.kube.gpu_node, {"metadata": {"labels": {label: "a100"}}})
    ex = await start_executor(api, colonies, namespace, stack, capacity={"cpu": "8", "memory": "16Gi", "gpu": 2},
                              gpu={"nodeLabel": label})
    process = await ex.submit(conditions={"cpu": "500m", "mem": "1Gi", "gpu": {"count": 1, "name": "a100"}})
    done = await ex.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    job = await job_of(ex, process.processid)
    pod = job.spec.template.spec
    resources = pod.containers[0].resources
    assert resources.requests == resources.limits == {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}
    assert pod.node_selector == {label: "a100"}


async def test_in_a_namespace_enforcing_restricted_pod_security_only_the_restricted_profile_gets_pods(
        api, colonies, namespace, stack, operator):
    await client.CoreV1Api(api).patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    restricted = await start_executor(api, colonies, namespace, stack, jobTemplate={"securityProfile": "restricted"})
    plain = await start_executor(api, colonies, namespace, stack, secret=False)  # the same, without the profile

    done = await restricted.final((await restricted.submit()).processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await restricted.log_lines(done.processid) == ["hello"]
    pod_security = (await job_of(restricted, done.processid)).spec.template.spec.security_context
    assert (pod_security.run_as_non_root, pod_security.run_as_user, pod_security.run_as_group) == (True, 65534, 65534)

    refused = await plain.submit()
    job = await wait_for(lambda: job_of(plain, refused.processid), 60, "the Job of the process without the profile")

    async def refusal():
        return next((e for e in await plain.events() if e.involved_object.name == job.metadata.name
                     and e.reason == "FailedCreate"), None)
    event = await wait_for(refusal, 60, "the Job controller's FailedCreate Event")
    assert 'violates PodSecurity "restricted:latest"' in event.message
    assert diagnosis.pod_create_refused(event.message).hint.startswith('the namespace enforces Pod Security "restricted')
    pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job.metadata.name}")
    assert pods.items == []
    done = await plain.final(refused.processid)  # after pendingGraceSeconds (3 s here)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("PodCreateRefused(") and "violates PodSecurity" in done.errors[0], done.errors


async def test_nodes_and_processes_per_node_make_an_indexed_job_with_containers_per_pod(executor_cr):
    process = await executor_cr.submit(conditions={"nodes": 2, "processespernode": 2},
                                       kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hi"]})
    done = await executor_cr.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    job = await job_of(executor_cr, process.processid)
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.parallelism == job.spec.completions == 2
    assert [c.name for c in job.spec.template.spec.containers] == ["main-0", "main-1"]
    lines = await executor_cr.log_lines(process.processid)
    assert sorted(lines) == sorted(f"[{i}/main-{c}] hi" for i in range(2) for c in range(2))


async def test_a_nonzero_exit_fails_with_the_exit_code_and_the_last_log_lines(executor_cr):
    process = await executor_cr.submit(env={"KWOK_EXIT_CODE": "3", "KWOK_LOG": "starting\nworking\nboom: disk full"})
    done = await executor_cr.final(process.processid)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("ExitCode(3)")
    assert "boom: disk full" in done.errors[0]
    job = await job_of(executor_cr, process.processid)

    async def job_events():  # posted right after the close
        return [e for e in await executor_cr.events()
                if e.involved_object.name == job.metadata.name and e.source.component == "colonies-operator"]
    events = await wait_for(job_events, 30, "the operator's Event on the Job")
    assert [(e.type, e.reason) for e in events] == [("Warning", "ExitCode")]
    assert events[0].message.startswith("ExitCode(3)")
    assert await executor_cr.log_lines(process.processid) == ["starting", "working", "boom: disk full"]


async def test_an_oom_kill_fails_with_the_memory_limit(executor_cr):
    process = await executor_cr.submit(env={"KWOK_OOM": "true"}, conditions={"mem": "256Mi"})
    done = await executor_cr.final(process.processid)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("OOMKilled(limit 256Mi)")


async def test_an_image_that_cannot_be_pulled_fails_after_the_grace_period_and_the_job_is_deleted(executor_cr):
    process = await executor_cr.submit(kwargs={"docker-image": "unpullable.invalid/nothing:1", "cmd": "true"})
    done = await executor_cr.final(process.processid)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("ImagePullFailed(unpullable.invalid/nothing:1")
    await wait_for(lambda: _no_job(executor_cr, process.processid), 30, "the Job to be deleted")


async def test_a_pod_no_node_can_hold_fails_as_unschedulable_and_the_job_is_deleted(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, capacity={"cpu": "200", "memory": "16Gi"})
    process = await ex.submit(conditions={"cpu": "100000m"})  # Colonies reads only "<n>m" cpu
    done = await ex.final(process.processid)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("Unschedulable(")
    assert "Insufficient cpu" in done.errors[0]
    await wait_for(lambda: _no_job(ex, process.processid), 30, "the Job to be deleted")


async def test_a_walltime_shorter_than_the_run_fails_with_deadline_exceeded(executor_cr):
    process = await executor_cr.submit(conditions={"walltime": 2}, env={"KWOK_RUN_FOR": "60s"})
    done = await executor_cr.final(process.processid)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("DeadlineExceeded(walltime 2s)")


async def test_a_process_ends_by_its_pod_while_the_job_controller_is_stopped(api, colonies, namespace, stack, operator):
    """The Job controller marks a Job Complete a batch period after its pod ends; the operator
    reads the end from the pod. With the controller-manager stopped the process still
    succeeds, with its log, and its Job is marked reported, while it has no terminal condition."""
    ex = await start_executor(api, colonies, namespace, stack)
    process = await ex.submit(env={"KWOK_RUN_FOR": "3s", "KWOK_LOG_LINES": "3"})
    core = client.CoreV1Api(api)

    async def pod_running() -> bool:
        pods = (await core.list_namespaced_pod(namespace, label_selector=f"colonyos.io/process={process.processid[:20]}")).items
        return bool(pods) and pods[0].status.phase == "Running"

    await wait_for(pod_running, 60, "the pod to run")
    controller_manager = stack.pids["kube-controller-manager"]
    os.kill(controller_manager, signal.SIGSTOP)
    try:
        done = await ex.final(process.processid, timeout=60)

        async def marked() -> bool:
            return all((j.metadata.annotations or {}).get("colonyos.io/reported") for j in await ex.jobs())
        await wait_for(marked, 30, "the Job to be marked reported")
        jobs = await ex.jobs()
    finally:
        os.kill(controller_manager, signal.SIGCONT)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await ex.log_lines(process.processid) == ["line 1", "line 2", "line 3"]
    assert len(jobs) == 1 and not any(c.status == "True" for c in jobs[0].status.conditions or [])


async def test_capacity_for_one_job_runs_two_processes_one_after_the_other(api, colonies, namespace, stack, operator):
    """Counted by pods: the first process ends when its pod has succeeded, before the Job
    controller marks its Job Complete, and the second Job may be created in between."""
    ex = await start_executor(api, colonies, namespace, stack, capacity={"cpu": "1", "memory": "4Gi"})
    active: set[str] = set()
    most = 0
    seen_done: set[str] = set()

    async def follow_pods() -> None:
        nonlocal most
        async with watch.Watch() as w:
            async for event in w.stream(client.CoreV1Api(api).list_namespaced_pod, namespace, timeout_seconds=120):
                pod = event["object"]
                if event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                    active.discard(pod.metadata.name)
                    seen_done.add(pod.metadata.name)
                else:
                    active.add(pod.metadata.name)
                most = max(most, len(active))
                if len(seen_done) == 2:
                    return

    watcher = asyncio.create_task(follow_pods())
    # "1000m", not "1": Colonies stores a cpu without the "m" as 0m
    first = await ex.submit(conditions={"cpu": "1000m"}, env={"KWOK_RUN_FOR": "3s"})
    second = await ex.submit(conditions={"cpu": "1000m"}, env={"KWOK_RUN_FOR": "3s"})
    for process in (first, second):
        assert (await ex.final(process.processid)).state is ProcessState.SUCCESS
    await asyncio.wait_for(watcher, 60)
    assert most == 1


async def test_bad_funcspecs_fail_with_the_field_named_and_the_good_ones_around_them_succeed(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, allowedImages=["busybox*", "docker.io/library/"])
    good_before = await ex.submit()
    bad = {
        "kwargs.docker-image": await ex.submit(kwargs={"cmd": "echo", "args": ["no image"]}),
        "kwargs.args[0]": await ex.submit(kwargs={"docker-image": "busybox", "cmd": "echo", "args": [1, 2]}),
        "funcname": await ex.submit(funcname="foo"),
        "evil.example.com/miner": await ex.submit(kwargs={"docker-image": "evil.example.com/miner", "cmd": "mine"}),
    }
    # Colonies itself refuses an invalid memory unit at submit time, naming the value.
    with pytest.raises(errors.BadRequest, match="1GB"):
        await ex.submit(conditions={"mem": "1GB"})
    # and silently stores an invalid cpu as "0m" (its own parser's rule), so the process runs
    # with the executor's default request: there is no "abc" left for the operator to see.
    odd_cpu = await ex.submit(conditions={"cpu": "abc"})
    assert odd_cpu.spec.conditions.cpu == "0m"
    good_after = await ex.submit()
    for field, process in bad.items():
        done = await ex.final(process.processid)
        assert done.state is ProcessState.FAILED
        assert field in done.errors[0], done.errors
        assert await job_of(ex, process.processid) is None
    for process in (good_before, odd_cpu, good_after):
        assert (await ex.final(process.processid)).state is ProcessState.SUCCESS


async def test_a_workflow_of_three_dependent_steps_runs_in_dependency_order(executor_cr):
    ex = executor_cr
    steps = [ex.spec(nodename="fetch"),
             ex.spec(nodename="train", conditions={"dependencies": ["fetch"]}),
             ex.spec(nodename="report", conditions={"dependencies": ["train"]})]
    graph = await ex.colonies.user.submit_workflow(ex.colonies.colony, steps)
    done = {}
    for pid in graph.processids:
        process = await ex.final(pid)
        assert process.state is ProcessState.SUCCESS, process.errors
        done[process.spec.nodename] = process
    assert done["fetch"].endtime <= done["train"].starttime
    assert done["train"].endtime <= done["report"].starttime


async def test_a_missing_colony_key_secret_is_a_condition_and_an_event_until_it_is_created(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, secret=False, wait_ready=False)

    async def not_ready():
        cond = await ex.condition("Ready")
        return cond if cond and cond["status"] == "False" else None

    cond = await wait_for(not_ready, 60, "Ready=False")
    assert cond["reason"] == "ColonyKeySecretMissing" and "colony-key" in cond["message"]

    async def warning():
        return [e for e in await ex.events() if e.type == "Warning" and e.reason == "ColonyKeySecretMissing"]

    await wait_for(warning, 30, "a Warning Event about the missing Secret")
    pid_before = operator.pid
    await create_colony_key_secret(api, namespace, stack.colonies.colony_prvkey)

    async def ready():
        cond = await ex.condition("Ready")
        return cond and cond["status"] == "True"

    await wait_for(ready, 60, "Ready=True once the Secret exists")
    assert operator.pid == pid_before and os.path.exists(f"/proc/{operator.pid}")
    process = await ex.submit()
    assert (await ex.final(process.processid)).state is ProcessState.SUCCESS

    executor_id = (await ex.resource())["status"]["executorId"]
    assert any(e.executorid == executor_id for e in await colonies.user.get_executors(colonies.colony))
    await client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, ex.name)

    async def unregistered():  # v1.9.12 keeps removed executors, in state UNREGISTERED
        return all(e.executorid != executor_id or e.state is ExecutorState.UNREGISTERED
                   for e in await colonies.user.get_executors(colonies.colony))

    await wait_for(unregistered, 60, "the executor to be removed from Colonies")


async def _no_job(ex, process_id: str) -> bool:
    return await job_of(ex, process_id) is None


async def test_an_unusable_spec_is_a_condition_and_an_event_and_fixing_it_recovers(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, wait_ready=False, capacity={"cpu": "lots"})

    async def invalid():
        cond = await ex.condition("Ready")
        return cond if cond and cond["reason"] == "InvalidSpec" else None

    cond = await wait_for(invalid, 30, "Ready=False, reason InvalidSpec")
    assert "spec.capacity.cpu" in cond["message"]

    async def warned():  # Events are posted after the status patch, by kopf's own poster
        return any(e.reason == "InvalidSpec" and e.type == "Warning" for e in await ex.events())
    await wait_for(warned, 30, "a Warning Event with reason InvalidSpec")
    await patch_spec(api, namespace, ex.name, {"capacity": {"cpu": "2"}})

    async def ready():
        cond = await ex.condition("Ready")
        return cond and cond["status"] == "True"

    await wait_for(ready, 30, "Ready=True after the fix")


async def patch_spec(api, namespace: str, name: str, spec: dict) -> None:
    await client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}, _content_type="application/merge-patch+json")
