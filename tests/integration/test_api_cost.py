"""What a process costs the apiserver, counted on the runtime's own instrumented client:
watches and log streams are shared or inherent and are excluded; everything else is not."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from colonies_operator import config as cfg
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import ProcessState
from colonies_operator.runtime.executor import ExecutorRuntime
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.watch import JobWatch
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

STREAMS = ("watch", "log")


def requests_since(kube: KubeApi, before: Counter) -> Counter:
    delta = kube.counter.snapshot()
    delta.subtract(before)
    return Counter({k: n for k, n in delta.items() if n and k[0] not in STREAMS})


async def test_one_process_costs_at_most_six_kubernetes_requests_and_none_while_it_runs(stack, colonies, namespace):
    kube = await KubeApi.connect(stack.kubeconfig)
    watch = JobWatch(kube, namespace)
    executor_type = f"cost-{namespace}"
    settings = cfg.OperatorSettings(server_host=stack.colonies.host, server_port=stack.colonies.port,
                                    colony_name=colonies.colony)
    config = cfg.executor_config(namespace, "cost", {
        "executorType": executor_type, "colonyKeySecretRef": {"name": "unused"},
        "capacity": {"cpu": "4", "memory": "8Gi"}, "logs": {"flushSeconds": 0.2}}, settings)
    runtime = ExecutorRuntime(config, connection=colonies.connection, colony_key=Key(stack.colonies.colony_prvkey),
                              executor_key=Key.generate(), kube=kube, watch=watch)
    task = asyncio.create_task(runtime.run())
    try:
        await wait_for(lambda: runtime.health.registered and watch.ready.is_set(), 30, "the runtime to start")
        before = kube.counter.snapshot()
        process = await colonies.user.submit({
            "funcname": "execute", "maxexectime": -1, "maxwaittime": -1, "maxretries": 0,
            "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hello", "world"]},
            "env": {"KWOK_RUN_FOR": "5s"},
            "conditions": {"colonyname": colonies.colony, "executortype": executor_type, "cpu": "100m", "mem": "64Mi"}})

        async def running():
            job, pods = watch.state(f"colony-{process.processid[:20]}-0")
            return any(p.get("status", {}).get("phase") == "Running" for p in pods)

        await wait_for(running, 30, "the pod to run")
        while_running = kube.counter.snapshot()
        await wait_for(lambda: runtime.stats.succeeded == 1, 60, "the supervisor to finish")
        done = await colonies.user.get_process(process.processid)
        assert done.state is ProcessState.SUCCESS
        during = requests_since(kube, while_running)
        total = requests_since(kube, before)
        print(f"\nKubernetes requests for one process: {sum(total.values())} {dict(total)}")
        assert sum(total.values()) <= 6, dict(total)
        assert sum(n for (verb, _, _), n in during.items() if verb == "get") == 0  # no polling while it runs
        assert set(during) <= {("patch", "jobs", 200)}, dict(during)  # only the final "reported" mark
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await watch.stop()
        await runtime.registration.unregister()
        await kube.close()
