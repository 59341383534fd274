"""Two minutes of the soak (bench/soak.py): a steady stream of processes while every kind of
fault lands once, on a stack and an operator of its own. Nothing is lost, nothing ends in a way
the faults do not explain, nothing runs twice, and every succeeded process's log is exact.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.api_client import ApiClient

from bench.soak import FAULTS, Soak, SoakSettings
from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress
from colonies_operator.runtime.kube import KubeApi
from teststack.state import StackState
from tests.fixtures.colonies import Colonies
from tests.fixtures.kube import new_namespace
from tests.fixtures.operator import CRD, RunningOperator, running_operator, start_executor
from tests.helpers import fresh_stack

pytestmark = pytest.mark.integration

SETTINGS = SoakSettings(seconds=120, rate=2, run_for=(3, 12), log_lines=30, fault_every=120 / len(FAULTS),
                        seed=13, stop_etcd_seconds=10, stop_operator_seconds=15, cancel=3, drain_timeout=300,
                        rss_window=30)


@pytest.fixture(scope="module")
def soak_stack(request) -> Iterator[StackState]:
    import subprocess
    with fresh_stack(request) as state:
        kubectl = [f"{state.bin_dir}/kubectl", "--kubeconfig", state.kubeconfig]
        subprocess.run([*kubectl, "apply", "-f", str(CRD)], check=True, capture_output=True)
        subprocess.run([*kubectl, "wait", "--for", "condition=Established", "--timeout=60s",
                        "crd/colonyexecutors.colonyos.io"], check=True, capture_output=True)
        yield state


class Restartable:
    """The operator under soak: SIGKILLed and started again by a fault."""

    def __init__(self, state: StackState) -> None:
        self.state = state
        self.stack = contextlib.ExitStack()
        self.current: RunningOperator = self._start()

    def _start(self) -> RunningOperator:
        return self.stack.enter_context(running_operator(self.state, "--namespace", "sk-*",
                                                         name=f"operator-{uuid.uuid4().hex[:6]}"))

    @property
    def pid(self) -> int:
        return self.current.pid

    def restart(self) -> None:
        import os
        import signal
        os.kill(self.current.pid, signal.SIGKILL)
        self.current = self._start()  # the killed one is stopped by pid when the test ends

    def close(self) -> None:
        self.stack.close()


@pytest_asyncio.fixture
async def soak_clients(soak_stack) -> AsyncIterator[tuple[ApiClient, Colonies, KubeApi]]:
    cfg = client.Configuration()
    await config.load_kube_config(config_file=soak_stack.kubeconfig, client_configuration=cfg)
    info = soak_stack.colonies
    kube = await KubeApi.connect(soak_stack.kubeconfig)
    async with ApiClient(cfg) as api, Connection(ServerAddress(info.host, info.port),
                                                 retry=RetryPolicy(attempts=30, deadline=120)) as connection:
        yield api, Colonies(connection=connection, url=f"http://{info.host}:{info.port}", colony=info.colony_name,
                            server_owner=connection.client(info.server_prvkey),
                            owner=connection.client(info.colony_prvkey),
                            user=connection.client(info.user_prvkey)), kube
    await kube.close()


async def test_two_minutes_of_every_fault_lose_nothing_and_run_nothing_twice(soak_stack, soak_clients):
    api, colonies, kube = soak_clients
    namespace = await new_namespace(api, "sk")
    operator = Restartable(soak_stack)
    try:
        ex = await start_executor(api, colonies, namespace, soak_stack, logs={"flushSeconds": 0.5},
                                  capacity={"cpu": "64", "memory": "128Gi", "maxConcurrentJobs": 200})
        soak = Soak(soak_stack, colonies.user, kube, namespace=namespace, executor_type=ex.executor_type,
                    operator=operator, settings=SETTINGS)
        figures = await soak.run()
    finally:
        operator.close()
        await client.CoreV1Api(api).delete_namespace(namespace)
    print(f"\nsoak figures: {figures}")
    assert sorted(f["fault"] for f in figures["faults"]) == sorted(FAULTS)
    assert not [f for f in figures["faults"] if f["detail"].startswith("not injected")], figures["faults"]
    assert figures["not_final"] == 0
    assert figures["unexplained"] == 0, figures["unexplained_first"]
    assert figures["ran_in_more_than_one_job"] == 0
    assert figures["log_lines_lost"] == 0 and figures["log_lines_duplicated"] == 0
    assert figures["processes_with_log_not_exact"] == 0
    assert figures["states"].get("SUCCESS", 0) >= figures["submitted"] - figures["cancelled_by_soak"] \
        - figures["jobs_deleted_by_soak"]
