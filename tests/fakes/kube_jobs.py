"""The fake cluster's Job controller, garbage collector (for Jobs) and TTL controller.

`sync(namespace, name)` does what the Job controller does on every change of a Job or of
one of its pods, as in Kubernetes 1.31+:

- counts each pod that reached Succeeded or Failed once (pods the controller itself
  deleted are not failures);
- suspended: deletes active pods, condition Suspended; resumed: Suspended=False, start time;
- failed > backoffLimit, or `exceed_deadline()`: FailureTarget, active pods deleted, and
  Failed once no pod is terminating; completions reached: SuccessCriteriaMet, then Complete
  (with completionTime) once no pod is terminating;
- otherwise creates the missing pods (`<job>-<5 chars>`, `<job>-<index>-<5 chars>` when
  Indexed), or, when a test said `refuse_pods`, records a FailedCreate Warning Event.

Deletion follows the garbage collector: Foreground marks the Job (deletionTimestamp and
the foregroundDeletion finalizer), deletes its pods, and removes the Job only when the last
pod is gone; Background removes the Job at once and its pods after; Orphan leaves them.
The TTL controller deletes a finished Job (Foreground, as the real one does) once
ttlSecondsAfterFinished passed since its Complete/Failed condition: at once for 0, on
`ttl_sweep()` otherwise.
"""

from __future__ import annotations

import copy
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.kube import FakeKube

UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
FOREGROUND = "foregroundDeletion"
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # what generateName suffixes are drawn from
TERMINAL = ("Succeeded", "Failed")


