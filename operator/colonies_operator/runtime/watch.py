"""One label-selected watch of Jobs and one of Pods per namespace, shared by every process.

Supervisors never poll: they read the cached Job and its pods from here and sleep on a
per-Job `asyncio.Event` that the watch sets whenever either changes. That keeps the cost
of an in-flight process at zero periodic requests. The cache is rebuilt by a LIST when the
watch's resourceVersion expires (410 Gone) or the stream fails, and every subscriber is
woken afterwards, so a terminal event that fell into a gap is still seen.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from colonies_operator.jobs import builder
from colonies_operator.runtime.jobops import reported
from colonies_operator.runtime.kube import Gone, KubeApi

log = logging.getLogger(__name__)

JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")  # set by the Job controller on pods
LIST_PAGE = 50  # objects per LIST page: what a relist holds raw at once (~40 KB per Job and pod)


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What the cache keeps of a Job or Pod, for thousands of processes in flight:

    - without metadata.managedFields (who set which field): nothing reads it, and it is half
      of the object's memory;
    - with its lists turned into tuples: a tree of dicts and tuples holding only strings and
      numbers is untracked by Python's cycle collector after its first pass, while lists
      are tracked forever. Millions of tracked JSON nodes made every full collection stop
      the event loop for a second at a few thousand processes in flight.
    """
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return _frozen(obj)


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                value[key] = _frozen(item)
        return value
    if isinstance(value, list):
        return tuple(_frozen(item) if isinstance(item, (dict, list)) else item for item in value)
    return value


STUB_METADATA = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp")
OUR_KEYS = "colonyos.io/"  # our labels and annotations; the others are the user's or other controllers'
CONDITION_KEYS = ("type", "status", "reason")


def _stub(obj: dict[str, Any]) -> dict[str, Any]:
    """What is still read of a reported Job, or of a pod of one: who made it, for which
    process and assignment (its name, uid, our labels and annotations), and whether it is done
    (condition types, phase). Such a Job stays cached until its TTL removes it (minutes;
    thousands of Jobs at a steady rate), so a stub is about a tenth of the object: its spec,
    its pods' specs and statuses, the Job controller's labels and the conditions' messages
    and times are most of what it weighs. Keys and the words that repeat in every stub are
    interned: one copy for all of them instead of one per object."""
    meta = obj.get("metadata") or {}
    kept: dict[str, Any] = {k: meta[k] for k in STUB_METADATA if k in meta}
    for field in ("labels", "annotations"):
        ours = {sys.intern(k): sys.intern(v) if isinstance(v, str) else v for k, v in (meta.get(field) or {}).items()
                if k.startswith(OUR_KEYS) or k == builder.MANAGED_BY_LABEL or k in JOB_NAME_LABELS}
        if ours:
            kept[field] = ours
    if "ownerReferences" in meta and not any(k in kept.get("labels", ()) for k in JOB_NAME_LABELS):
        kept["ownerReferences"] = meta["ownerReferences"]  # how a pod without the labels names its Job
    status = obj.get("status") or {}
    stub_status: dict[str, Any] = {}
    if "conditions" in status and "phase" not in status:  # a Job's; a pod's phase says enough
        stub_status["conditions"] = tuple({k: sys.intern(c[k]) if isinstance(c[k], str) else c[k]
                                           for k in CONDITION_KEYS if k in c} for c in status["conditions"] or ())
    if "phase" in status:
        stub_status["phase"] = sys.intern(status["phase"])
    return {"metadata": kept, "status": stub_status}


def job_of_pod(pod: Mapping[str, Any]) -> str | None:
    labels = pod.get("metadata", {}).get("labels") or {}
    for key in JOB_NAME_LABELS:
        if key in labels:
            return labels[key]
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return ref.get("name")
    return None


