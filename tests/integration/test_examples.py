"""The funcspecs in examples/ do what examples/README.md says, through the real operator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes_asyncio import client

from colonies_operator.colonies.models import ProcessState
from tests.fixtures.operator import start_executor

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str, executor) -> dict:
    spec = json.loads((EXAMPLES / name).read_text())
    spec["conditions"].update(colonyname=executor.colonies.colony, executortype=executor.executor_type)
    return spec


@pytest.fixture
async def big_executor(api, colonies, namespace, stack, operator):
    return await start_executor(api, colonies, namespace, stack,
                                capacity={"cpu": "8", "memory": "32Gi", "gpu": 1})


@pytest.mark.parametrize("name, state, lines", [
    ("hello.json", ProcessState.SUCCESS, ["hello world"]),
    ("resources.json", ProcessState.SUCCESS, None),
    ("failing.json", ProcessState.FAILED, ["about to fail"]),
    ("long-running.json", ProcessState.SUCCESS, [f"line {i}" for i in range(1, 101)]),
    ("output.json", ProcessState.SUCCESS, ["computing the answer"]),
])
async def test_an_example_funcspec_ends_as_documented(big_executor, name, state, lines):
    process = await big_executor.colonies.user.submit(example(name, big_executor))
    done = await big_executor.final(process.processid)
    assert done.state is state, done.errors
    if lines is not None:
        assert await big_executor.log_lines(process.processid) == lines
    if name == "output.json":
        assert done.output == ('{"answer": 42}',)
    if name == "failing.json":
        assert done.errors[0].startswith("ExitCode(3)")


async def test_the_shell_free_example_gets_its_process_id_substituted(big_executor):
    process = await big_executor.colonies.user.submit(example("shell-free.json", big_executor))
    done = await big_executor.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await big_executor.log_lines(process.processid) == [f"no shell involved for process {process.processid}"]


GPU_FEATURE_DISCOVERY = {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                         "nvidia.com/gpu.memory": "81920"}


@pytest.fixture
async def labelled_gpu_node(api, stack):
    """The stack's GPU node, labelled as GPU Feature Discovery labels an 80 GB A100 for the
    test's duration (other tests make GPU nodes of their own)."""
    core = client.CoreV1Api(api)
    await core.patch_node(stack.kube.gpu_node, {"metadata": {"labels": GPU_FEATURE_DISCOVERY}})
    try:
        yield stack.kube.gpu_node
    finally:
        await core.patch_node(stack.kube.gpu_node, {"metadata": {"labels": dict.fromkeys(GPU_FEATURE_DISCOVERY)}})


async def test_the_gpu_example_runs_in_the_gpu_profile_of_the_profiles_example_on_an_a100(
        api, colonies, namespace, stack, operator, labelled_gpu_node):
    resource = yaml.safe_load((EXAMPLES / "colonyexecutor-profiles.yaml").read_text())
    spec = {k: v for k, v in resource["spec"].items() if k != "executorType"}  # each test has its own type
    ex = await start_executor(api, colonies, namespace, stack, **spec)
    process = await colonies.user.submit(example("gpu.json", ex))
    done = await ex.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    pods = await client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"colonyos.io/process={process.processid[:20]},colonyos.io/profile=gpu")
    assert [p.spec.node_name for p in pods.items] == [labelled_gpu_node]
