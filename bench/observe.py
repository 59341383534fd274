"""What the bench sees from outside: when each Job appeared (a watch of Jobs in a namespace,
timed by this machine's wall clock, the same clock as the Colonies server's start times) and
when each pod was first seen Running."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from colonies_operator.jobs import builder
from colonies_operator.runtime.kube import Gone, KubeApi

NAIVE_PROCESS_LABEL = "bench.colonyos.io/process-id"


@dataclass
class JobSeen:
    name: str
    process_id: str
    attempt: int
    seen: float  # wall clock when the ADDED event arrived


@dataclass
class Observer:
    kube: KubeApi
    namespace: str
    jobs: dict[str, JobSeen] = field(default_factory=dict)
    running: dict[str, float] = field(default_factory=dict)  # pod name → first seen Running
    finished: dict[str, float] = field(default_factory=dict)  # Job name → first seen Complete or Failed
    pod_ended: dict[str, float] = field(default_factory=dict)  # Job name → a pod of it first seen terminal
    pods_of_job: dict[str, str] = field(default_factory=dict)
    uids: dict[str, set[str]] = field(default_factory=dict)  # process id → uids of every Job seen for it
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _listed: int = 0
    pods: bool = True  # also watch pods (P4, P5); the launch rate needs Jobs only

    async def start(self) -> None:
        kinds = ("Job", "Pod") if self.pods else ("Job",)
        self._listed = 2 - len(kinds)
        self._tasks = [asyncio.create_task(self._run(kind)) for kind in kinds]
        await self.ready.wait()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _job(self, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            return
        annotations = meta.get("annotations") or {}
        labels = meta.get("labels") or {}
        pid = annotations.get(builder.PROCESS_ID_ANNOTATION) or labels.get(NAIVE_PROCESS_LABEL) or ""
        if name not in self.jobs:
            self.jobs[name] = JobSeen(name, pid, int(labels.get(builder.ATTEMPT_LABEL) or 0), now)
        if pid and meta.get("uid"):
            self.uids.setdefault(pid, set()).add(meta["uid"])
        if name not in self.finished and any(
                c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                for c in (obj.get("status") or {}).get("conditions") or []):
            self.finished[name] = now

    def _pod(self, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        phase = (obj.get("status") or {}).get("phase")
        if name and name not in self.running and phase in ("Running", "Succeeded", "Failed"):
            self.running[name] = now
        job = (meta.get("labels") or {}).get("batch.kubernetes.io/job-name")
        if job and job not in self.pod_ended and phase in ("Succeeded", "Failed"):
            self.pod_ended[job] = now

    def ended(self) -> list[float]:
        """When each Job's work ended: its (single) pod seen terminal, or the Job seen finished
        when that came first or no pod was watched."""
        return sorted(min(t, self.pod_ended.get(name, t)) for name, t in self.finished.items())

    async def _run(self, kind: str) -> None:
        version = ""
        while True:
            try:
                if not version:
                    listing = await (self.kube.list_jobs(self.namespace, "") if kind == "Job"
                                     else self.kube.list_pods(self.namespace, ""))
                    now = time.time()
                    for item in listing.get("items") or []:
                        (self._job if kind == "Job" else self._pod)(item, now)
                    version = str(listing.get("metadata", {}).get("resourceVersion") or "")
                    self._listed += 1
                    if self._listed >= 2:
                        self.ready.set()
                async for event in self.kube.watch(kind, self.namespace, "", version, timeout_seconds=600):
                    now = time.time()
                    obj = event.get("object") or {}
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event.get("type") in ("ADDED", "MODIFIED"):
                        (self._job if kind == "Job" else self._pod)(obj, now)
            except Gone:
                version = ""
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(0.5)
                version = ""

    def launch_times(self, since: float = 0.0) -> list[float]:
        return sorted(j.seen for j in self.jobs.values() if j.seen >= since)

    def pods_running(self) -> int:
        return len(self.running)