class JobWatch:
    """Cached Jobs and Pods of one namespace that carry our managed-by label."""

    def __init__(self, kube: KubeApi, namespace: str, *, selector: str | None = None, timeout_seconds: int = 300) -> None:
        self.kube = kube
        self.namespace = namespace
        self.selector = selector or f"{builder.MANAGED_BY_LABEL}={builder.MANAGED_BY}"
        self.timeout_seconds = timeout_seconds
        self.jobs: dict[str, dict[str, Any]] = {}
        self._by_process: dict[str, set[str]] = defaultdict(set)  # process label → Job names
        self.pods: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # job name → pod name → pod
        self._events: dict[str, set[asyncio.Event]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()  # set once both kinds were listed
        self._listed: set[str] = set()
        self._listing = asyncio.Lock()  # Jobs and Pods relist one after the other, not both at once
        self.last_event_time = time.monotonic()
        self.relists = 0

    # --- what supervisors use --------------------------------------------------------------

    def subscribe(self, job_name: str, event: asyncio.Event | None = None) -> asyncio.Event:
        """An event (`event`, or a new one) set whenever the Job `job_name` or one of its pods
        changes, and after every relist. One event may follow several Jobs."""
        event = event or asyncio.Event()
        self._events.setdefault(job_name, set()).add(event)
        return event

    def unsubscribe(self, job_name: str, event: asyncio.Event) -> None:
        events = self._events.get(job_name)
        if events is not None:
            events.discard(event)
            if not events:
                del self._events[job_name]

    def state(self, job_name: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        return self.jobs.get(job_name), list(self.pods.get(job_name, {}).values())

    def jobs_of_executor(self, executor_id: str) -> list[dict[str, Any]]:
        """The Jobs an executor created, by its id (names can be shared, ids cannot)."""
        return [j for j in self.jobs.values()
                if (j.get("metadata", {}).get("annotations") or {}).get(builder.EXECUTOR_ID_ANNOTATION) == executor_id]

    def jobs_of_process(self, process_id: str) -> list[dict[str, Any]]:
        """Every Job of a process in this namespace: every attempt, whichever executor made it."""
        names = self._by_process.get(process_id[:builder.SHORT_ID_LENGTH], ())
        return [self.jobs[name] for name in names if name in self.jobs]

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._run("Job"), name=f"watch-jobs-{self.namespace}"),
                           asyncio.create_task(self._run("Pod"), name=f"watch-pods-{self.namespace}")]
        await self.ready.wait()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    # --- the two loops -----------------------------------------------------------------------

    async def _list(self, kind: str) -> str:
        """LIST in pages, and swap the cache in whole at the end. A relist after an apiserver
        restart or a 410 finds most objects unchanged: the cached object is kept for those, so
        the relist allocates little beyond one page.

        Why the pages are small and the kinds take turns: memory that Python's small-object
        allocator handed out once stays with the process (an arena is returned only when all of
        it is free), so the largest transient sets the operator's size for good. A relist after
        an apiserver restart, two kinds of 250 raw objects at once, raised it by ~20 MiB."""
        async with self._listing:
            return await self._list_pages(kind)

    async def _list_pages(self, kind: str) -> str:
        cached = self.jobs if kind == "Job" else {n: p for pods in self.pods.values() for n, p in pods.items()}
        listed: dict[str, dict[str, Any]] = {}
        version, token = "", None
        while True:
            if kind == "Job":
                page = await self.kube.list_jobs(self.namespace, self.selector, limit=LIST_PAGE, continue_=token)
            else:
                page = await self.kube.list_pods(self.namespace, self.selector, limit=LIST_PAGE, continue_=token)
            for item in page.get("items") or []:
                name = item["metadata"]["name"]
                old = cached.get(name)
                unchanged = old is not None and old["metadata"].get("resourceVersion") == item["metadata"].get("resourceVersion")
                listed[name] = old if unchanged else self._kept(kind, _slim(item))  # type: ignore[assignment]
            meta = page.get("metadata") or {}
            version, token = str(meta.get("resourceVersion") or version), meta.get("continue")
            if not token:
                break
        if kind == "Job":
            self.jobs = listed
            self._by_process = defaultdict(set)
            for name, job in self.jobs.items():
                self._index(name, job)
        else:
            pods: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
            for name, pod in listed.items():
                job = job_of_pod(pod)
                if job:
                    pods[job][name] = pod
            self.pods = pods
        self.relists += 1
        self._wake_all()
        return version

    async def _run(self, kind: str) -> None:
        resource_version = ""
        delay = 0.5
        while True:
            try:
                if not resource_version:
                    resource_version = await self._list(kind)
                    self._listed.add(kind)
                    if len(self._listed) == 2:
                        self.ready.set()
                async for event in self.kube.watch(kind, self.namespace, self.selector, resource_version,
                                                   timeout_seconds=self.timeout_seconds):
                    resource_version = self._apply(kind, event) or resource_version
                delay = 0.5
            except Gone:
                log.info("%s watch in %s expired; listing again", kind, self.namespace)
                resource_version = ""
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped stream, an apiserver restart: list again, then watch
                log.warning("%s watch in %s failed (%s); listing again in %.1fs", kind, self.namespace, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                resource_version = ""

    def _apply(self, kind: str, event: Mapping[str, Any]) -> str | None:
        self.last_event_time = time.monotonic()
        obj = _slim(event.get("object") or {})
        meta = obj.get("metadata") or {}
        version = meta.get("resourceVersion")
        if event.get("type") == "BOOKMARK":
            return version
        name = meta.get("name")
        deleted = event.get("type") == "DELETED"
        if kind == "Job":
            if deleted:
                self._unindex(name, self.jobs.pop(name, None))
            else:
                self.jobs[name] = self._kept(kind, dict(obj))
                self._index(name, obj)
                if reported(obj):
                    pods = self.pods.get(name) or {}
                    for pod_name, pod in pods.items():
                        pods[pod_name] = _stub(pod)
            self._wake(name)
        else:
            job = job_of_pod(obj)
            if job is None:
                return version
            if deleted:
                self.pods.get(job, {}).pop(name, None)
                if not self.pods.get(job):
                    self.pods.pop(job, None)
            else:
                self.pods[job][name] = self._kept(kind, dict(obj))
            self._wake(job)
        return version

    def _kept(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        """`obj` as the cache keeps it: whole, or a stub once its Job is reported."""
        job = obj if kind == "Job" else self.jobs.get(job_of_pod(obj) or "")
        return _stub(obj) if reported(job) else obj

    def _index(self, name: str, job: Mapping[str, Any]) -> None:
        process = (job.get("metadata", {}).get("labels") or {}).get(builder.PROCESS_LABEL)
        if process:
            self._by_process[process].add(name)

    def _unindex(self, name: str, job: Mapping[str, Any] | None) -> None:
        process = ((job or {}).get("metadata", {}).get("labels") or {}).get(builder.PROCESS_LABEL)
        if process and process in self._by_process:
            self._by_process[process].discard(name)
            if not self._by_process[process]:
                del self._by_process[process]

    def _wake(self, job_name: str) -> None:
        for event in self._events.get(job_name, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._events.values():
            for event in events:
                event.set()
