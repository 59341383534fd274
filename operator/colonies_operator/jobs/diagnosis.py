"""What happened to a Job: its outcome, why it failed (as data), and the process output.

All functions read plain Job and pod dicts as the apiserver returns them and make no
calls. `diagnose` is a chain of small `_check_*` functions, first match wins; the order
matters, because one event shows up in several places (a pod killed for the walltime or
evicted also has containers that exited non-zero, which are not the program's fault).

`Reason` values are a contract: they start every error message sent to Colonies
(`ExitCode(3): ...`) and label metrics and Events, so they are never renamed. Two
guarantees the runtime relies on: whenever `job_outcome` is FAILED, `diagnose` returns a
`Diagnosis`; and a pod that is merely pending within its grace period is never one.
"""

from __future__ import annotations

import json
import math
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final

from colonies_operator.jobs import io, quantity, statuses, storage

_MAX_ARG: Final = 300  # a reason's argument (an API message) is cut to this many characters
# ErrImagePull messages that no amount of waiting will fix (containerd and CRI-O wording).
_IMAGE_MISSING: Final = ("not found", "manifest unknown", "repository does not exist")
_CANNOT_RUN: Final = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
# Terminated reasons of a container whose process never started (containerd, docker).
_NEVER_STARTED: Final = ("StartError", "ContainerCannotRun")
_NOT_SCHEDULED: Final = ("PodScheduled", "False", "Unschedulable")  # (type, status, reason)


class Reason(str, Enum):
    """Why an attempt failed. The values are a stable contract: never rename them."""

    EXIT_CODE = "ExitCode"  # the program exited non-zero
    OOM_KILLED = "OOMKilled"  # the program used more memory than its limit
    IMAGE_PULL_FAILED = "ImagePullFailed"
    INVALID_IMAGE = "InvalidImage"
    UNSCHEDULABLE = "Unschedulable"  # no node could take the pod within the grace period
    DEADLINE_EXCEEDED = "DeadlineExceeded"  # ran past its walltime
    EVICTED = "Evicted"
    PREEMPTED = "Preempted"
    NODE_LOST = "NodeLost"
    CREATE_FAILED = "CreateFailed"  # the apiserver refused the Job (quota, admission, validation)
    CONTAINER_CANNOT_RUN = "ContainerCannotRun"
    UNKNOWN = "Unknown"
    POD_CREATE_REFUSED = "PodCreateRefused"  # the Job exists, but admission refuses its pods
    CFS_PULL_FAILED = "CFSPullFailed"  # the process's fs inputs could not be fetched; the program never ran
    CFS_PUSH_FAILED = "CFSPushFailed"  # the program's fs outputs could not be synced back
    OUTPUT_FAILED = "OutputFailed"  # /colonies/out.json could not be handed over (too big, unreadable)


