"""What the hard-path tests observe from outside the operator: every Job and Pod event of a
namespace with the time it was seen, and the Colonies executors an operator registered."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.api_client import ApiClient

from colonies_operator.colonies.models import Executor
from tests.fixtures.colonies import Colonies

FINISHED = ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget")


@dataclass(frozen=True)
class Seen:
    at: float            # monotonic time the watch delivered it
    type: str            # ADDED, MODIFIED, DELETED
    kind: str            # Job or Pod
    namespace: str
    name: str
    uid: str
    process: str         # the colonyos.io/process label (first 20 hex of the process id)
    finished: bool       # a Job with a terminal condition, or a Pod Succeeded/Failed
    deleting: bool       # has a deletionTimestamp


@dataclass
class Recorder:
    """Job and Pod events of some namespaces, in the order the watches delivered them."""

    events: list[Seen] = field(default_factory=list)

    def of(self, process_id: str, kind: str = "Job", namespace: str | None = None) -> list[Seen]:
        return [e for e in self.events if e.kind == kind and e.process == process_id[:20]
                and (namespace is None or e.namespace == namespace)]

    def most_alive_at_once(self, process_id: str, namespace: str | None = None) -> int:
        """The most Job objects of one process that existed at the same moment, dying ones included."""
        alive: set[str] = set()
        most = 0
        for e in self.of(process_id, namespace=namespace):
            if e.type == "DELETED":
                alive.discard(e.uid)
            else:
                alive.add(e.uid)
            most = max(most, len(alive))
        return most

    def job_uids(self, process_id: str) -> list[str]:
        return list(dict.fromkeys(e.uid for e in self.of(process_id)))

    def first(self, uid: str, type_: str) -> Seen | None:
        return next((e for e in self.events if e.uid == uid and e.type == type_), None)

    def active_jobs(self) -> set[str]:
        """Jobs that exist, are not finished and are not being deleted, at the end of the record."""
        state: dict[str, Seen] = {}
        for e in self.events:
            if e.kind == "Job":
                if e.type == "DELETED":
                    state.pop(e.uid, None)
                else:
                    state[e.uid] = e
        return {e.name for e in state.values() if not e.finished and not e.deleting}


def _seen(kind: str, event: dict[str, Any]) -> Seen:
    obj = event["object"]
    meta = obj.metadata
    if kind == "Job":
        finished = any(c.type in FINISHED and c.status == "True" for c in (obj.status.conditions or []))
    else:
        finished = obj.status.phase in ("Succeeded", "Failed")
    return Seen(time.monotonic(), event["type"], kind, meta.namespace, meta.name, meta.uid,
                (meta.labels or {}).get("colonyos.io/process", ""), finished, meta.deletion_timestamp is not None)


@contextlib.asynccontextmanager
async def recording(api: ApiClient, *namespaces: str) -> AsyncIterator[Recorder]:
    """Record Jobs and Pods of `namespaces` for as long as the block runs."""
    recorder = Recorder()
    started = asyncio.Event()
    ready = 0

    async def follow(namespace: str, kind: str) -> None:
        nonlocal ready
        method = (client.BatchV1Api(api).list_namespaced_job if kind == "Job"
                  else client.CoreV1Api(api).list_namespaced_pod)
        version = (await method(namespace)).metadata.resource_version
        ready += 1
        if ready == 2 * len(namespaces):
            started.set()
        while True:
            async with watch.Watch() as w:
                async for event in w.stream(method, namespace, resource_version=version, timeout_seconds=300):
                    recorder.events.append(_seen(kind, event))
                    version = event["object"].metadata.resource_version

    tasks = [asyncio.create_task(follow(ns, kind)) for ns in namespaces for kind in ("Job", "Pod")]
    await asyncio.wait_for(started.wait(), 30)
    try:
        yield recorder
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def registered(colonies: Colonies, executor_id: str) -> Executor | None:
    """The Colonies executor with this id, as the server lists it."""
    return next((e for e in await colonies.user.get_executors(colonies.colony) if e.executorid == executor_id), None)


async def raw_executor(colonies: Colonies, name: str) -> dict[str, Any]:
    """The executor's JSON as the server returns it (capabilities included)."""
    return await colonies.user.connection.call("getexecutormsg", {"colonyname": colonies.colony, "executorname": name},
                                              colonies.user.key)


async def set_colony_assignments(colonies: Colonies, paused: bool) -> None:
    msgtype = "pauseassignmentsmsg" if paused else "resumeassignmentsmsg"
    await colonies.owner.connection.call(msgtype, {"colonyname": colonies.colony}, colonies.owner.key)
