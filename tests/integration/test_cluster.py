"""The test cluster itself behaves like a cluster: Jobs run on kwok nodes to their real
outcome, pod logs come back through the pods/log API, CRDs work, GPUs are scheduled.

These pin down what the operator's integration tests rely on. Pods are steered by container
env (see teststack/kwok_stages.yaml): KWOK_RUN_FOR, KWOK_EXIT_CODE, KWOK_OOM,
KWOK_TERMINATION_MESSAGE, KWOK_LOG / KWOK_LOG_LINES, and images under unpullable.invalid/.
"""

from __future__ import annotations

import asyncio

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests.helpers import wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 60


def job(name: str, *, env: dict[str, str] | None = None, command: list[str] | None = None,
        image: str = "busybox:1.36", resources: dict | None = None, node_selector: dict | None = None) -> dict:
    container = {"name": "main", "image": image,
                 "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    if command:
        container["command"] = command
    if resources:
        container["resources"] = resources
    pod_spec = {"restartPolicy": "Never", "containers": [container]}
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}}}


async def create_job(api: ApiClient, ns: str, body: dict) -> None:
    await client.BatchV1Api(api).create_namespaced_job(ns, body)


async def job_condition(api: ApiClient, ns: str, name: str) -> str | None:
    """'Complete' or 'Failed' once the Job has that condition, else None."""
    j = await client.BatchV1Api(api).read_namespaced_job(name, ns)
    for c in j.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return c.type
    return None


async def job_pod(api: ApiClient, ns: str, name: str) -> client.V1Pod | None:
    pods = await client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"job-name={name}")
    return pods.items[0] if pods.items else None


async def finished_job_pod(api: ApiClient, ns: str, name: str, outcome: str) -> client.V1Pod:
    got = await wait_for(lambda: job_condition(api, ns, name), TIMEOUT, f"Job {name} to finish")
    assert got == outcome

    async def terminal_pod():
        pod = await job_pod(api, ns, name)
        return pod if pod and pod.status.phase in ("Succeeded", "Failed") else None
    return await wait_for(terminal_pod, TIMEOUT, f"the pod of Job {name} to be terminal")


async def test_a_job_is_scheduled_on_a_kwok_node_and_completes(stack, api, namespace):
    await create_job(api, namespace, job("hello", command=["/bin/sh", "-c", "echo hi"]))
    pod = await finished_job_pod(api, namespace, "hello", "Complete")
    assert pod.spec.node_name in stack.kube.nodes
    assert pod.status.phase == "Succeeded"
    [status] = pod.status.container_statuses
    assert status.state.terminated.exit_code == 0 and status.state.terminated.reason == "Completed"


async def test_a_nonzero_exit_code_fails_the_job(api, namespace):
    await create_job(api, namespace, job("exit3", env={"KWOK_EXIT_CODE": "3"}))
    pod = await finished_job_pod(api, namespace, "exit3", "Failed")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")


async def test_an_oom_kill_is_reported_as_oomkilled(api, namespace):
    await create_job(api, namespace, job("oom", env={"KWOK_OOM": "true"}))
    pod = await finished_job_pod(api, namespace, "oom", "Failed")
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


async def test_the_termination_message_lands_in_the_terminated_state(api, namespace):
    message = '{"answer": 42}'
    await create_job(api, namespace, job("msg", env={"KWOK_TERMINATION_MESSAGE": message}))
    pod = await finished_job_pod(api, namespace, "msg", "Complete")
    assert pod.status.container_statuses[0].state.terminated.message == message


async def test_an_unpullable_image_waits_in_errimagepull(api, namespace):
    image = "unpullable.invalid/nothing:1"
    await create_job(api, namespace, job("pull", image=image))

    async def waiting():
        pod = await job_pod(api, namespace, "pull")
        statuses = (pod.status.container_statuses or []) if pod else []
        return pod if statuses and statuses[0].state.waiting else None
    pod = await wait_for(waiting, TIMEOUT, "the unpullable pod to report a waiting container")
    state = pod.status.container_statuses[0].state
    assert state.waiting.reason == "ErrImagePull"
    assert "failed to pull image" in state.waiting.message and image in state.waiting.message
    assert pod.status.phase == "Pending" and state.running is None and state.terminated is None


async def test_logs_of_a_finished_pod_are_what_its_shell_echoed(api, namespace):
    script = "echo hello world; ls /; echo 'two  spaces' && echo \"a;b\"\necho last"
    await create_job(api, namespace, job("echo", command=["/bin/sh", "-c", script]))
    pod = await finished_job_pod(api, namespace, "echo", "Complete")
    text = await client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, namespace, container="main")
    assert text.splitlines() == ["hello world", "two  spaces", "a;b", "last"]


