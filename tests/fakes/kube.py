"""An in-memory apiserver with the `KubeApi` surface the runtime uses.

`FakeKube` keeps Jobs, Pods, Events, Secrets and ColonyExecutors as the plain dicts the
apiserver returns, with one global resourceVersion counter, and an event history from
which every watch is served (events after the asked resourceVersion, filtered by kind,
namespace and label selector). Every call is counted in a real `RequestCounter` under the
URL the real client would use, and refusals raise the real error types (`KubeError`,
`Conflict`, `NotFound`, `Gone`).

Two controllers run inside, driven by what happens to the objects and by the test:
`jobs` (kube_jobs.py: the Job controller, garbage collection of dependents, the TTL
controller) and `kubelet` (kubelet.py: pod phases, container states, logs, termination).

Leases (kube_leases.py) are stored too, for the leader election.

Knobs: the kubelet's and Job controller's (`start`, `log`, `succeed`, `fail`, `wait`,
`unschedulable`, `evict`, `delete_pod`, `finish_termination`, `refuse_pods`, `accept_pods`,
`create_pods`, `exceed_deadline`, `ttl_sweep`) are also attributes of FakeKube itself.
Fault knobs: `fail_next(method, exc)`; `down()`/`up()` (every call fails to connect, open
watches and log streams break, as in an apiserver restart); `compact()` (older
resourceVersions answer 410 Gone); `end_watches(gone=False)` (open watches end as on their
timeout, or with 410 mid-stream).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import aiohttp
from colonies_operator.runtime.kube import Conflict, Gone, KubeApi, KubeError, NotFound, RequestCounter

from tests.fakes import Faults, first_of
from tests.fakes.kube_jobs import JobController, default_job
from tests.fakes.kube_leases import FakeLeases
from tests.fakes.kubelet import FakeKubelet
from tests.fakes.selectors import matches_fields, matches_labels

URL = "https://apiserver.fake:6443"
PATHS = {"Job": "/apis/batch/v1/namespaces/{ns}/jobs", "Pod": "/api/v1/namespaces/{ns}/pods",
         "Event": "/api/v1/namespaces/{ns}/events", "Secret": "/api/v1/namespaces/{ns}/secrets",
         "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
         "ColonyExecutor": "/apis/colonyos.io/v1alpha1/namespaces/{ns}/colonyexecutors",
         "Lease": "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"}
RESOURCES = {"Job": "jobs.batch", "Pod": "pods", "Event": "events", "Secret": "secrets", "ConfigMap": "configmaps",
             "ColonyExecutor": "colonyexecutors.colonyos.io", "Lease": "leases.coordination.k8s.io"}


class StreamEnd:
    """Ends the streams opened before it was set: why, and when."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""  # "down", "timeout" (a watch ends cleanly), "gone" (410 in the stream)