class Outcome(Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Diagnosis:
    """One failure, explained. `summary` is `Reason(argument)`; `infrastructure` is true
    when the cluster, not the funcspec or the program, caused it (evictions, lost nodes)."""

    reason: Reason
    summary: str
    detail: str
    hint: str
    infrastructure: bool

    def error_message(self, log_tail: Sequence[str] = ()) -> str:
        """The text a Colonies user reads: summary, detail, hint, then the last log lines."""
        text = f"{self.summary}: {self.detail}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        if log_tail:
            text += "\nlast log lines:\n" + "\n".join(log_tail)
        return text


def _make(reason: Reason, argument: str, detail: str, hint: str = "", infrastructure: bool = False) -> Diagnosis:
    argument = " ".join(argument.split())  # API messages may span lines; a summary does not
    if len(argument) > _MAX_ARG:
        argument = argument[:_MAX_ARG - 3] + "..."
    summary = f"{reason.value}({argument})" if argument else reason.value
    return Diagnosis(reason, summary, detail, hint, infrastructure)


def create_failed(api_message: str) -> Diagnosis:
    """The diagnosis when the apiserver refuses to create the Job."""
    quota = "exceeded quota" in api_message
    hint = ("the namespace's ResourceQuota is full; the process may run once other Jobs finish" if quota
            else "the executor's jobTemplate or the funcspec produced a Job the cluster does not accept")
    return _make(Reason.CREATE_FAILED, api_message, "the Job could not be created", hint, infrastructure=quota)


_POD_SECURITY: Final = re.compile(r'violates PodSecurity "([^"]+)"')
_LIMIT_RANGE: Final = ("usage per Container is", "usage per Pod is", "limit to request ratio per")


def _pod_refused_hint(message: str) -> str:
    # Substrings of the admission plugins' own wording (ResourceQuota, PodSecurity, LimitRanger,
    # ServiceAccount, webhooks), as the Job controller repeats it in its FailedCreate Event.
    if "exceeded quota" in message:
        return ("the namespace's ResourceQuota is full or too small for this pod (the message names the "
                "resource): wait for other pods to end and resubmit, ask for less, or raise the quota")
    if level := _POD_SECURITY.search(message):
        return (f'the namespace enforces Pod Security "{level[1]}": set jobTemplate.securityProfile: restricted '
                "on the ColonyExecutor, or use an image that runs as a non-root user")
    if any(text in message for text in _LIMIT_RANGE):
        return ("the namespace's LimitRange bounds each container's cpu and memory: ask for conditions.cpu and "
                "conditions.mem within it (the ColonyExecutor's defaults apply when a funcspec sets none)")
    if "admission webhook" in message:
        return ("an admission webhook (a policy engine such as Kyverno or Gatekeeper) refused the pod for the "
                "rule its message names: change the ColonyExecutor's jobTemplate to satisfy it, or ask the "
                "cluster's admins")
    if "error looking up service account" in message:
        return "the ServiceAccount in the ColonyExecutor's jobTemplate.serviceAccountName does not exist: create it"
    return "read the message: the cluster's admission refused the pod"


def pod_create_refused(message: str) -> Diagnosis:
    """The diagnosis when the Job exists but its pods are refused at creation: `message` is
    the Job controller's FailedCreate message ("Error creating: pods ... is forbidden: ...")."""
    api_message = message.removeprefix("Error creating: ")
    return _make(Reason.POD_CREATE_REFUSED, api_message, "the Job's pods could not be created",
                 _pod_refused_hint(api_message), infrastructure="exceeded quota" in api_message)


# --- the checks, in the order diagnose applies them ---------------------------------------------

def _check_deadline(job: Mapping[str, Any]) -> Diagnosis | None:
    """The Job ran past activeDeadlineSeconds; its pods were then killed, so this comes
    before exit codes (which would read 143 or 137)."""
    cond = statuses.true_condition(job, "Failed", "FailureTarget")
    if not cond or cond.get("reason") != "DeadlineExceeded":
        return None
    seconds = (job.get("spec") or {}).get("activeDeadlineSeconds")
    return _make(Reason.DEADLINE_EXCEEDED, f"walltime {seconds}s",
                 f"the job ran longer than its walltime of {seconds}s and was stopped",
                 "raise conditions.walltime (or maxexectime when walltime is not set), "
                 "or make the program finish sooner")


# DisruptionTarget condition reasons (set before the pod is deleted) → our reasons.
_DISRUPTIONS: Final = {
    "PreemptionByScheduler": Reason.PREEMPTED,
    "PreemptionByKubeScheduler": Reason.PREEMPTED,  # the name before Kubernetes 1.27
    "EvictionByEvictionAPI": Reason.EVICTED,
    "TerminationByKubelet": Reason.EVICTED,  # node pressure or node shutdown
    "DeletionByTaintManager": Reason.NODE_LOST,  # the node went NotReady/unreachable
    "DeletionByPodGC": Reason.NODE_LOST,  # the node object is gone
}
_POD_REASONS: Final = {"Evicted": Reason.EVICTED, "Preempting": Reason.PREEMPTED, "NodeLost": Reason.NODE_LOST}
_DISRUPTION_HINTS: Final = {
    Reason.EVICTED: "the cluster evicted the pod (node pressure or a drain); running it again may succeed, "
                    "and requests that match real use (conditions.cpu, conditions.mem) make this less likely",
    Reason.PREEMPTED: "a higher-priority pod needed the node; running it again may succeed, "
                      "or give the executor's jobTemplate a priorityClassName",
    Reason.NODE_LOST: "the node running the pod became unreachable or was removed; running it again may succeed",
    Reason.UNKNOWN: "the cluster stopped the pod; running it again may succeed",
}


def _check_disruption(pods: Sequence[Mapping[str, Any]]) -> Diagnosis | None:
    """The cluster stopped a pod (eviction, preemption, lost node): infrastructure, and
    it must beat the exit codes of the containers it killed."""
    for pod in statuses.ordered_pods(pods):
        status = statuses.status(pod)
        cond = statuses.true_condition(pod, "DisruptionTarget")
        if status.get("reason") in _POD_REASONS:
            reason, message = _POD_REASONS[status["reason"]], str(status.get("message", ""))
        elif cond:
            reason, message = _DISRUPTIONS.get(cond.get("reason"), Reason.UNKNOWN), str(cond.get("message", ""))
        else:
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        name = statuses.metadata(pod).get("name", "")
        detail = f"pod {name} was stopped by the cluster" + (f" on node {node}" if node else "")
        return _make(reason, message, detail, _DISRUPTION_HINTS[reason], infrastructure=True)
    return None


def _check_terminated(pods: Sequence[Mapping[str, Any]]) -> Diagnosis | None:
    """A container ended non-zero: OOM first (it also has exit code 137), then a
    container that never started, then the plain exit code."""
    failed = [(statuses.describe_container(pod, name), statuses.container_spec(pod, name), t)
              for pod, name, t in statuses.container_states(pods, "terminated") if t.get("exitCode", 0) != 0]
    for where, container, t in failed:
        if t.get("reason") == "OOMKilled":
            limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
            try:
                shown = quantity.format_memory(quantity.parse_memory(limit)) if limit is not None else "unknown"
            except quantity.QuantityError:
                shown = str(limit)
            return _make(Reason.OOM_KILLED, f"limit {shown}",
                         f"{where} was killed for using more memory than its limit",
                         f"raise conditions.mem (now {shown} per container) or make the program use less memory")
    for where, _, t in failed:
        code, message = t.get("exitCode"), str(t.get("message", "")).strip()
        if t.get("reason") in _NEVER_STARTED:
            return _make(Reason.CONTAINER_CANNOT_RUN, message, f"{where} could not be started",
                         "check kwargs.cmd / kwargs.command: the program must exist in the image")
        try:
            killed = f" (killed by {signal.Signals(code - 128).name})" if code > 128 else ""
        except (TypeError, ValueError):
            killed = ""
        return _make(Reason.EXIT_CODE, str(code), f"{where} exited with code {code}{killed}")
    return None


def _helper_failure(pods: Sequence[Mapping[str, Any]], container: str) -> tuple[str, str] | None:
    """(where, message) of the helper container (CFS step, output sidecar) `container` when it
    ended non-zero; the message without the helper's own "cfs pull: "-style prefix."""
    for pod, name, t in statuses.init_container_states(pods, "terminated"):
        if name == container and t.get("exitCode", 0) != 0:
            message = str(t.get("message", "")).strip() or f"exit code {t.get('exitCode')}"
            for prefix in _HELPER_PREFIXES:
                message = message.removeprefix(prefix)
            return statuses.describe_container(pod, name), message
    return None


_HELPER_PREFIXES: Final = ("cfs pull: ", "cfs push: ", "output: ")
# The helper containers (jobs/storage.py, jobs/io.py): what their failure means, and what to do.
_HELPERS: Final = {
    storage.PULL: (Reason.CFS_PULL_FAILED, "could not fetch the process's fs inputs, so the program did not run",
                   "check that each fs label, file and snapshot exists in CFS (`colonies fs label ls`, "
                   "`colonies fs snapshot ls`) and that the executor's spec.storage reaches the S3 server"),
    io.OUTPUT: (Reason.OUTPUT_FAILED, "could not hand /colonies/out.json over, so the process is not reported as "
                                      "successful", "write at most the executor's spec.output.maxBytes to "
                                      "/colonies/out.json, readable by other users; put bigger data in CFS"),
    storage.PUSH: (Reason.CFS_PUSH_FAILED, "could not sync the program's fs outputs back, so the process is not "
                                           "reported as successful",
                   "check that the executor's spec.storage reaches the S3 server, and that its grace period "
                   "(spec.storage.pushSeconds) is long enough for the outputs"),
}


def _check_helper(pods: Sequence[Mapping[str, Any]], step: str) -> Diagnosis | None:
    """A CFS step that failed: the pull comes before exit codes (the program never started),
    the push after them (a program that failed says more than its missing outputs)."""
    if failed := _helper_failure(pods, step):
        where, message = failed
        reason, what, hint = _HELPERS[step]
        return _make(reason, message, f"{where} {what}", hint)
    return None


def _check_waiting(pods: Sequence[Mapping[str, Any]], now: datetime, grace: float) -> Diagnosis | None:
    """A container that cannot start: at once when waiting cannot help (a bad image
    name, an image that does not exist), otherwise once the grace period has passed."""
    waiting_ones = [*statuses.init_container_states(pods, "waiting"), *statuses.container_states(pods, "waiting")]
    for pod, name, waiting in waiting_ones:
        reason, message = waiting.get("reason"), str(waiting.get("message", ""))
        where = statuses.describe_container(pod, name)
        image = str(statuses.container_spec(pod, name).get("image", "")) or "?"
        # The grace starts when the pod got its node: a pod that waited long for one (capacity.elastic)
        # still gets the whole grace period for its image.
        scheduled = statuses.true_condition(pod, "PodScheduled") or {}
        since = scheduled.get("lastTransitionTime") or statuses.metadata(pod).get("creationTimestamp")
        overdue = statuses.seconds_overdue(since, now, grace) is not None
        if reason == "InvalidImageName":
            return _make(Reason.INVALID_IMAGE, image, f"{where}: {message}",
                         "kwargs.docker-image must be a valid image reference, e.g. 'ubuntu:24.04' "
                         "(lowercase repository, optional :tag or @digest)")
        # Since Kubernetes 1.30 the ImagePullBackOff message carries the pull error too.
        missing = any(text in message.lower() for text in _IMAGE_MISSING)
        if reason in ("ErrImagePull", "ImagePullBackOff") and (missing or overdue):
            return _make(Reason.IMAGE_PULL_FAILED, f"{image}: {message}",
                         f"{where} could not pull image {image}",
                         "check kwargs.docker-image (name and tag), that the registry is reachable, and that "
                         "private images have pull credentials (the executor's jobTemplate.imagePullSecrets)")
        if reason in _CANNOT_RUN and overdue:
            return _make(Reason.CONTAINER_CANNOT_RUN, message, f"{where} could not be started ({reason})",
                         _cannot_run_hint(message))
    return None


# The kubelet's words for a secretKeyRef it cannot resolve (kubelet_pods.go makeEnvironmentVariables):
# the Secret's own NotFound error, or its own message for a missing key.
_SECRET_MISSING: Final = re.compile(r'secrets? "[^"]*" not found')
_SECRET_KEY_MISSING: Final = "couldn't find key "


def _cannot_run_hint(message: str) -> str:
    if "runAsNonRoot" in message:
        return "the executor requires non-root images: use an image whose USER is a numeric non-root id"
    if _SECRET_MISSING.match(message):
        return ("a Secret named in kwargs.secrets does not exist in the executor's namespace: ask the cluster's "
                "admins to create it, or name another Secret the executor allows")
    if message.startswith(_SECRET_KEY_MISSING):
        return ("the Secret named in kwargs.secrets has no such key: fix kwargs.secrets[].key, or ask the "
                "cluster's admins to add it to the Secret")
    return ""


def _unschedulable_hint(message: str) -> str:
    # Substrings of the scheduler's "0/3 nodes are available: ..." summary.
    if "Insufficient" in message:
        return ("no node has enough free resources for the pod: ask for less per container (conditions.cpu, "
                "conditions.mem, conditions.gpu.count) or fewer processespernode")
    if "node affinity/selector" in message:
        return ("no node matches the pod's node selector: check conditions.gpu.name against the nodes' GPU label "
                "and the executor's jobTemplate.nodeSelector")
    if "untolerated taint" in message:
        return "the nodes have taints the pod does not tolerate: add tolerations to the executor's jobTemplate"
    return ""


def _check_unschedulable(pods: Sequence[Mapping[str, Any]], now: datetime, grace: float) -> Diagnosis | None:
    """The scheduler has found no node for longer than the grace period."""
    for pod in statuses.ordered_pods(pods):
        for cond in statuses.status(pod).get("conditions") or []:
            if (cond.get("type"), cond.get("status"), cond.get("reason")) != _NOT_SCHEDULED:
                continue
            since = cond.get("lastTransitionTime") or statuses.metadata(pod).get("creationTimestamp")
            waited = statuses.seconds_overdue(since, now, grace)
            if waited is not None:
                message = str(cond.get("message", ""))
                return _make(Reason.UNSCHEDULABLE, message, f"no node could take the pod for {int(waited)}s",
                             _unschedulable_hint(message))
    return None


def _check_failed(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Diagnosis | None:
    """The last resort, so that a failed Job always has a diagnosis: a pod the kubelet
    refused (OutOfcpu, NodeAffinity, ...), or the Job's own failure condition."""
    for pod in statuses.ordered_pods(pods):
        status = statuses.status(pod)
        if statuses.phase(pod) == "Failed" and status.get("reason"):
            return _make(Reason.UNKNOWN, f"{status['reason']}: {status.get('message', '')}",
                         f"the node refused or stopped pod {statuses.metadata(pod).get('name', '')}",
                         "running it again may succeed", infrastructure=True)
    cond = statuses.true_condition(job, "Failed", "FailureTarget")
    if cond or any(statuses.phase(p) == "Failed" for p in pods):
        cond = cond or {}
        argument = ": ".join(str(cond[k]) for k in ("reason", "message") if cond.get(k))
        return _make(Reason.UNKNOWN, argument, "the Job failed and no container failure explains it")
    return None


# --- public entry points ---------------------------------------------------------------------------

def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], *, now: datetime) -> Outcome:
    """The Job's terminal conditions decide (the *Target ones come first, in 1.31+). A
    failed pod is final too: with backoffLimit 0 the Job controller will fail the Job. So are
    pods that all succeeded, one per completion, well before the Job's deadline: the
    controller marks such a Job Complete a second later (`_pods_complete`)."""
    if statuses.true_condition(job, "Failed", "FailureTarget"):
        return Outcome.FAILED
    if statuses.true_condition(job, "Complete", "SuccessCriteriaMet") or _pods_complete(job, pods, now):
        # A program that succeeded whose outputs were not synced is not a success.
        failed_after = _helper_failure(pods, storage.PUSH) or _helper_failure(pods, io.OUTPUT)
        return Outcome.FAILED if failed_after else Outcome.SUCCEEDED
    if any(statuses.phase(pod) == "Failed" for pod in pods):
        return Outcome.FAILED
    return Outcome.RUNNING