async def test_logs_are_complete_when_the_pod_runs_and_follow_streams_them(api, namespace):
    lines = [f"step {i}" for i in range(1, 6)]
    await create_job(api, namespace, job("follow", env={"KWOK_LOG": "\n".join(lines), "KWOK_RUN_FOR": "60s"}))
    core = client.CoreV1Api(api)

    async def running():
        pod = await job_pod(api, namespace, "follow")
        return pod if pod and pod.status.phase == "Running" else None
    pod = await wait_for(running, TIMEOUT, "the pod to run")
    # the moment it runs, the whole log is there (podlogs gates the Running stage)
    text = await core.read_namespaced_pod_log(pod.metadata.name, namespace, timestamps=True)
    stamped = text.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == lines
    stamps = [line.split(" ", 1)[0] for line in stamped]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

    resp = await core.read_namespaced_pod_log(pod.metadata.name, namespace, follow=True, _preload_content=False)
    try:
        got: list[str] = []

        async def read_all() -> None:
            while len(got) < len(lines):
                raw = await resp.content.readline()
                assert raw, "the follow stream ended early"
                got.append(raw.decode().rstrip("\n"))
        await asyncio.wait_for(read_all(), TIMEOUT)
    finally:
        resp.release()
    assert got == lines


async def test_log_lines_env_and_per_container_logs(api, namespace):
    body = job("multi", env={"KWOK_LOG_LINES": "3"})
    body["spec"]["template"]["spec"]["containers"].append(
        {"name": "side", "image": "busybox:1.36", "command": ["echo", "from", "the side"]})
    await create_job(api, namespace, body)
    pod = await finished_job_pod(api, namespace, "multi", "Complete")
    core = client.CoreV1Api(api)
    main = await core.read_namespaced_pod_log(pod.metadata.name, namespace, container="main")
    side = await core.read_namespaced_pod_log(pod.metadata.name, namespace, container="side")
    assert main.splitlines() == ["line 1", "line 2", "line 3"]
    assert side.splitlines() == ["from the side"]
    assert {s.name: s.state.terminated.exit_code for s in pod.status.container_statuses} == {"main": 0, "side": 0}


async def test_a_gpu_request_is_scheduled_on_the_gpu_node(stack, api, namespace):
    gpu = {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
    await create_job(api, namespace, job("gpu", resources=gpu, node_selector={"accelerator": "a100"}))
    pod = await finished_job_pod(api, namespace, "gpu", "Complete")
    assert pod.spec.node_name == stack.kube.gpu_node


async def test_a_request_no_node_can_hold_stays_unschedulable(api, namespace):
    await create_job(api, namespace, job("huge", resources={"requests": {"cpu": "64"}}))

    async def unschedulable():
        pod = await job_pod(api, namespace, "huge")
        for c in (pod.status.conditions or []) if pod else []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return c
        return None
    cond = await wait_for(unschedulable, TIMEOUT, "the scheduler to report the pod Unschedulable")
    assert "Insufficient cpu" in cond.message


async def test_a_crd_is_established_and_serves_custom_objects(api, namespace):
    ext = client.ApiextensionsV1Api(api)
    group, plural = "test.colonyos.io", "widgets"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                     "type": "object", "properties": {"spec": {"type": "object", "properties": {
                         "size": {"type": "integer"}, "color": {"type": "string"}}}}}}}]},
    }
    try:
        await ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:  # left by an earlier run against a reused stack
            raise

    async def established():
        got = await ext.read_custom_resource_definition(f"{plural}.{group}")
        return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])
    await wait_for(established, TIMEOUT, "the Widget CRD to be Established")

    objects = client.CustomObjectsApi(api)
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"},
              "spec": {"size": 3, "color": "blue"}}
    await wait_for(lambda: objects.create_namespaced_custom_object(group, "v1", namespace, plural, widget),
                   TIMEOUT, "the Widget kind to be served")
    back = await objects.get_namespaced_custom_object(group, "v1", namespace, plural, "w1")
    assert back["spec"] == {"size": 3, "color": "blue"}


async def test_bare_pods_finish_or_keep_running_by_restart_policy_and_deletion_removes_them(api, namespace):
    core = client.CoreV1Api(api)

    def pod(name: str, restart: str) -> dict:
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": "busybox:1.36"}]}}

    async def phase(name: str, want: str):
        p = await core.read_namespaced_pod(name, namespace)
        return p if p.status.phase == want else None
    await core.create_namespaced_pod(namespace, pod("server", "Always"))
    await wait_for(lambda: phase("server", "Running"), TIMEOUT, "the restartPolicy Always pod to run")
    await core.create_namespaced_pod(namespace, pod("once", "Never"))
    await wait_for(lambda: phase("once", "Succeeded"), TIMEOUT, "the restartPolicy Never pod to succeed")
    # the Never pod ran its whole (default) time after the Always one started: that one still runs
    server = await core.read_namespaced_pod("server", namespace)
    assert server.status.phase == "Running" and server.status.container_statuses[0].ready is True

    await core.delete_namespaced_pod("server", namespace)

    async def gone():
        try:
            await core.read_namespaced_pod("server", namespace)
        except ApiException as e:
            return e.status == 404
        return False
    await wait_for(gone, TIMEOUT, "the deleted pod to disappear")
