"""The log follower with a container that ends while its pod runs on (a native sidecar still
pushing CFS outputs): its log is drained once, not followed again and again."""

from __future__ import annotations

import asyncio
from collections import Counter

from colonies_operator.colonies.models import Process
from colonies_operator.jobs import spec
from colonies_operator.runtime import logs
from colonies_operator.runtime.following import LogFollower
from colonies_operator.runtime.kube import KubeError

PID = "0123456789abcdef" * 4


class StubKube:
    """Serves one container's log; counts how it was asked for."""

    def __init__(self) -> None:
        self.follow_slots = asyncio.Semaphore(10)
        self.requests: Counter[bool] = Counter()  # follow? → count

    async def pod_log(self, namespace, pod, container, *, follow, since_time=None):
        self.requests[follow] += 1
        yield b"2026-11-30T09:00:00.000000001Z done"


def running_pod(main_state: dict) -> dict:
    return {"metadata": {"name": "p", "creationTimestamp": "2026-11-30T09:00:00Z"},
            "spec": {"containers": [{"name": "main"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "main", "state": main_state}]}}


async def test_a_container_that_ended_in_a_running_pod_is_drained_once_and_not_followed():
    process = Process.from_json({"processid": PID, "state": 1, "spec": {
        "funcname": "execute", "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo done"}, "maxexectime": -1}})
    run = spec.parse_process(process, spec.SpecPolicy())
    kube = StubKube()
    shipped: list[str] = []

    async def send(text: str) -> None:
        shipped.append(text)
    shipper = logs.LogShipper(send, batch_bytes=1024, flush_seconds=0.01, max_bytes=1 << 20)
    follower = LogFollower(kube, "jobs", run, shipper)
    ended = running_pod({"terminated": {"exitCode": 0, "reason": "Completed"}})
    follower.follow([ended])
    await follower.finish([ended])
    for _ in range(3):  # the pod changes again (the sidecar's status), main stays ended
        follower.follow([ended])
        await asyncio.sleep(0.05)
    await follower.stop()
    assert kube.requests == {False: 1}, "one drain, no follow stream"
    assert shipper.tail and list(shipper.tail) == ["done"]


class LaggingKube(StubKube):
    """Refuses the first reads with kwok's 400 while its log source lags an apiserver restart."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    async def pod_log(self, namespace, pod, container, *, follow, since_time=None):
        self.requests[follow] += 1
        if self.refusals:
            self.refusals -= 1
            raise KubeError(400, "BadRequest", f'no logs found for container "{container}" in pod "{namespace}/{pod}"')
        yield b"2026-11-30T09:00:00.000000001Z done"


def ended_pod(terminated: dict) -> dict:
    pod = running_pod({"terminated": terminated})
    pod["status"]["phase"] = "Succeeded"
    return pod


async def drained(kube: StubKube, pod: dict) -> logs.LogShipper:
    process = Process.from_json({"processid": PID, "state": 1, "spec": {
        "funcname": "execute", "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo done"}, "maxexectime": -1}})
    shipper = logs.LogShipper(lambda text: asyncio.sleep(0), batch_bytes=1024, flush_seconds=60)
    follower = LogFollower(kube, "jobs", spec.parse_process(process, spec.SpecPolicy()), shipper)
    await follower.finish([pod])
    await follower.stop()
    return shipper


async def test_a_log_refused_for_a_container_that_ran_is_read_again_not_given_up():
    # The 20-minute soak lost the whole log of 3 processes: kwok answered 400 "no logs found"
    # for a while after an apiserver restart, and the drain took that as "never started".
    kube = LaggingKube(refusals=2)
    shipper = await drained(kube, ended_pod({"exitCode": 0, "reason": "Completed",
                                             "startedAt": "2026-11-30T09:00:00Z", "finishedAt": "2026-11-30T09:00:05Z"}))
    assert list(shipper.tail) == ["done"] and kube.requests == {False: 3}


async def test_a_log_refused_for_a_container_that_never_started_is_not_asked_for_again():
    kube = LaggingKube(refusals=1)
    shipper = await drained(kube, ended_pod({"exitCode": 128, "reason": "StartError", "startedAt": "1970-01-01T00:00:00Z",
                                             "finishedAt": "2026-11-30T09:00:05Z"}))
    assert list(shipper.tail) == [] and kube.requests == {False: 1}