# The Job controller syncs a Job a batch period (1 s) after its pods' last update
# (job_controller.go, syncJobBatchPeriod), and in that sync it checks the deadline before it
# counts completions: pods that succeeded this close to the deadline may still see it fail.
DEADLINE_MARGIN_SECONDS: Final = 30.0


def _pods_complete(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime) -> bool:
    """Every pod succeeded, one per completion (per index in an Indexed Job), in a Job that
    is not suspended and is well inside its deadline: what makes the controller mark it
    Complete. Deciding here ends the process, and hands its room on, a second sooner."""
    spec = job.get("spec") or {}
    if spec.get("suspend") or not pods or any(statuses.phase(pod) != "Succeeded" for pod in pods):
        return False
    if spec.get("completionMode") == "Indexed":
        completed = len({statuses.completion_index(pod) for pod in pods})
    else:
        completed = len(pods)
    if completed < int(spec.get("completions") or 1):
        return False
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is None:
        return True
    started = statuses.status(job).get("startTime")
    return (statuses.parse_time(started) is not None
            and statuses.seconds_overdue(started, now, float(deadline) - DEADLINE_MARGIN_SECONDS) is None)


def diagnose(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], *,
             now: datetime, pending_grace_seconds: float,
             unschedulable_grace_seconds: float | None = None) -> Diagnosis | None:
    """Why this Job failed or will not run, or None while nothing is known to be wrong. A pod
    the scheduler cannot place gets `unschedulable_grace_seconds` (capacity.elastic: it waits
    for a node the autoscaler adds), else `pending_grace_seconds` like any pending pod."""
    unschedulable_grace = pending_grace_seconds if unschedulable_grace_seconds is None else unschedulable_grace_seconds
    return (_check_deadline(job)
            or _check_disruption(pods)
            or _check_helper(pods, storage.PULL)
            or _check_terminated(pods)
            or _check_helper(pods, storage.PUSH)
            or _check_helper(pods, io.OUTPUT)
            or _check_waiting(pods, now, pending_grace_seconds)
            or _check_unschedulable(pods, now, unschedulable_grace)
            or _check_failed(job, pods))