class FakeKube(FakeLeases, KubeApi):
    """A `KubeApi` (so it goes wherever one is expected) whose every method the runtime uses
    is answered in memory. KubeApi.__init__ is not called: there is no API client at all."""

    URL = URL

    def __init__(
        self, *, clock: Callable[[], float] = time.time, auto_pods: bool = True, auto_schedule: bool = True,
        termination_grace: bool = False, endless_follow: bool = False, timeout_scale: float = 1.0,
    ) -> None:
        self.clock = clock
        self.timeout_scale = timeout_scale  # stream timeouts last seconds × this
        self.counter = RequestCounter()
        self.follow_slots = asyncio.Semaphore(KubeApi.FOLLOW_STREAMS)
        self.faults = Faults()
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {kind: {} for kind in PATHS}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, object)
        self.rv = 0
        self.compacted = 0  # watches from an older resourceVersion get 410
        self._snapshots: dict[str, tuple[str, list[dict[str, Any]]]] = {}  # continue token → the LIST's rest
        self._lists_paged = 0
        self.is_down = False
        self._changed = asyncio.Event()
        self._watch_end = StreamEnd()
        self._log_end = StreamEnd()
        self.jobs = JobController(self, auto_pods=auto_pods)
        self.kubelet = FakeKubelet(self, auto_schedule=auto_schedule, termination_grace=termination_grace,
                                   endless_follow=endless_follow)
        # The knobs tests drive most, also at the top: kube.start("j") is kube.kubelet.start("j").
        kubelet, jobs = self.kubelet, self.jobs
        self.start, self.log, self.succeed, self.fail = kubelet.start, kubelet.log, kubelet.succeed, kubelet.fail
        self.wait, self.unschedulable, self.evict = kubelet.wait, kubelet.unschedulable, kubelet.evict
        self.delete_pod, self.finish_termination = kubelet.delete_pod, kubelet.finish_termination
        self.refuse_pods, self.accept_pods, self.create_pods = jobs.refuse_pods, jobs.accept_pods, jobs.create_pods
        self.exceed_deadline, self.ttl_sweep = jobs.exceed_deadline, jobs.ttl_sweep

    async def close(self) -> None:
        pass

    # --- the store ----------------------------------------------------------------------------

    def now_text(self) -> str:
        """A metav1.Time: UTC, whole seconds."""
        return datetime.fromtimestamp(int(self.clock()), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    @staticmethod
    def parse_time(text: str) -> float:
        """Unix seconds of an RFC 3339 time (metav1.Time, or with a fraction)."""
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    def new_meta(self, meta: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        out = copy.deepcopy(dict(meta))
        out.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=self.now_text())
        out["managedFields"] = [{"manager": "fake", "operation": "Update", "time": out["creationTimestamp"]}]
        return out

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects[kind].get((namespace, name))

    def write(self, kind: str, obj: dict[str, Any], event: str = "MODIFIED") -> dict[str, Any]:
        """Store (or, for DELETED, drop) `obj` under a new resourceVersion and tell the watches."""
        self.rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        key = (meta["namespace"], meta["name"])
        if event == "DELETED":
            self.objects[kind].pop(key, None)
        else:
            self.objects[kind][key] = obj
        self.history.append((self.rv, kind, event, copy.deepcopy(obj)))
        self.notify()
        return obj

    def notify(self) -> None:
        """Wake every stream: something changed (an object, a log line)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _path(self, kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        return PATHS[kind].format(ns=namespace) + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    async def _enter(self, method: str, verb: str, path: str) -> None:
        """A request reaches the apiserver: or not (down, an injected fault). Like a network
        round trip it lets other tasks run first, so no caller can loop without yielding."""
        await asyncio.sleep(0)
        if self.is_down:
            raise aiohttp.ClientConnectionError("Cannot connect to host apiserver.fake:6443 (fake: down)")
        try:
            self.faults.enter(method)
        except KubeError as exc:
            self.counter.record(verb, URL + path, exc.status)
            raise

    def _refuse(self, verb: str, path: str, status: int, reason: str, message: str) -> KubeError:
        self.counter.record(verb, URL + path, status)
        return {404: NotFound, 409: Conflict, 410: Gone}.get(status, KubeError)(status, reason, message)

    def _not_found(self, verb: str, path: str, kind: str, name: str) -> KubeError:
        return self._refuse(verb, path, 404, "NotFound", f'{RESOURCES[kind]} "{name}" not found')

    def _existing(self, verb: str, kind: str, namespace: str, name: str, sub: str = "") -> dict[str, Any]:
        obj = self.get(kind, namespace, name)
        if obj is None:
            raise self._not_found(verb, self._path(kind, namespace, name, sub), kind, name)
        return obj

    def _create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        path = self._path(kind, namespace)
        name = (body.get("metadata") or {}).get("name", "")
        if self.get(kind, namespace, name) is not None:
            raise self._refuse("POST", path, 409, "AlreadyExists", f'{RESOURCES[kind]} "{name}" already exists')
        obj = copy.deepcopy(dict(body))
        obj["metadata"] = self.new_meta(obj.get("metadata") or {}, namespace)
        self.counter.record("POST", URL + path, 201)
        return obj

    # --- Jobs --------------------------------------------------------------------------------

    async def create_job(self, namespace: str, job: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        await self._enter("create_job", "POST", self._path("Job", namespace))
        if dry_run:
            return copy.deepcopy(dict(job))
        created = self.write("Job", default_job(self._create("Job", namespace, job)), "ADDED")
        self.jobs.sync(namespace, created["metadata"]["name"])
        return copy.deepcopy(created)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        path = self._path("Job", namespace, name)
        await self._enter("get_job", "GET", path)
        job = self.get("Job", namespace, name)
        self.counter.record("GET", URL + path, 200 if job else 404)
        return copy.deepcopy(job)

    async def delete_job(self, namespace: str, name: str, *, propagation: str = "Foreground") -> bool:
        """True once the deletion was accepted (also for a Job already being deleted), False
        when there was no such Job."""
        path = self._path("Job", namespace, name)
        await self._enter("delete_job", "DELETE", path)
        if self.get("Job", namespace, name) is None:
            self.counter.record("DELETE", URL + path, 404)
            return False
        self.jobs.delete(namespace, name, propagation)
        # 200 also when the Job stays (Foreground): the apiserver answers 202 only to the old
        # orphanDependents=false option (endpoints/handlers/delete.go)
        self.counter.record("DELETE", URL + path, 200)
        return True

    async def annotate_job(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> dict[str, Any]:
        return await self._patch_job("annotate_job", namespace, name, {"metadata": {"annotations": dict(annotations)}})

    async def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (null deletes): metadata.labels/annotations, spec.suspend,
        spec.ttlSecondsAfterFinished, spec.parallelism, spec.activeDeadlineSeconds."""
        return await self._patch_job("patch_job", namespace, name, patch)

    async def _patch_job(self, method: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        path = self._path("Job", namespace, name)
        await self._enter(method, "PATCH", path)
        job = self._existing("PATCH", "Job", namespace, name)
        for field in ("template", "selector", "completionMode", "completions"):
            if field in (patch.get("spec") or {}):
                raise self._refuse("PATCH", path, 422, "Invalid",
                                   f'Job.batch "{name}" is invalid: spec.{field}: field is immutable')
        patched = merge_patch(job, patch)
        if patched.get("spec") != job.get("spec"):
            patched["metadata"]["generation"] = job["metadata"].get("generation", 1) + 1
        self.counter.record("PATCH", URL + path, 200)
        self.write("Job", patched)
        self.jobs.sync(namespace, name)
        return copy.deepcopy(self.get("Job", namespace, name) or patched)

    async def list_jobs(self, namespace: str, selector: str, *, field_selector: str = "", limit: int | None = None,
                        continue_: str | None = None) -> dict[str, Any]:
        return await self._list("list_jobs", "Job", namespace, selector, field_selector, limit, continue_)

    async def list_pods(self, namespace: str, selector: str, *, limit: int | None = None,
                        continue_: str | None = None) -> dict[str, Any]:
        return await self._list("list_pods", "Pod", namespace, selector, "", limit, continue_)

    async def _list(self, method: str, kind: str, namespace: str, selector: str, field_selector: str = "",
                    limit: int | None = None, continue_: str | None = None) -> dict[str, Any]:
        """A LIST; with `limit`, in pages of one snapshot, as the apiserver serves them."""
        path = self._path(kind, namespace)
        await self._enter(method, "GET", path)
        if continue_:
            version, items = self._snapshots.pop(continue_)
        else:
            version = str(self.rv)
            items = [_as_item(o) for (ns, _), o in self.objects[kind].items()
                     if ns == namespace and matches_labels(o, selector) and matches_fields(o, field_selector or "")]
        meta: dict[str, Any] = {"resourceVersion": version}
        if limit and len(items) > limit:
            items, rest = items[:limit], items[limit:]
            self._lists_paged += 1
            meta["continue"] = token = f"{version}-{self._lists_paged}"
            self._snapshots[token] = (version, rest)
        self.counter.record("GET", URL + path, 200)
        return {"apiVersion": "v1", "kind": f"{kind}List", "metadata": meta, "items": items}

    # --- streams -----------------------------------------------------------------------------

    async def watch(
        self, kind: str, namespace: str, selector: str, resource_version: str, *, timeout_seconds: int = 300,
    ) -> AsyncIterator[dict[str, Any]]:
        """ADDED/MODIFIED/DELETED events after `resource_version` ("" or "0": the current
        objects as ADDED first), until `timeout_seconds` pass; no bookmarks."""
        path = self._path(kind, namespace) + "?watch=true"
        await self._enter("watch", "GET", path)
        self.counter.record("GET", URL + path, 200)
        ending = self._watch_end
        deadline = asyncio.get_running_loop().time() + timeout_seconds * self.timeout_scale
        since = int(resource_version or 0)
        if since and since < self.compacted:
            raise Gone(410, "Expired", f"too old resource version: {since} ({self.compacted})")
        if not since:
            since = self.rv
            for obj in [o for (ns, _), o in self.objects[kind].items() if ns == namespace]:
                if matches_labels(obj, selector):
                    yield {"type": "ADDED", "object": copy.deepcopy(obj)}
        while True:
            changed = self.changes()  # taken before reading: a write while we yield sets it
            start = bisect.bisect_right(self.history, since, key=lambda entry: entry[0])
            for rv, k, event, obj in self.history[start:]:
                since = rv
                if k == kind and obj["metadata"]["namespace"] == namespace and matches_labels(obj, selector):
                    yield {"type": event, "object": copy.deepcopy(obj)}
            if not await first_of(changed, ending.event, deadline):
                if ending.reason == "down":
                    raise aiohttp.ServerDisconnectedError()
                if ending.reason == "gone":
                    raise Gone(410, "Expired", "The resourceVersion for the provided watch is too old.")
                return

    def changes(self) -> asyncio.Event:
        """Set at the next change (an object written, a log line): streams wait on it."""
        return self._changed

    async def pod_log(
        self, namespace: str, pod: str, container: str, *, follow: bool, since_time: str | None = None,
        read_timeout: float = 300, max_line: int = 64 * 1024,
    ) -> AsyncIterator[bytes]:
        """`<RFC3339Nano> <text>` lines without newline (kubelet.py has the stream)."""
        path = self._path("Pod", namespace, pod, "log")
        await self._enter("pod_log", "GET", path)
        try:
            self.kubelet.check_log(namespace, pod, container)
        except KubeError as exc:
            raise self._refuse("GET", path, exc.status, exc.reason, exc.message) from None
        self.counter.record("GET", URL + path, 200)
        async for line in self.kubelet.stream_log(namespace, pod, container, self._log_end, follow=follow,
                                                  since_time=since_time, max_line=max_line,
                                                  read_timeout=read_timeout * self.timeout_scale):
            yield line

    # --- Events, Secrets, our resource ----------------------------------------------------------

    async def post_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        await self._enter("post_event", "POST", self._path("Event", namespace))
        self.write("Event", self._create("Event", namespace, event), "ADDED")

    async def list_events(self, namespace: str, field_selector: str = "") -> dict[str, Any]:
        path = self._path("Event", namespace)
        await self._enter("list_events", "GET", path)
        self.counter.record("GET", URL + path, 200)
        return {"metadata": {"resourceVersion": str(self.rv)},
                "items": [_as_item(e) for (ns, _), e in self.objects["Event"].items()
                          if ns == namespace and matches_fields(e, field_selector)]}

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        path = self._path("Secret", namespace, name)
        await self._enter("read_secret", "GET", path)
        secret = self.get("Secret", namespace, name)
        self.counter.record("GET", URL + path, 200 if secret else 404)
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def create_configmap(self, namespace: str, configmap: Mapping[str, Any]) -> dict[str, Any]:
        await self._enter("create_configmap", "POST", self._path("ConfigMap", namespace))
        return copy.deepcopy(self.write("ConfigMap", self._create("ConfigMap", namespace, configmap), "ADDED"))

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> dict[str, Any]:
        await self._enter("create_secret", "POST", self._path("Secret", namespace))
        created = self._create("Secret", namespace, secret)
        data = dict(created.get("data") or {})  # stringData is write-only: it lands in data
        plain = created.pop("stringData", None) or {}
        data.update({k: base64.b64encode(v.encode()).decode() for k, v in plain.items()})
        created["data"] = data
        return copy.deepcopy(self.write("Secret", created, "ADDED"))

    def add_colony_executor(self, namespace: str, name: str, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Knob: a ColonyExecutor resource exists (its status can then be patched)."""
        obj = {"apiVersion": "colonyos.io/v1alpha1", "kind": "ColonyExecutor",
               "metadata": self.new_meta({"name": name}, namespace), "spec": dict(spec or {}), "status": {}}
        return self.write("ColonyExecutor", obj, "ADDED")

    async def patch_executor_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        path = self._path("ColonyExecutor", namespace, name, "status")
        await self._enter("patch_executor_status", "PATCH", path)
        resource = self._existing("PATCH", "ColonyExecutor", namespace, name, "status")
        self.counter.record("PATCH", URL + path, 200)
        self.write("ColonyExecutor", merge_patch(resource, {"status": dict(status)}))

    # --- knobs --------------------------------------------------------------------------------

    def fail_next(self, method: str, exc: BaseException, times: int = 1) -> None:
        """The next call(s) of `method` ("create_job", "watch", "pod_log", ...) raise `exc`."""
        self.faults.fail_next(method, exc, times)

    @property
    def calls(self) -> Any:
        return self.faults.calls

    def down(self) -> None:
        """The apiserver goes away: calls fail to connect, open watches and log streams break."""
        self.is_down = True
        for ending in (self._watch_end, self._log_end):
            ending.reason = "down"
            ending.event.set()
        self._watch_end, self._log_end = StreamEnd(), StreamEnd()

    def up(self) -> None:
        self.is_down = False

    def compact(self) -> None:
        """History before now is gone: a watch from an older resourceVersion answers 410."""
        self.compacted = self.rv

    def end_watches(self, *, gone: bool = False) -> None:
        """Open watches end now, as at their timeout (or, with `gone`, with a 410 in the stream)."""
        self._watch_end.reason = "gone" if gone else "timeout"
        self._watch_end.event.set()
        self._watch_end = StreamEnd()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, on copies."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    out = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _as_item(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A list item: the object without apiVersion and kind, as the apiserver lists them."""
    return {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind")}
