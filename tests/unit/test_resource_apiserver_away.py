"""A ColonyExecutor keeps serving while the apiserver is away: its status simply waits. Its
runtime (the assign loop and every supervisor) is not torn down because a status patch, a
Secret read or a dry run could not reach the apiserver."""

from __future__ import annotations

import asyncio

from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import ProcessState
from colonies_operator.runtime import resource as resource_module
from colonies_operator.runtime.resource import ExecutorResource
from colonies_operator.runtime.shared import Shared
from tests.fakes.colonies import FakeColoniesServer, FakeConnection
from tests.fakes.kube import FakeKube
from tests.unit.runtime_harness import COLONY, NAMESPACE, SETTINGS, eventually, for_a_while

SPEC = {"colonyKeySecretRef": {"name": "colony-key"}, "executorType": "away", "assignTimeoutSeconds": 5,
        "heartbeatSeconds": 1, "logs": {"flushSeconds": 0.05},
        "jobTemplate": {"podTemplate": {"spec": {"tolerations": [{"key": "k", "operator": "Exists"}]}}}}


class FakeShared(Shared):
    def __init__(self, kube: FakeKube, server: FakeColoniesServer) -> None:
        super().__init__(kube=kube, settings=SETTINGS)  # type: ignore[arg-type]
        self.fake_connection = FakeConnection(server)

    def connection(self, address):  # type: ignore[no-untyped-def]
        return self.fake_connection


async def test_an_apiserver_that_goes_away_stops_the_status_not_the_runtime(monkeypatch):
    monkeypatch.setattr(resource_module, "STATUS_SECONDS", 0.05)
    monkeypatch.setattr(resource_module, "RETRY_SECONDS", 0.05)
    server, kube = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05), FakeKube()
    colony_key, user_key = Key.generate(), Key.generate()
    server.add_colony(COLONY, colony_key)
    server.add_user(COLONY, user_key, "alice")
    await kube.create_secret(NAMESPACE, {"metadata": {"name": "colony-key"}, "stringData": {"colonyPrvKey": colony_key.private_hex}})
    kube.add_colony_executor(NAMESPACE, "ex", SPEC)
    shared = FakeShared(kube, server)
    stopping = asyncio.Event()

    async def wait_stopped(seconds: float) -> bool:
        try:
            await asyncio.wait_for(stopping.wait(), seconds)
        except TimeoutError:
            pass
        return stopping.is_set()

    resource = ExecutorResource(shared, NAMESPACE, "ex", "uid-1", spec=lambda: SPEC, generation=lambda: 1,
                                status={}, emit=lambda *event: None)
    serving = asyncio.create_task(resource.serve(wait_stopped, lambda: False))
    try:
        await eventually(lambda: resource.runtime and resource.runtime.health.assigning, "the runtime to assign")
        runtime = resource.runtime
        user = shared.fake_connection.client(user_key)
        kube.down()
        process = await user.submit({
            "funcname": "execute", "conditions": {"colonyname": COLONY, "executortype": "away", "cpu": "100m",
                                                  "mem": "64Mi", "nodes": 1, "processespernode": 1},
            "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hi"]}, "maxexectime": -1})
        await eventually(lambda: server.processes[process.processid].state == ProcessState.RUNNING.value,
                         "the process to be assigned while the apiserver is away")
        await for_a_while(0.5)  # ten status rounds (and the Job's create attempts) meet no apiserver
        kube.up()
        assert not serving.done(), serving.exception() if serving.done() else ""
        assert resource.runtime is runtime and shared.metrics.runtime_starts[f"{NAMESPACE}/ex"] == 1
        await eventually(lambda: [j for j in kube.objects["Job"].values()], "the process's Job, once it is back")
        await eventually(lambda: (kube.get("ColonyExecutor", NAMESPACE, "ex") or {}).get("status", {}).get("inFlight"),
                         "the status to be published again")
    finally:
        stopping.set()
        await asyncio.wait_for(serving, 10)
        await shared.close()
