"""The fake cluster's scheduler and kubelet: pod phases, container states, logs, termination.

A pod the Job controller creates is ADDED Pending, then (unless `auto_schedule=False`)
scheduled (PodScheduled, nodeName) and given waiting containers (ContainerCreating), each
step its own MODIFIED event as on a real cluster. After that a test moves it: `start`,
`wait` (ErrImagePull...), `unschedulable`, `succeed`, `fail`, `evict`, `log`. Knobs take a
Job name (all its current pods) or a pod name.

Deleting a pod marks it (deletionTimestamp); the kubelet then stops its containers (a
running one exits 137), reports the pod Failed unless it had already finished, and removes
it. That happens at once, unless `termination_grace=True`: then a pod that is still
running stays terminating until `finish_termination(pod)`, as a real kubelet keeps it
through its grace period.

Logs are lines with timestamps (Unix ns). A log stream serves them as the apiserver does
with `timestamps=true`: `<RFC3339Nano> <text>`, from `sinceTime` (whole seconds, lines at
or after it), following new lines until the container terminates or the pod is gone;
`endless_follow=True` makes follow streams never end by themselves, as kwok's do.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import aiohttp
from colonies_operator.runtime.kube import KubeError, LineSplitter

from tests.fakes import first_of
from tests.fakes.kube_jobs import TERMINAL

if TYPE_CHECKING:
    from tests.fakes.kube import FakeKube, StreamEnd

NODE = "fake-node-0"
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048  # FallbackToLogsOnError: the log tail the kubelet keeps


def rfc3339nano(nanos: int) -> str:
    """Go's time.RFC3339Nano in UTC: up to 9 fractional digits, trailing zeros dropped."""
    seconds, fraction = divmod(nanos, 1_000_000_000)
    digits = f"{fraction:09d}".rstrip("0")
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return stamp + (f".{digits}" if digits else "") + "Z"


def _condition(type_: str, status: str, now: str, reason: str = "") -> dict[str, Any]:
    out = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        out["reason"] = reason
    return out


