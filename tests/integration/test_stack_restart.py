"""Restarting the Colonies server or kube-apiserver mid-test keeps the stack whole.

These run on a stack of their own (a few seconds to start), so restarting its processes
disturbs no other test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.api_client import ApiClient

from tests.helpers import colonies_cli, fresh_stack, wait_for
from teststack import colonies_server, kube
from teststack import stack as teststack
from teststack.state import StackState

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack(request: pytest.FixtureRequest) -> Iterator[StackState]:
    with fresh_stack(request) as state:
        yield state


async def run_a_job(state: StackState, ns: str) -> str:
    """Create a namespace and a Job that echoes; return its log once it completed."""
    cfg = client.Configuration()
    await config.load_kube_config(config_file=state.kubeconfig, client_configuration=cfg)
    async with ApiClient(cfg) as api:
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        await wait_for(lambda: core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns))),
                       60, f"namespace {ns} to be created")
        await wait_for(lambda: core.read_namespaced_service_account("default", ns), 60, "the default ServiceAccount")
        body = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "echo"},
                "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", f"echo {ns}"]}]}}}}
        await batch.create_namespaced_job(ns, body)

        async def complete():
            j = await batch.read_namespaced_job("echo", ns)
            return any(c.type == "Complete" and c.status == "True" for c in j.status.conditions or [])
        await wait_for(complete, 60, "the Job to complete")
        pods = await core.list_namespaced_pod(ns, label_selector="job-name=echo")
        # kwok serves a pod's log once its own watch of Logs objects delivered the pod's; after
        # an apiserver restart that watch resumes a moment later than the ones that ran the Job
        return await wait_for(lambda: core.read_namespaced_pod_log(pods.items[0].metadata.name, ns), 30,
                              "kwok to serve the pod's log")


async def test_the_apiserver_restarts_on_its_port_with_its_data(own_stack):
    before = f"before-{uuid.uuid4().hex[:6]}"
    assert (await run_a_job(own_stack, before)).strip() == before
    old_pid = own_stack.pids["kube-apiserver"]

    state = kube.restart_apiserver(own_stack)

    assert state.pids["kube-apiserver"] != old_pid and state.kube.api_port == own_stack.kube.api_port
    assert teststack.load_state(state.run_dir) == state
    assert all(ok for ok, _ in teststack.status(state).values()), teststack.status(state)
    # objects survived, and kwok/scheduler/controllers/podlogs resumed their watches
    after = f"after-{uuid.uuid4().hex[:6]}"
    assert (await run_a_job(state, after)).strip() == after


def test_the_colonies_server_restarts_on_its_port_with_its_data(own_stack):
    current = teststack.load_state(own_stack.run_dir)  # an earlier test may have restarted something
    old_pid = current.pids["colonies-server"]

    state = colonies_server.restart_colonies(current)

    assert state.pids["colonies-server"] != old_pid and state.colonies == current.colonies
    assert teststack.load_state(state.run_dir) == state
    assert state.colonies.user_name in colonies_cli(state, "user", "ls")
    ports = colonies_server.listening_ports(state.pids["colonies-server"])
    c = state.colonies
    assert {c.port, c.etcd_client_port, c.etcd_peer_port, c.relay_port} <= ports
    assert not ports & {2379, 2380, 2381}
