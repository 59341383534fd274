"""One `ExecutorRuntime` against the in-memory peers: a fake Colonies server (a colony, a
user who submits) and a fake apiserver with its Job controller and kubelet. Tests drive
the peers (`kube.start(job)`, `server.unassign(pid)`) and wait for what follows."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from colonies_operator import config as cfg
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import Process, ProcessState
from colonies_operator.jobs import builder
from colonies_operator.runtime.executor import ExecutorRuntime
from colonies_operator.runtime.watch import JobWatch
from tests.fakes.colonies import FakeColoniesClient, FakeColoniesServer, FakeConnection
from tests.fakes.kube import FakeKube

COLONY, NAMESPACE = "dev", "jobs"
SETTINGS = cfg.OperatorSettings(server_host="colonies.test", colony_name=COLONY)
T = TypeVar("T")


async def eventually(predicate: Callable[[], T | Awaitable[T]], what: str, timeout: float = 10.0) -> T:
    """Poll until `predicate` is truthy; the fakes answer at once, so this is quick."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        last = value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.01)


async def for_a_while(seconds: float) -> None:
    """Let the runtime run: used only where a test proves something did not happen, and
    then for longer than what would have made it happen."""
    await asyncio.sleep(seconds)


@dataclass
class Harness:
    server: FakeColoniesServer
    kube: FakeKube
    runtime: ExecutorRuntime
    user: FakeColoniesClient
    owner: FakeColoniesClient
    executor_type: str

    def submit_spec(self, **overrides: Any) -> dict[str, Any]:
        conditions = {"colonyname": COLONY, "executortype": self.executor_type, "nodes": 1,
                      "processespernode": 1, "cpu": "100m", "mem": "64Mi", "walltime": 600}
        conditions.update(overrides.pop("conditions", {}))
        body = {"funcname": "execute", "conditions": conditions, "maxwaittime": -1, "maxexectime": -1,
                "maxretries": 0, "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hi"]}}
        body.update(overrides)
        return body

    async def submit(self, **overrides: Any) -> Process:
        return await self.user.submit(self.submit_spec(**overrides))

    def state(self, pid: str) -> ProcessState:
        return ProcessState(self.server.process(pid).state)

    def job_name(self, pid: str) -> str | None:
        names = [name for (ns, name), job in self.kube.objects["Job"].items()
                 if (job["metadata"].get("annotations") or {}).get(builder.PROCESS_ID_ANNOTATION) == pid]
        return names[-1] if names else None

    def jobs_of(self, pid: str) -> list[dict[str, Any]]:
        return [job for job in self.kube.objects["Job"].values()
                if (job["metadata"].get("annotations") or {}).get(builder.PROCESS_ID_ANNOTATION) == pid]

    async def job_of(self, pid: str) -> str:
        return await eventually(lambda: self.job_name(pid), f"the Job of {pid[:12]}")

    async def ended(self, pid: str) -> Process:
        await eventually(lambda: self.state(pid) in (ProcessState.SUCCESS, ProcessState.FAILED,
                                                      ProcessState.CANCELLED), f"{pid[:12]} to end")
        return await self.user.get_process(pid)


@contextlib.asynccontextmanager
async def running(**spec: Any) -> AsyncIterator[Harness]:
    """A registered, assigning runtime; its peers and tasks are stopped at the end."""
    async with harness(**spec) as h:
        task = asyncio.create_task(h.runtime.run())
        try:
            await eventually(lambda: h.runtime.health.assigning or task.done(), "the runtime to assign")
            if task.done():
                task.result()
            yield h
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def restarted(first: Harness, executor_key: Key, **spec: Any) -> contextlib.AbstractAsyncContextManager[Harness]:
    """`first` started again as a restarted operator is: same key, type and name (a new name
    would free the old one, and Colonies would take its processes away: a race with adoption)."""
    return running(server=first.server, kube=first.kube, executor_key=executor_key,
                   colony_key=Key(first.owner.key.private_hex), executorType=first.executor_type,
                   executorName=first.runtime.config.executor_name, **spec)


@contextlib.asynccontextmanager
async def harness(*, server: FakeColoniesServer | None = None, kube: FakeKube | None = None,
                  executor_key: Key | None = None, **spec: Any) -> AsyncIterator[Harness]:
    server = server or FakeColoniesServer(allow_reregister=True, timeout_scale=0.05)
    kube = kube or FakeKube()
    owner_key, user_key = Key.generate(), Key.generate()
    if COLONY not in server.colonies:
        server.add_colony(COLONY, owner_key)
    else:
        owner_key = spec.pop("colony_key")
    server.add_user(COLONY, user_key, f"alice-{user_key.id[:6]}")
    executor_type = spec.pop("executorType", f"type-{uuid.uuid4().hex[:6]}")
    body = {"executorType": executor_type, "colonyKeySecretRef": {"name": "colony-key"},
            "capacity": {"cpu": "8", "memory": "16Gi"}, "assignTimeoutSeconds": 5, "heartbeatSeconds": 1,
            "logs": {"flushSeconds": 0.05}, "pendingGraceSeconds": 1, **spec}
    config = cfg.executor_config(NAMESPACE, "ex", body, SETTINGS, uid=str(uuid.uuid4()))
    connection = FakeConnection(server)
    watch = JobWatch(kube, NAMESPACE)
    runtime = ExecutorRuntime(config, connection=connection, colony_key=owner_key,
                              executor_key=executor_key or Key.generate(), kube=kube, watch=watch)
    try:
        yield Harness(server, kube, runtime, connection.client(user_key), connection.client(owner_key),
                      executor_type)
    finally:
        await watch.stop()