class FakeKubelet:
    def __init__(self, kube: FakeKube, *, auto_schedule: bool = True, termination_grace: bool = False,
                 endless_follow: bool = False) -> None:
        self.kube = kube
        self.auto_schedule = auto_schedule
        self.termination_grace = termination_grace
        self.endless_follow = endless_follow
        self.logs: dict[tuple[str, str, str], list[tuple[int, str]]] = {}  # (ns, pod, container) → lines
        self._last_ns = 0

    # --- which pods ------------------------------------------------------------------------------

    def pods(self, target: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The current pods of Job `target`, in index then creation order; or the pod `target`."""
        jobs = [j for (ns, n), j in self.kube.objects["Job"].items() if n == target and namespace in (None, ns)]
        if len(jobs) == 1:
            pods = self.kube.jobs.pods_of(jobs[0])
            return sorted(pods, key=lambda p: (int((p["metadata"].get("annotations") or {}).get(
                "batch.kubernetes.io/job-completion-index", 0)), p["metadata"]["creationTimestamp"]))
        pods = [p for (ns, n), p in self.kube.objects["Pod"].items() if n == target and namespace in (None, ns)]
        if len(pods) != 1:
            raise KeyError(f"no single Job or pod named {target!r}")
        return pods

    def _update(self, pod: dict[str, Any], change: Callable[[dict[str, Any], str], None]) -> None:
        """Apply `change(status, now)` to a copy of the pod, store it, let its Job react."""
        updated = copy.deepcopy(pod)
        change(updated["status"], self.kube.now_text())
        self.kube.write("Pod", updated)
        self._job_sync(updated)

    def _job_sync(self, pod: dict[str, Any]) -> None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "Job" and self.kube.get("Job", pod["metadata"]["namespace"], ref["name"]):
                self.kube.jobs.sync(pod["metadata"]["namespace"], ref["name"])

    def _container_status(self, pod: dict[str, Any], container: dict[str, Any], state: dict[str, Any],
                          ready: bool = False) -> dict[str, Any]:
        image = container.get("image", "")
        ran = "running" in state or "terminated" in state
        digest = hashlib.sha256(image.encode()).hexdigest()
        cid = hashlib.sha256(f"{pod['metadata']['uid']}/{container['name']}".encode()).hexdigest()
        return {"name": container["name"], "state": state, "lastState": {}, "ready": ready, "restartCount": 0,
                "image": image, "imageID": f"{image.split(':')[0]}@sha256:{digest}" if ran else "",
                "containerID": f"containerd://{cid}" if ran else "", "started": "running" in state}

    def _set_containers(self, pod: dict[str, Any], status: dict[str, Any], state: Callable[[str], dict[str, Any]],
                        ready: bool = False, only: str | None = None) -> None:
        old = {s["name"]: s for s in status.get("containerStatuses") or []}
        status["containerStatuses"] = [
            self._container_status(pod, c, state(c["name"]), ready) if only in (None, c["name"]) else old[c["name"]]
            for c in pod["spec"].get("containers") or [] if only in (None, c["name"]) or c["name"] in old]

    # --- lifecycle -------------------------------------------------------------------------------

    def admit(self, pod: dict[str, Any]) -> None:
        """A new pod: scheduled, then its containers are being created (unless auto_schedule=False)."""
        if self.auto_schedule:
            self.schedule(pod["metadata"]["name"], pod["metadata"]["namespace"])

    def schedule(self, target: str, namespace: str | None = None) -> None:
        for pod in self.pods(target, namespace):
            self._schedule(pod)

    def _schedule(self, pod: dict[str, Any]) -> None:
        def scheduled(status: dict[str, Any], now: str) -> None:
            status["conditions"] = [_condition("PodScheduled", "True", now)]

        pod = copy.deepcopy(pod)
        pod["spec"]["nodeName"] = NODE
        self._update(pod, scheduled)
        pod = self.kube.get("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]) or pod

        def creating(status: dict[str, Any], now: str) -> None:
            status.update(hostIP="10.0.0.1", startTime=now)
            status["conditions"] = [_condition("PodReadyToStartContainers", "False", now),
                                    _condition("Initialized", "True", now),
                                    _condition("Ready", "False", now, "ContainersNotReady"),
                                    _condition("ContainersReady", "False", now, "ContainersNotReady"),
                                    _condition("PodScheduled", "True", now)]
            self._set_containers(pod, status, lambda _: {"waiting": {"reason": "ContainerCreating"}})

        self._update(pod, creating)

    def unschedulable(self, target: str, message: str = "0/1 nodes are available: 1 Insufficient cpu.",
                      namespace: str | None = None) -> None:
        """The scheduler finds no node: PodScheduled=False, reason Unschedulable."""
        def refused(status: dict[str, Any], now: str) -> None:
            status["conditions"] = [{**_condition("PodScheduled", "False", now, "Unschedulable"), "message": message}]

        for pod in self.pods(target, namespace):
            self._update(pod, refused)

    def wait(self, target: str, reason: str, message: str = "", container: str | None = None,
             namespace: str | None = None) -> None:
        """Containers stay waiting with `reason` (ErrImagePull, ImagePullBackOff, CreateContainerConfigError...)."""
        for pod in self.pods(target, namespace):
            def waiting(status: dict[str, Any], now: str, pod: dict[str, Any] = pod) -> None:
                self._set_containers(pod, status, lambda _: {"waiting": {"reason": reason, "message": message}},
                                     only=container)
            self._update(pod, waiting)

    def start(self, target: str, namespace: str | None = None) -> None:
        """Pods Running, every container running and ready."""
        for pod in self.pods(target, namespace):
            def running(status: dict[str, Any], now: str, pod: dict[str, Any] = pod) -> None:
                status.update(phase="Running", podIP="10.244.0.10", podIPs=[{"ip": "10.244.0.10"}])
                status["conditions"] = [_condition(t, "True", now) for t in (
                    "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
                self._set_containers(pod, status, lambda _: {"running": {"startedAt": now}}, ready=True)
            self._update(pod, running)

    def succeed(self, target: str, termination_message: str | dict[str, str] | None = None,
                namespace: str | None = None) -> None:
        """Containers exit 0 (with `termination_message`, one text or one per container), pods Succeeded."""
        for pod in self.pods(target, namespace):
            if pod["status"].get("phase") not in TERMINAL:
                self._finish(pod, "Succeeded", lambda name: (0, "Completed", termination_message.get(name)
                             if isinstance(termination_message, dict) else termination_message))

    def fail(self, target: str, exit_code: int = 1, reason: str = "Error", oom: bool = False,
             message: str | None = None, namespace: str | None = None) -> None:
        """The first unfinished pod's containers exit `exit_code` (OOMKilled: 137), the pod Fails.
        Without `message`, FallbackToLogsOnError containers get their log tail, as the kubelet does."""
        pods = [p for p in self.pods(target, namespace) if p["status"].get("phase") not in TERMINAL]
        if pods:
            self._finish(pods[0], "Failed", lambda name: (137 if oom else exit_code, "OOMKilled" if oom else reason,
                                                          message))

    def evict(self, target: str, message: str = "The node was low on resource: memory.",
              namespace: str | None = None) -> None:
        """The kubelet evicts the pods: Failed, reason Evicted, DisruptionTarget."""
        for pod in self.pods(target, namespace):
            self._finish(pod, "Failed", lambda name: (137, "Error", None), reason="Evicted", message=message)

    def _finish(self, pod: dict[str, Any], phase: str, outcome: Callable[[str], tuple[int, str, str | None]],
                reason: str = "", message: str = "") -> None:
        def finished(status: dict[str, Any], now: str) -> None:
            started = {s["name"]: ((s.get("state") or {}).get("running") or {}).get("startedAt", now)
                       for s in status.get("containerStatuses") or []}

            def terminated(name: str) -> dict[str, Any]:
                code, why, text = outcome(name)
                state = {"exitCode": code, "reason": why, "startedAt": started.get(name, now), "finishedAt": now}
                text = text if text is not None else self._fallback_message(pod, name, code)
                if text:
                    state["message"] = text
                return {"terminated": state}

            status["phase"] = phase
            self._set_containers(pod, status, terminated)
            status["conditions"] = [_condition(t, "False" if t in ("Ready", "ContainersReady") else "True", now,
                                               "PodCompleted" if t in ("Ready", "ContainersReady") else "")
                                    for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                              "PodScheduled")]
            if reason:
                status.update(reason=reason, message=message)
                status["conditions"].append({**_condition("DisruptionTarget", "True", now, "TerminationByKubelet"),
                                             "message": message})
        self._update(pod, finished)

    def _fallback_message(self, pod: dict[str, Any], container: str, code: int) -> str:
        spec: dict[str, Any] = next((c for c in pod["spec"].get("containers") or [] if c["name"] == container), {})
        if code == 0 or spec.get("terminationMessagePolicy") != "FallbackToLogsOnError":
            return ""
        lines = self.logs.get((pod["metadata"]["namespace"], pod["metadata"]["name"], container), [])
        tail = "".join(text + "\n" for _, text in lines[-FALLBACK_LINES:]).encode()
        return tail[-FALLBACK_BYTES:].decode(errors="ignore")

    # --- deletion --------------------------------------------------------------------------------

    def delete_pod(self, name: str, namespace: str | None = None) -> None:
        """Knob: someone deletes the pod (kubectl delete pod)."""
        for pod in self.pods(name, namespace):
            self.delete(pod)

    def delete(self, pod: dict[str, Any]) -> None:
        """A graceful deletion: marked now, removed when the kubelet is done with it."""
        pod = self.kube.get("Pod", pod["metadata"]["namespace"], pod["metadata"]["name"]) or pod
        if not pod["metadata"].get("deletionTimestamp"):
            pod = copy.deepcopy(pod)
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
            pod["metadata"].update(deletionTimestamp=self.kube.now_text(), deletionGracePeriodSeconds=grace)
            self.kube.write("Pod", pod)
        running = pod["status"].get("phase") not in TERMINAL and pod["spec"].get("nodeName")
        if not (self.termination_grace and running):
            self.finish_termination(pod["metadata"]["name"], pod["metadata"]["namespace"])

    def terminating(self) -> list[str]:
        """Names of the pods held in termination (with termination_grace)."""
        return [n for (_, n), p in self.kube.objects["Pod"].items() if p["metadata"].get("deletionTimestamp")]

    def finish_termination(self, pod: str | None = None, namespace: str | None = None) -> None:
        """The kubelet is done with a deleted pod (every terminating pod when `pod` is None):
        its running containers were killed (137), and it is removed."""
        names = [pod] if pod is not None else self.terminating()
        for name in names:
            current = self.pods(name, namespace)[0]
            ns = current["metadata"]["namespace"]
            if current["status"].get("phase") not in TERMINAL:
                self._finish(current, "Failed", lambda _: (137, "Error", None))
                current = self.kube.get("Pod", ns, name) or current
            self.kube.write("Pod", copy.deepcopy(current), "DELETED")
            for key in [k for k in self.logs if k[:2] == (ns, name)]:
                del self.logs[key]
            self.kube.jobs.pod_gone(current)

    # --- logs ------------------------------------------------------------------------------------

    def log(self, target: str, lines: list[str], container: str | None = None, *, at: float | None = None,
            namespace: str | None = None) -> None:
        """Append `lines` to the containers' logs (every container unless `container`), with
        strictly increasing timestamps from the clock, or all exactly at `at` (Unix seconds)."""
        for pod in self.pods(target, namespace):
            for spec in pod["spec"].get("containers") or []:
                if container in (None, spec["name"]):
                    key = (pod["metadata"]["namespace"], pod["metadata"]["name"], spec["name"])
                    self.logs.setdefault(key, []).extend((self._stamp(at), text) for text in lines)
        self.kube.notify()

    def _stamp(self, at: float | None) -> int:
        if at is not None:
            return round(at * 1e9)
        self._last_ns = max(int(self.kube.clock() * 1e9), self._last_ns + 1000)
        return self._last_ns

    def check_log(self, namespace: str, pod: str, container: str) -> None:
        """The refusals of a log request: no such pod (404), container (400), or not started (400)."""
        current = self.kube.get("Pod", namespace, pod)
        if current is None:
            raise KubeError(404, "NotFound", f'pods "{pod}" not found')
        if container not in [c["name"] for c in current["spec"].get("containers") or []]:
            raise KubeError(400, "BadRequest", f"container {container} is not valid for pod {pod}")
        if not current["spec"].get("nodeName"):
            return  # no node yet: the apiserver answers with an empty log
        status = next((s for s in current["status"].get("containerStatuses") or [] if s["name"] == container), None)
        waiting = (status or {}).get("state", {}).get("waiting")
        if status is None or waiting is not None:
            reason = (waiting or {}).get("reason", "ContainerCreating")
            raise KubeError(400, "BadRequest", f'container "{container}" in pod "{pod}" is waiting to start: {reason}')

    async def stream_log(self, namespace: str, pod: str, container: str, ending: StreamEnd, *, follow: bool,
                         since_time: str | None, read_timeout: float, max_line: int) -> AsyncIterator[bytes]:
        since = None if not since_time else int(self.kube.parse_time(since_time)) * 1_000_000_000
        splitter, sent = LineSplitter(max_line), 0
        loop = asyncio.get_running_loop()
        last_data = loop.time()
        while True:
            changed = self.kube.changes()  # taken before reading: a line logged while we yield sets it
            lines = self.logs.get((namespace, pod, container), [])
            for stamp, text in lines[sent:]:
                sent += 1
                if since is None or stamp >= since:
                    for piece in splitter.feed(f"{rfc3339nano(stamp)} {text}\n".encode()):
                        last_data = loop.time()
                        yield piece
            current = self.kube.get("Pod", namespace, pod)
            if not follow or current is None or not current["spec"].get("nodeName"):
                break
            statuses = current["status"].get("containerStatuses") or []
            state = next((s.get("state") or {} for s in statuses if s["name"] == container), {})
            if "terminated" in state and not self.endless_follow:
                break
            if not await first_of(changed, ending.event, last_data + read_timeout):
                if ending.event.is_set():
                    raise aiohttp.ServerDisconnectedError()
                if loop.time() >= last_data + read_timeout:
                    raise aiohttp.ServerTimeoutError("Timeout on reading data from socket")
        for piece in splitter.finish():
            yield piece
