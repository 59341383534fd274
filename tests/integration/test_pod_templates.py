"""Production fit on the real stack: a full pod template (on the real node, where the kubelet
decides what a volume or a sidecar does), profiles that give one executor a CPU and a GPU
shape, and every field of conditions.gpu honoured on kwok GPU nodes labelled as GPU Feature
Discovery labels them, with NVIDIA and AMD resource names."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from colonies_operator.colonies.models import ProcessState
from tests.fixtures.operator import start_executor, real_node_template
from tests.helpers import wait_for
from teststack import kube

pytestmark = pytest.mark.integration

TAINT = "colonyos.io/test-gpu-nodes"
PRODUCT, MEMORY = "nvidia.com/gpu.product", "nvidia.com/gpu.memory"
A100, T4 = "NVIDIA-A100-SXM4-80GB", "Tesla-T4"


async def job_of(ex, process_id: str):
    return next((j for j in await ex.jobs() if j.metadata.annotations.get("colonyos.io/process-id") == process_id),
                None)


async def node_of(ex, process_id: str) -> str:
    pods = await client.CoreV1Api(ex.api).list_namespaced_pod(
        ex.namespace, label_selector=f"colonyos.io/process={process_id[:20]}")
    return pods.items[0].spec.node_name


def gpu_node(name: str, labels: dict[str, str], gpus: dict[str, str], suffix: str) -> dict:
    node = kube.node_manifest(name, gpu=False)
    node["metadata"]["labels"].update({**labels, TAINT: suffix})
    node["status"]["capacity"].update(gpus)
    node["status"]["allocatable"].update(gpus)
    node["spec"] = {"taints": [{"key": TAINT, "value": "yes", "effect": "NoSchedule"}]}
    return node


@pytest_asyncio.fixture
async def gpu_nodes(api) -> AsyncIterator[dict[str, str]]:
    """Three tainted kwok nodes: an A100 (80 GiB), a T4 (16 GiB), both nvidia.com/gpu, and an
    AMD node with amd.com/gpu; deleted at the end."""
    suffix = uuid.uuid4().hex[:6]
    names = {"a100": f"gpu-a100-{suffix}", "t4": f"gpu-t4-{suffix}", "amd": f"gpu-amd-{suffix}"}
    manifests = [
        gpu_node(names["a100"], {PRODUCT: A100, MEMORY: "81920"}, {"nvidia.com/gpu": "8"}, suffix),
        gpu_node(names["t4"], {PRODUCT: T4, MEMORY: "16384"}, {"nvidia.com/gpu": "4"}, suffix),
        gpu_node(names["amd"], {"amd.com/gpu.product": "MI300X"}, {"amd.com/gpu": "4"}, suffix),
    ]
    core = client.CoreV1Api(api)
    for manifest in manifests:
        await core.create_node(manifest)
    try:
        async def ready() -> bool:
            nodes = [await core.read_node(n) for n in names.values()]
            return all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
                       for n in nodes)
        await wait_for(ready, 60, "the kwok GPU nodes to be Ready")
        yield {**names, "suffix": suffix}
    finally:
        for name in names.values():
            await core.delete_node(name)


TOLERATE = {"tolerations": [{"key": TAINT, "operator": "Exists"}]}


def only_on(gpu_nodes: dict[str, str]) -> dict:
    """A jobTemplate for this test's GPU nodes alone: other tests may label the stack's own GPU
    node as an A100 too (test_examples does)."""
    return {**TOLERATE, "nodeSelector": {TAINT: gpu_nodes["suffix"]}}


async def test_gpu_name_memory_and_nodecount_choose_the_node_or_fail_naming_why(
        api, colonies, namespace, stack, operator, gpu_nodes):
    ex = await start_executor(api, colonies, namespace, stack, capacity={"cpu": "8", "memory": "16Gi", "gpu": 8},
                              gpu={"nodeLabel": PRODUCT, "products": {"a100": A100, "t4": T4}},
                              jobTemplate=only_on(gpu_nodes))
    wants = {
        "a100 with 40 GiB": ({"count": 1, "name": "a100", "mem": "40Gi"}, gpu_nodes["a100"]),
        "any GPU with 60 GiB": ({"count": 1, "mem": "60Gi"}, gpu_nodes["a100"]),
        "t4 with 16 GiB": ({"count": 1, "name": "t4", "mem": "16Gi"}, gpu_nodes["t4"]),
        "two nodes, two GPU nodes": ({"count": 1, "name": "t4", "nodecount": 2}, gpu_nodes["t4"]),
    }
    submitted = {}
    for what, (gpu, _) in wants.items():
        nodes = gpu.get("nodecount", 1)
        submitted[what] = await ex.submit(conditions={"gpu": gpu, "nodes": nodes})
    too_big = await ex.submit(conditions={"gpu": {"count": 1, "mem": "100Gi"}})

    for what, (_, node) in wants.items():
        done = await ex.final(submitted[what].processid)
        assert done.state is ProcessState.SUCCESS, (what, done.errors)
        assert await node_of(ex, done.processid) == node, what
    failed = await ex.final(too_big.processid)
    assert failed.state is ProcessState.FAILED and failed.errors[0].startswith("Unschedulable("), failed.errors
    # v1.9.12 has no column for gpu.nodecount: it comes back 0, so the operator's check of it
    # (tests/unit/test_spec.py) only matters with a server that keeps it.
    stored = await colonies.user.get_process(submitted["two nodes, two GPU nodes"].processid)
    assert stored.spec.raw["conditions"]["gpu"]["nodecount"] == 0


async def test_an_amd_executor_requests_amd_gpus_and_counts_them_against_its_capacity(
        api, colonies, namespace, stack, operator, gpu_nodes):
    ex = await start_executor(api, colonies, namespace, stack, capacity={"cpu": "8", "memory": "16Gi", "gpu": 2},
                              gpu={"resourceName": "amd.com/gpu", "nodeLabel": "amd.com/gpu.product"},
                              jobTemplate=only_on(gpu_nodes))
    processes = [await ex.submit(conditions={"gpu": {"count": 2, "name": "MI300X"}}, env={"KWOK_RUN_FOR": "3s"})
                 for _ in range(3)]
    most_at_once = 0
    pending = {p.processid for p in processes}
    while pending:  # capacity.gpu 2 and 2 GPUs each: one Job at a time
        running = [j for j in await ex.jobs() if not (j.status and (j.status.succeeded or j.status.failed))]
        most_at_once = max(most_at_once, len(running))
        for pid in list(pending):
            if (await colonies.user.get_process(pid)).state in (ProcessState.SUCCESS, ProcessState.FAILED):
                pending.discard(pid)
        await asyncio.sleep(0.2)
    for p in processes:
        done = await ex.final(p.processid)
        assert done.state is ProcessState.SUCCESS, done.errors
        assert await node_of(ex, p.processid) == gpu_nodes["amd"]
        resources = (await job_of(ex, p.processid)).spec.template.spec.containers[0].resources
        assert resources.limits["amd.com/gpu"] == "2" and "nvidia.com/gpu" not in resources.limits
    assert most_at_once == 1


async def test_profiles_give_one_executor_a_cpu_and_a_gpu_shape(api, colonies, namespace, stack, operator, gpu_nodes):
    ex = await start_executor(
        api, colonies, namespace, stack, capacity={"cpu": "8", "memory": "16Gi", "gpu": 4}, limits={"gpu": 0},
        jobTemplate={"nodeSelector": {"kubernetes.io/hostname": kube.CPU_NODES[0]}, "labels": {"team": "ml"}},
        profiles={"gpu": {"nodeSelector": {"kubernetes.io/hostname": gpu_nodes["a100"]}, **TOLERATE,
                          "limits": {"gpu": 2}}})
    plain = await ex.submit()
    gpu = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "profile": "gpu"},
                          conditions={"gpu": {"count": 2}})
    unknown = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "profile": "tpu"})
    too_many = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "profile": "gpu"},
                               conditions={"gpu": {"count": 3}})

    for process, node in ((plain, kube.CPU_NODES[0]), (gpu, gpu_nodes["a100"])):
        done = await ex.final(process.processid)
        assert done.state is ProcessState.SUCCESS, done.errors
        assert await node_of(ex, process.processid) == node
    labels = (await job_of(ex, gpu.processid)).metadata.labels
    assert labels["colonyos.io/profile"] == "gpu" and labels["team"] == "ml"
    for process, words in ((unknown, "kwargs.profile 'tpu' is not a profile of this executor (its profiles: gpu)"),
                           (too_many, "conditions.gpu.count 3 is over this executor's limit of 2")):
        done = await ex.final(process.processid)
        assert done.state is ProcessState.FAILED and words in done.errors[0], done.errors
        assert await job_of(ex, process.processid) is None


async def test_a_template_below_the_security_floor_is_a_condition_naming_its_path(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, wait_ready=False, jobTemplate={"podTemplate": {
        "spec": {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}})

    async def invalid():
        cond = await ex.condition("Ready")
        return cond if cond and cond["reason"] == "InvalidSpec" else None

    cond = await wait_for(invalid, 30, "Ready=False, reason InvalidSpec")
    assert "spec.jobTemplate.podTemplate.spec.volumes[0].hostPath: hostPath volumes are below" in cond["message"]


async def test_a_template_the_apiserver_would_refuse_is_a_condition_before_any_process_runs(
        api, colonies, namespace, stack, operator):
    # a port number out of range: only the apiserver knows
    broken = {"spec": {"containers": [{"name": "main", "ports": [{"containerPort": 70000}]}]}}
    ex = await start_executor(api, colonies, namespace, stack, wait_ready=False,
                              profiles={"gpu": {"podTemplate": broken}})

    async def invalid():
        cond = await ex.condition("Ready")
        return cond if cond and cond["reason"] == "InvalidSpec" else None

    cond = await wait_for(invalid, 30, "Ready=False, reason InvalidSpec")
    assert cond["message"].startswith("spec.profiles.gpu.podTemplate: the apiserver refuses the Jobs it makes:")
    assert ("spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and "
            "65535" in cond["message"])
    assert await ex.jobs() == []  # a dry run: nothing was created


SIDECAR = """trap 'exit 0' TERM; echo from-the-sidecar > /shared/note; while true; do sleep 1; done"""
PROGRAM = ("grep ' /dev/shm ' /proc/mounts | cut -d' ' -f3; df -k /dev/shm | tail -1 | awk '{print $2}'; cat /config/greeting; echo \"$GREETING\"; "
           "while [ ! -f /shared/note ]; do sleep 0.2; done; cat /shared/note; pwd")


async def test_a_pod_template_brings_shm_a_configmap_a_sidecar_and_env_on_the_real_node(
        api, colonies, namespace, stack, operator):
    await client.CoreV1Api(api).create_namespaced_config_map(namespace, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="greeting"), data={"greeting": "hello from a ConfigMap\n"}))
    template = {
        "metadata": {"labels": {"team": "vision"}},
        "spec": {
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                        {"name": "config", "configMap": {"name": "greeting"}},
                        {"name": "shared", "emptyDir": {}}],
            "containers": [{"name": "main", "workingDir": "/config",
                            "env": [{"name": "GREETING", "value": "hello from the template"}],
                            "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"},
                                             {"name": "config", "mountPath": "/config", "readOnly": True},
                                             {"name": "shared", "mountPath": "/shared"}]}],
            "initContainers": [{"name": "helper", "image": "busybox:1.36", "restartPolicy": "Always",
                                "command": ["sh", "-c", SIDECAR],
                                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}]}],
        },
    }
    ex = await start_executor(api, colonies, namespace, stack,
                              jobTemplate=real_node_template(stack, podTemplate=template))
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": PROGRAM})
    done = await ex.final(process.processid, timeout=120)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await ex.log_lines(process.processid) == [
        "tmpfs", "65536", "hello from a ConfigMap", "hello from the template", "from-the-sidecar", "/config"]
    pod = (await client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"colonyos.io/process={process.processid[:20]}")).items[0]
    assert pod.metadata.labels["team"] == "vision"
    assert pod.spec.init_containers[0].security_context.capabilities.drop == ["ALL"]


async def test_a_profile_with_a_capacity_of_its_own_runs_its_processes_within_it(
        api, colonies, namespace, stack, operator, gpu_nodes):
    ex = await start_executor(
        api, colonies, namespace, stack, capacity={"cpu": "8", "memory": "16Gi", "gpu": 8},
        jobTemplate=only_on(gpu_nodes),
        gpu={"nodeLabel": PRODUCT}, profiles={"a100": {"capacity": {"gpu": 2}}})
    kwargs = {"docker-image": "busybox:1.36", "cmd": "echo", "profile": "a100"}
    pool = [await ex.submit(kwargs=kwargs, conditions={"gpu": {"count": 2, "name": A100}}, env={"KWOK_RUN_FOR": "3s"})
            for _ in range(2)]
    free = await ex.submit(conditions={"gpu": {"count": 2, "name": A100}}, env={"KWOK_RUN_FOR": "3s"})
    overlaps = set()
    pending = {p.processid for p in (*pool, free)}
    while pending:  # the profile has room for one of its own at a time; the third is outside it
        running = {j.metadata.annotations["colonyos.io/process-id"] for j in await ex.jobs()
                   if not (j.status and (j.status.succeeded or j.status.failed))}
        overlaps.add(frozenset(running))
        for pid in list(pending):
            if (await colonies.user.get_process(pid)).state in (ProcessState.SUCCESS, ProcessState.FAILED):
                pending.discard(pid)
        await asyncio.sleep(0.2)
    for p in (*pool, free):
        assert (await ex.final(p.processid)).state is ProcessState.SUCCESS
    both_of_the_profile = {pool[0].processid, pool[1].processid}
    assert not any(both_of_the_profile <= running for running in overlaps)
    assert any(free.processid in running and running & both_of_the_profile for running in overlaps)