def default_job(job: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver fills in on a created Job (its metadata is already set)."""
    meta, spec = job["metadata"], job.setdefault("spec", {})
    uid, name = meta["uid"], meta["name"]
    job.setdefault("apiVersion", "batch/v1")
    job.setdefault("kind", "Job")
    meta["generation"] = 1
    if "parallelism" not in spec and "completions" not in spec:
        spec["completions"] = 1
    for key, value in (("parallelism", 1), ("backoffLimit", 6), ("completionMode", "NonIndexed"),
                       ("suspend", False), ("podReplacementPolicy", "TerminatingOrFailed"), ("manualSelector", False)):
        spec.setdefault(key, value)
    spec["selector"] = {"matchLabels": {UID_LABELS[0]: uid}}
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update({UID_LABELS[0]: uid, UID_LABELS[1]: uid, NAME_LABELS[0]: name, NAME_LABELS[1]: name})
    if not meta.get("labels"):
        meta["labels"] = dict(labels)
    pod_spec = template.setdefault("spec", {})
    defaults: dict[str, Any] = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 30, "securityContext": {},
                                "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"}
    for key, value in defaults.items():
        pod_spec.setdefault(key, value)
    for container in pod_spec.get("containers") or []:
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
    job["status"] = {}
    return job


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions") or []
                 if c.get("type") == type_ and c.get("status") == "True"), None)


def _over(pod: dict[str, Any]) -> bool:
    """Finished or being deleted: no longer one of the Job's active pods."""
    return pod["status"].get("phase") in TERMINAL or bool(pod["metadata"].get("deletionTimestamp"))


def owner_uid(pod: dict[str, Any]) -> str:
    refs = pod["metadata"].get("ownerReferences") or []
    return next((r.get("uid", "") for r in refs if r.get("kind") == "Job"), "")


def _qos(pod_spec: dict[str, Any]) -> str:
    amounts = [c.get("resources") or {} for c in pod_spec.get("containers") or []]
    if not any(a.get("requests") or a.get("limits") for a in amounts):
        return "BestEffort"

    def pinned(amount: dict[str, Any], resource: str) -> bool:
        limit = (amount.get("limits") or {}).get(resource)
        return bool(limit) and (amount.get("requests") or {}).get(resource, limit) == limit

    return "Guaranteed" if all(pinned(a, r) for a in amounts for r in ("cpu", "memory")) else "Burstable"


class JobController:
    def __init__(self, kube: FakeKube, *, auto_pods: bool = True) -> None:
        self.kube = kube
        self.auto_pods = auto_pods  # False: no pods unless a test calls create_pods()
        self.random = random.Random()
        self.refused: dict[tuple[str, str], str] = {}  # job → why pods are refused (quota, admission)
        self._deadline: set[tuple[str, str]] = set()
        self._counted: set[str] = set()  # pod uids already counted as succeeded or failed
        self._doomed: set[str] = set()   # pod uids the controller deleted: never counted as failures
        self._busy: set[tuple[str, str]] = set()
        self._again: set[tuple[str, str]] = set()
        self._paused: set[tuple[str, str]] | None = None  # Jobs changed while paused

    # --- knobs --------------------------------------------------------------------------------

    def find(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        found = [j for (ns, n), j in self.kube.objects["Job"].items() if n == name and namespace in (None, ns)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} Jobs named {name!r}")
        return found[0]

    def refuse_pods(self, job: str, message: str | None = None, namespace: str | None = None) -> None:
        """Pod creation for `job` fails (e.g. a full ResourceQuota) until `accept_pods`."""
        meta = self.find(job, namespace)["metadata"]
        self.refused[(meta["namespace"], job)] = message or (
            f'pods "{job}-{self._suffix()}" is forbidden: exceeded quota: compute, requested: limits.cpu=1, '
            f"used: limits.cpu=4, limited: limits.cpu=4")
        self.sync(meta["namespace"], job)

    def accept_pods(self, job: str, namespace: str | None = None) -> None:
        meta = self.find(job, namespace)["metadata"]
        self.refused.pop((meta["namespace"], job), None)
        self.sync(meta["namespace"], job)

    def create_pods(self, job: str, namespace: str | None = None) -> None:
        """With auto_pods=False: let the controller create this Job's pods now."""
        meta = self.find(job, namespace)["metadata"]
        self.sync(meta["namespace"], job, create=True)

    def exceed_deadline(self, job: str, namespace: str | None = None) -> None:
        """activeDeadlineSeconds passed: the Job fails with reason DeadlineExceeded."""
        meta = self.find(job, namespace)["metadata"]
        self._deadline.add((meta["namespace"], job))
        self.sync(meta["namespace"], job)

    def pause(self) -> None:
        """The controller falls behind (its batch period, a busy controller-manager): changes of
        Jobs and pods are not synced until `resume()`."""
        self._paused = set()

    def resume(self) -> None:
        behind, self._paused = self._paused or set(), None
        for namespace, name in sorted(behind):
            self.sync(namespace, name)

    def ttl_sweep(self) -> None:
        """The TTL controller's check of every finished Job against the clock."""
        for job in list(self.kube.objects["Job"].values()):
            self._ttl(job)

    # --- what the cluster does -------------------------------------------------------------------

    def pods_of(self, job: dict[str, Any]) -> list[dict[str, Any]]:
        uid, ns = job["metadata"]["uid"], job["metadata"]["namespace"]
        return [p for (pns, _), p in self.kube.objects["Pod"].items() if pns == ns and owner_uid(p) == uid]

    def sync(self, namespace: str, name: str, *, create: bool = False) -> None:
        """Bring the Job's status and pods up to date; re-entrant calls (a pod deleted by
        this sync going away at once) run again after the current one."""
        key = (namespace, name)
        if self._paused is not None:
            self._paused.add(key)
            return
        if key in self._busy:
            self._again.add(key)
            return
        self._busy.add(key)
        try:
            while True:
                self._again.discard(key)
                self._sync(namespace, name, create or self.auto_pods)
                if key not in self._again:
                    return
        finally:
            self._busy.discard(key)

    def _sync(self, namespace: str, name: str, create: bool) -> None:
        job = self.kube.get("Job", namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        job = copy.deepcopy(job)
        status = job.setdefault("status", {})
        self._count(job)
        active = [p for p in self.pods_of(job) if not _over(p)]
        decided = False
        if not (condition(job, "Complete") or condition(job, "Failed")):
            active, decided = self._progress(job, active, create)
        terminating = [p for p in self.pods_of(job) if _over(p) and p["status"].get("phase") not in TERMINAL]
        if decided:
            self._again.add((namespace, name))  # Failed/Complete come in a later update, as they do
        elif not active and not terminating:
            self._conclude(job)
        status.update(active=len(active), terminating=len(terminating), uncountedTerminatedPods={},
                      ready=sum(1 for p in active if condition(p, "Ready")))
        stored = self.kube.get("Job", namespace, name)
        if stored is not None and stored.get("status") != status:
            self.kube.write("Job", job)
        self._ttl(job)

    def _count(self, job: dict[str, Any]) -> None:
        """Count every newly finished pod once, then drop its tracking finalizer."""
        status = job["status"]
        for pod in self.pods_of(job):
            uid, phase = pod["metadata"]["uid"], pod["status"].get("phase")
            if phase not in TERMINAL or uid in self._counted:
                continue
            self._counted.add(uid)
            if uid not in self._doomed:
                field = "succeeded" if phase == "Succeeded" else "failed"
                status[field] = status.get(field, 0) + 1
            if TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or []):
                released = copy.deepcopy(pod)
                released["metadata"]["finalizers"] = [f for f in released["metadata"]["finalizers"]
                                                      if f != TRACKING_FINALIZER]
                self.kube.write("Pod", released)

    def _conclude(self, job: dict[str, Any]) -> None:
        """With no pod left running or terminating, a decided Job gets its final condition."""
        for target, final in (("FailureTarget", "Failed"), ("SuccessCriteriaMet", "Complete")):
            cause = condition(job, target)
            if cause and not condition(job, final):
                self._set_condition(job, final, cause["reason"], cause["message"])
                if final == "Complete":
                    job["status"]["completionTime"] = self.kube.now_text()
                    self.event(job, "Normal", "Completed", "Job completed")
                else:
                    self.event(job, "Warning", cause["reason"], cause["message"])

    def _progress(self, job: dict[str, Any], active: list[dict[str, Any]],
                  create: bool) -> tuple[list[dict[str, Any]], bool]:
        """Suspension, the failure and success verdicts, and pod creation: (the pods still
        active, whether a verdict was reached just now)."""
        meta, spec, status = job["metadata"], job["spec"], job["status"]
        key = (meta["namespace"], meta["name"])
        if spec.get("suspend"):
            self._delete_pods(active)
            status.pop("startTime", None)
            self._set_condition(job, "Suspended", "JobSuspended", "Job suspended")
            return [], False
        if condition(job, "Suspended"):
            self._set_condition(job, "Suspended", "JobResumed", "Job resumed", status_="False")
        decided = False
        if not (condition(job, "FailureTarget") or condition(job, "SuccessCriteriaMet")):
            decided = True
            if status.get("failed", 0) > spec.get("backoffLimit", 6):
                self._set_condition(job, "FailureTarget", "BackoffLimitExceeded",
                                    "Job has reached the specified backoff limit")
            elif key in self._deadline:
                self._set_condition(job, "FailureTarget", "DeadlineExceeded",
                                    "Job was active longer than specified deadline")
            elif status.get("succeeded", 0) >= spec.get("completions", 1):
                self._set_condition(job, "SuccessCriteriaMet", "CompletionsReached",
                                    "Reached expected number of succeeded pods")
            else:
                decided = False
        if condition(job, "FailureTarget") or condition(job, "SuccessCriteriaMet"):
            self._delete_pods(active)
            return [], decided
        status.setdefault("startTime", self.kube.now_text())
        missing = self._missing_indexes(job, active)
        if missing and key in self.refused:
            self.event(job, "Warning", "FailedCreate", f"Error creating: {self.refused[key]}")
        elif missing and create:
            active = active + [self._create_pod(job, index) for index in missing]
        return active, False

    def _missing_indexes(self, job: dict[str, Any], active: list[dict[str, Any]]) -> list[int | None]:
        spec, status = job["spec"], job["status"]
        wanted = min(spec.get("parallelism", 1), spec.get("completions", 1) - status.get("succeeded", 0))
        if spec.get("completionMode") != "Indexed":
            return [None] * max(0, wanted - len(active))
        busy = {int(p["metadata"]["annotations"][INDEX_KEY]) for p in active}
        done = {int(p["metadata"]["annotations"][INDEX_KEY]) for p in self.pods_of(job)
                if p["status"].get("phase") == "Succeeded"}
        free = [i for i in range(spec.get("completions", 1)) if i not in busy and i not in done]
        return list(free[: max(0, spec.get("parallelism", 1) - len(busy))])

    def _suffix(self) -> str:
        return "".join(self.random.choice(ALPHANUMS) for _ in range(5))

    def _create_pod(self, job: dict[str, Any], index: int | None) -> dict[str, Any]:
        meta, template = job["metadata"], copy.deepcopy(job["spec"]["template"])
        prefix = f"{meta['name']}-" + ("" if index is None else f"{index}-")
        pod_meta = dict(template.get("metadata") or {})
        pod_meta.update(name=prefix + self._suffix(), generateName=prefix, finalizers=[TRACKING_FINALIZER],
                        ownerReferences=[{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                          "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}])
        pod_spec = template.get("spec") or {}
        if index is not None:
            pod_meta["labels"] = {**pod_meta.get("labels", {}), INDEX_KEY: str(index)}
            pod_meta["annotations"] = {**pod_meta.get("annotations", {}), INDEX_KEY: str(index)}
            for container in pod_spec.get("containers") or []:
                container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {
                    "fieldRef": {"fieldPath": f"metadata.labels['{INDEX_KEY}']"}}})
        pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "spec": pod_spec,
                               "metadata": self.kube.new_meta(pod_meta, meta["namespace"]),
                               "status": {"phase": "Pending", "qosClass": _qos(pod_spec)}}
        self.kube.write("Pod", pod, "ADDED")
        self.event(job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}")
        self.kube.kubelet.admit(pod)
        return self.kube.get("Pod", meta["namespace"], pod["metadata"]["name"]) or pod

    def _delete_pods(self, pods: list[dict[str, Any]]) -> None:
        for pod in pods:
            self._doomed.add(pod["metadata"]["uid"])
            self.kube.kubelet.delete(pod)

    def _set_condition(self, job: dict[str, Any], type_: str, reason: str, message: str, status_: str = "True") -> None:
        now = self.kube.now_text()
        conditions = job["status"].setdefault("conditions", [])
        conditions[:] = [c for c in conditions if c.get("type") != type_]
        conditions.append({"type": type_, "status": status_, "lastProbeTime": now, "lastTransitionTime": now,
                           "reason": reason, "message": message})

    def event(self, job: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event about the Job; a repeat of the same one counts up, as the recorder does."""
        meta, now = job["metadata"], self.kube.now_text()
        for (ns, _), old in self.kube.objects["Event"].items():
            involved = old.get("involvedObject", {})
            same = (ns, involved.get("uid"), old.get("reason"), old.get("message"))
            if same == (meta["namespace"], meta["uid"], reason, message):
                repeated = copy.deepcopy(old)
                repeated.update(count=old.get("count", 1) + 1, lastTimestamp=now)
                self.kube.write("Event", repeated)
                return
        name = f"{meta['name']}.{self.random.getrandbits(64):016x}"
        self.kube.write("Event", {
            "apiVersion": "v1", "kind": "Event", "metadata": self.kube.new_meta({"name": name}, meta["namespace"]),
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "namespace": meta["namespace"],
                               "name": meta["name"], "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion", "")},
            "type": type_, "reason": reason, "message": message, "source": {"component": "job-controller"},
            "reportingComponent": "job-controller", "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }, "ADDED")

    # --- deletion -----------------------------------------------------------------------------

    def delete(self, namespace: str, name: str, propagation: str) -> bool:
        """A DELETE of the Job; True when it is gone at once, False while its pods go first."""
        job = self.kube.get("Job", namespace, name)
        if job is None:
            return True
        pods = self.pods_of(job)
        if propagation == "Foreground":
            if not job["metadata"].get("deletionTimestamp"):
                marked = copy.deepcopy(job)
                marked["metadata"].update(deletionTimestamp=self.kube.now_text(), deletionGracePeriodSeconds=0,
                                          finalizers=[*marked["metadata"].get("finalizers", []), FOREGROUND])
                self.kube.write("Job", marked)
            for pod in pods:
                self.kube.kubelet.delete(pod)
            return self.collect(namespace, name)
        self.kube.write("Job", copy.deepcopy(job), "DELETED")
        for pod in pods:
            if propagation == "Orphan":
                orphan = copy.deepcopy(pod)
                orphan["metadata"]["ownerReferences"] = []
                self.kube.write("Pod", orphan)
            else:  # Background: the garbage collector deletes the dependents of a gone owner
                self.kube.kubelet.delete(pod)
        return True

    def collect(self, namespace: str, name: str) -> bool:
        """A Foreground-deleted Job goes once its last pod is gone; True when it is gone."""
        job = self.kube.get("Job", namespace, name)
        if job is None:
            return True
        if FOREGROUND not in (job["metadata"].get("finalizers") or []) or self.pods_of(job):
            return False
        final = copy.deepcopy(job)
        final["metadata"]["finalizers"] = [f for f in final["metadata"]["finalizers"] if f != FOREGROUND]
        self.kube.write("Job", final)
        self.kube.write("Job", copy.deepcopy(final), "DELETED")
        return True

    def pod_gone(self, pod: dict[str, Any]) -> None:
        """A pod was removed: its Job may count it, or finish its Foreground deletion."""
        uid, ns = owner_uid(pod), pod["metadata"]["namespace"]
        job = next((j for (jns, _), j in self.kube.objects["Job"].items()
                    if jns == ns and j["metadata"]["uid"] == uid), None)
        if job is not None:
            self.sync(ns, job["metadata"]["name"])
            self.collect(ns, job["metadata"]["name"])

    def _ttl(self, job: dict[str, Any]) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        finished = condition(job, "Complete") or condition(job, "Failed")
        if ttl is None or not finished or job["metadata"].get("deletionTimestamp"):
            return
        finished_at = self.kube.parse_time(finished["lastTransitionTime"])
        if self.kube.clock() >= finished_at + ttl:
            self.delete(job["metadata"]["namespace"], job["metadata"]["name"], "Foreground")