# The kubelet keeps the last 4096 bytes of a container's termination message, and a pod's
# messages share 12 KiB evenly between its containers (kubelet container/runtime.go
# MaxContainerTerminationMessageLength, MaxPodTerminationMessageLogLength).
MESSAGE_LIMIT: Final = 4096
POD_MESSAGES_LIMIT: Final = 12 * 1024
_FLOAT64_EXACT: Final = 2**53  # Colonies holds numbers as float64: integers beyond this are rounded


@dataclass(frozen=True)
class ProcessOutput:
    """What a succeeded process returns. `values` go to closesuccessfulmsg; `notes` are lines
    for the process log about what the values cannot say (a message Kubernetes cut)."""

    values: tuple[str | int | float, ...] = ()
    notes: tuple[str, ...] = ()


def _not_finite(text: str) -> Any:
    # NaN, Infinity, 1e999: Python reads them as floats, but they are not JSON on the wire
    # and Colonies' Go server could not hold them.
    raise ValueError(f"{text[:20]} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _not_finite(text)


def _client_value(value: Any) -> str | int | float:
    """pycolonies 1.0.25 reads `out` as List[str | int | float] (pydantic, model.py): an
    object, an array or null fails get_process and wait, and a boolean reads as 1 or 0.
    Strings and numbers stay; everything else goes as its JSON text, and so does an integer
    past 2**53, which the server's float64 would round."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int) and abs(value) > _FLOAT64_EXACT:
        return str(value)
    return value


def _as_output(message: str) -> list[str | int | float] | None:
    """The values of a JSON message (a list as its elements, any other value as one), or
    None when it is not JSON Colonies can hold, which then goes as text."""
    try:
        value = json.loads(message, parse_constant=_not_finite, parse_float=_finite_float)
        return [_client_value(v) for v in (value if isinstance(value, list) else [value])]
    except (ValueError, RecursionError):  # a termination message may be up to 4 KiB of "[[[["
        return None


def _message_limit(pod: Mapping[str, Any]) -> int:
    spec = pod.get("spec") or {}
    containers = sum(len(spec.get(k) or ()) for k in ("containers", "initContainers", "ephemeralContainers"))
    return min(MESSAGE_LIMIT, POD_MESSAGES_LIMIT // containers) if containers else MESSAGE_LIMIT


def file_output(data: bytes) -> ProcessOutput:
    """The process output from /colonies/out.json, by the termination message's rules: JSON as
    data (a list as its elements), other text as one string."""
    text = data.decode("utf-8", errors="replace")
    parsed = _as_output(text)
    notes = () if parsed is not None or not text.strip() else (
        "[colonies-operator: /colonies/out.json is not valid JSON: the output holds it as text]",)
    values = parsed if parsed is not None else ([text.strip()] if text.strip() else [])
    return ProcessOutput(tuple(values), notes)


def termination_output(pods: Sequence[Mapping[str, Any]]) -> ProcessOutput:
    """The process output: the termination messages of the first succeeded pod's
    containers, in container order. JSON is taken as data (a list as its elements, any
    other value as one element; see `_client_value`), other text as one string; no message
    gives no values. A message at the size Kubernetes cuts messages to that is not JSON
    is kept as text with a note: it was most likely JSON once, cut."""
    for pod in statuses.ordered_pods(pods):
        if statuses.phase(pod) != "Succeeded":
            continue
        values: list[str | int | float] = []
        notes: list[str] = []
        limit = _message_limit(pod)
        for status in statuses.container_statuses(pod):
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if not isinstance(message, str) or not message.strip():
                continue
            parsed = _as_output(message)
            if parsed is None and len(message.encode()) >= limit:
                where = statuses.describe_container(pod, str(status.get("name", "")))
                notes.append(f"[colonies-operator: the termination message of {where} reached Kubernetes' limit "
                             f"of {limit} bytes, so Kubernetes probably cut it, and it is not valid JSON: the "
                             "output holds it as text]")
            values.extend([message.strip()] if parsed is None else parsed)
        return ProcessOutput(tuple(values), tuple(notes))
    return ProcessOutput()
