"""A `RunSpec` → the `batch/v1` Job dict that runs it, and what such a Job requests.

`build_job` is a pure function: the same run and settings always give the same dict,
and in particular the same name (`job_name`), so creating it twice is harmless — a 409
AlreadyExists means "already created: adopt it". Our labels and annotations are the
operator's only record of which process a Job belongs to; the executor's jobTemplate
overlay is merged as data (dicts and lists, never text) and can add to them but never
replace them.

The Job leaves retries to Colonies (`backoffLimit: 0`), is bounded by the process's
walltime (`activeDeadlineSeconds`), and runs with restricted security defaults that
still let ordinary root images such as busybox or ubuntu start; with the "restricted"
security profile it meets Pod Security "restricted" in full, running as a non-root user.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from colonies_operator.jobs import io, kueue, podtemplate, quantity, spec, storage
from colonies_operator.jobs.podtemplate import TemplateError

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "colonies-operator"
EXECUTOR_LABEL: Final = "colonyos.io/executor"
COLONY_LABEL: Final = "colonyos.io/colony"
PROCESS_LABEL: Final = "colonyos.io/process"  # the first 20 hex of the process id
ATTEMPT_LABEL: Final = "colonyos.io/attempt"
PROCESS_ID_ANNOTATION: Final = "colonyos.io/process-id"  # the full id: label values stop at 63
EXECUTOR_ID_ANNOTATION: Final = "colonyos.io/executor-id"
# The server's start time of the assignment this Job runs: a process re-queued with its
# retries count unchanged (its executor was removed) comes back under the same Job name,
# and this tells the new assignment's Job from the old one's.
ASSIGNED_AT_ANNOTATION: Final = "colonyos.io/assigned-at"
EXECUTOR_NAME_ANNOTATION: Final = "colonyos.io/executor-name"  # the full name: label values stop at 63
RESOURCE_LABEL: Final = "colonyos.io/executor-resource"  # the ColonyExecutor that made the Job
PROFILE_LABEL: Final = "colonyos.io/profile"  # the profile (kwargs.profile) the Job was built from

JOB_NAME_PREFIX: Final = "colony-"
SHORT_ID_LENGTH: Final = 20  # 80 bits of the process id: unique enough, and fits in a name

# The jobTemplate keys an executor may set, and the Python type each must have.
OVERLAY_KEYS: Final[Mapping[str, type]] = {
    "nodeSelector": dict, "tolerations": list, "serviceAccountName": str, "imagePullSecrets": list,
    "labels": dict, "annotations": dict, "priorityClassName": str,
    "securityContext": dict,  # merged into the pod's securityContext (e.g. runAsNonRoot)
    "containerSecurityContext": dict,  # merged into every container's securityContext
    "podTemplate": dict,  # a full PodTemplateSpec under all of the above (jobs/podtemplate.py)
}

# The Pod Security profile a Job may ask for, and the user it runs as unless told otherwise:
# "restricted" needs runAsNonRoot, and images whose USER is root (busybox, ubuntu) only start
# under it with a non-root user given. 65534 is "nobody" in most base images.
RESTRICTED: Final = "restricted"
SECURITY_PROFILES: Final = (RESTRICTED,)
NOBODY: Final = 65534

_SHORT_ID: Final = re.compile(rf"[0-9a-f]{{{SHORT_ID_LENGTH}}}")
_NOT_LABEL_CHARS: Final = re.compile(r"[^-A-Za-z0-9_.]+")


@dataclass(frozen=True)
class Profile:
    """A named jobTemplate a funcspec picks with kwargs.profile (spec.profiles)."""

    overlay: Mapping[str, Any]  # keys in OVERLAY_KEYS
    security_profile: str = ""


@dataclass(frozen=True)
class JobSettings:
    """What the executor (its ColonyExecutor resource) contributes to every Job it creates."""

    namespace: str
    executor_name: str
    executor_id: str
    colony_name: str
    gpu_resource_name: str = "nvidia.com/gpu"  # the extended resource a GPU is requested as
    gpu_node_label: str = "accelerator"  # the node label conditions.gpu.name selects on
    # Set on the Job when its result is in Colonies, in the patch that marks it reported, never
    # before: a finished Job the TTL removed while the operator was down would lose its result.
    ttl_seconds_after_finished: int | None = 300  # None: finished Jobs stay until deleted
    job_template: Mapping[str, Any] = field(default_factory=dict)  # overlay, keys in OVERLAY_KEYS
    security_profile: str = ""  # "" (the defaults below) or RESTRICTED (Pod Security "restricted")
    resource_name: str = ""  # the ColonyExecutor: its Jobs outlive an identity (key, name) it had
    storage: storage.StorageSettings | None = None  # CFS for funcspecs with fs (spec.storage)
    output: io.OutputSettings | None = None  # /colonies/out.json becomes the output (spec.output.file)
    profiles: Mapping[str, Profile] = field(default_factory=dict)  # spec.profiles
    profile: str = ""  # the profile these settings are of (for_profile)
    # conditions.gpu.name → the value of gpu_node_label (e.g. a100 → NVIDIA-A100-SXM4-80GB); other
    # names are used as they are
    gpu_products: Mapping[str, str] = field(default_factory=dict)
    gpu_memory_label: str = "nvidia.com/gpu.memory"  # a node label of each GPU's memory in MiB (GFD)
    kueue: kueue.KueueSettings | None = None  # Jobs wait in a Kueue LocalQueue, created suspended (spec.kueue)

    def __post_init__(self) -> None:
        # Checked here, once, so a typo in the CR fails loudly instead of being ignored.
        check_overlay(self.job_template, self.security_profile, "jobTemplate")
        for name, profile in self.profiles.items():
            check_overlay(profile.overlay, profile.security_profile, f"profiles.{name}")

    def for_profile(self, name: str) -> JobSettings:
        """These settings with the overlay of profile `name` ("" is the plain jobTemplate)."""
        if not name:
            return self
        profile = self.profiles.get(name)
        if profile is None:
            raise ValueError(f"kwargs.profile {name!r} is not a profile of this executor")
        return dataclasses.replace(self, job_template=profile.overlay, security_profile=profile.security_profile,
                                   profiles={}, profile=name)


def check_overlay(overlay: Mapping[str, Any], security_profile: str, path: str) -> None:
    """Raise TemplateError naming the field when a jobTemplate (or profile) cannot be used."""
    for key, value in overlay.items():
        expected = OVERLAY_KEYS.get(key)
        if expected is None:
            raise TemplateError(f"{path}.{key}", f"is not supported (supported: {', '.join(OVERLAY_KEYS)})")
        if not isinstance(value, expected):
            raise TemplateError(f"{path}.{key}", f"must be a {expected.__name__}, got {type(value).__name__}")
    if security_profile and security_profile not in SECURITY_PROFILES:
        raise TemplateError(f"{path}.securityProfile", f"{security_profile!r} is not supported "
                                                       f"(supported: {', '.join(SECURITY_PROFILES)})")
    pod_security = overlay.get("securityContext", {})
    if security_profile == RESTRICTED and pod_security.get("runAsUser") == 0:
        raise TemplateError(f"{path}.runAsUser", "0 runs as root, which securityProfile restricted forbids")
    if security_profile == RESTRICTED and pod_security.get("runAsNonRoot") is False:
        raise TemplateError(f"{path}.runAsNonRoot", "false contradicts securityProfile restricted")
    if "podTemplate" in overlay:
        podtemplate.check(overlay["podTemplate"], f"{path}.podTemplate", security_profile == RESTRICTED)


def label_value(text: str) -> str:
    """`text` as a valid label value: unchanged when it already is one; otherwise cleaned
    and suffixed with a hash of the original, so different names do not end up alike."""
    if spec.is_label_value(text):
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    cleaned = _NOT_LABEL_CHARS.sub("-", text)[:52].strip("-_.")
    return f"{cleaned}-{digest}" if cleaned else digest


def short_id(process_id: str) -> str:
    """The first 20 hex of a process id: the process label value and part of the Job name."""
    short = process_id[:SHORT_ID_LENGTH]
    if not _SHORT_ID.fullmatch(short):
        raise ValueError(f"not a Colonies process id: {process_id!r}")
    return short


def job_name(process_id: str, attempt: int) -> str:
    """`colony-<first 20 hex>-<attempt>`: one name per attempt of a process, always the same."""
    if attempt < 0:
        raise ValueError(f"attempt must not be negative, got {attempt}")
    return f"{JOB_NAME_PREFIX}{short_id(process_id)}-{attempt}"


def executor_selector(settings: JobSettings) -> str:
    """The label selector of every Job (and pod) this executor created."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY},{EXECUTOR_LABEL}={label_value(settings.executor_name)}"


def _metadata(run: spec.RunSpec, settings: JobSettings) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations): the overlay's first, ours over them."""
    labels = {
        MANAGED_BY_LABEL: MANAGED_BY,
        EXECUTOR_LABEL: label_value(settings.executor_name),
        COLONY_LABEL: label_value(settings.colony_name),
        PROCESS_LABEL: short_id(run.process_id),
        ATTEMPT_LABEL: str(run.attempt),
    }
    if settings.resource_name:
        labels[RESOURCE_LABEL] = label_value(settings.resource_name)
    if settings.profile:
        labels[PROFILE_LABEL] = label_value(settings.profile)
    annotations = {PROCESS_ID_ANNOTATION: run.process_id, EXECUTOR_ID_ANNOTATION: settings.executor_id,
                   EXECUTOR_NAME_ANNOTATION: settings.executor_name}
    if run.assigned_at:
        annotations[ASSIGNED_AT_ANNOTATION] = run.assigned_at
    overlay = settings.job_template
    return {**overlay.get("labels", {}), **labels}, {**overlay.get("annotations", {}), **annotations}


def _resources(run: spec.RunSpec, settings: JobSettings) -> dict[str, Any]:
    """Requests equal limits (Guaranteed QoS when both are set): what is accounted for
    against the executor's capacity is what the container can use."""
    amounts: dict[str, str] = {}
    if run.cpu_millis:
        amounts["cpu"] = quantity.format_cpu(run.cpu_millis)
    if run.memory_bytes:
        amounts["memory"] = quantity.format_memory(run.memory_bytes)
    if run.gpu_count > 0:
        amounts[settings.gpu_resource_name] = str(run.gpu_count)
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def _literal(words: Sequence[str]) -> list[str]:
    """Words the kubelet passes on exactly as written. It expands `$(VAR)` in a container's
    command and args and turns `$$` into `$`, so every `$` is doubled: a shell then sees
    `kill -9 $$` and `$(id)` as the user wrote them (a real kubelet proved it: tests/integration/test_real_node.py)."""
    return [w.replace("$", "$$") for w in words]


def _env(run: spec.RunSpec) -> list[dict[str, Any]]:
    """The plain variables, then one per named Secret key: the kubelet reads its value from the
    Secret when it starts the container, so the value is never in the Job, nor in Colonies."""
    return ([{"name": k, "value": v} for k, v in run.env]
            + [{"name": s.env, "valueFrom": {"secretKeyRef": {"name": s.secret, "key": s.key}}} for s in run.secrets]
            + io.program_env(run.input_json))


def _containers(run: spec.RunSpec, settings: JobSettings) -> list[dict[str, Any]]:
    security = _container_security(settings)
    names = ["main"] if run.processes_per_node == 1 else [f"main-{i}" for i in range(run.processes_per_node)]
    containers = []
    for name in names:
        container: dict[str, Any] = {"name": name, "image": run.image, "command": _literal(run.command)}
        if run.args:
            container["args"] = _literal(run.args)
        container["env"] = _env(run)
        if resources := _resources(run, settings):
            container["resources"] = resources
        # On failure the last log lines become the termination message, so a diagnosis
        # has them even when the logs could not be shipped.
        container["terminationMessagePolicy"] = "FallbackToLogsOnError"
        container["securityContext"] = copy.deepcopy(security)
        mounts = ([storage.program_mount(run.fs)] if run.fs is not None else []) + io.program_mounts(
            run.input_json, settings.output)
        if mounts:
            container["volumeMounts"] = mounts
        containers.append(container)
    return containers


def _container_security(settings: JobSettings) -> dict[str, Any]:
    return podtemplate.merged({"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                   settings.job_template.get("containerSecurityContext", {}))


def _pull_secrets(secrets: list[Any]) -> list[dict[str, Any]]:
    """imagePullSecrets given as names or as Kubernetes' `{name: ...}` objects."""
    return [{"name": s} if isinstance(s, str) else copy.deepcopy(s) for s in secrets]


def _pod_security(profile: str) -> dict[str, Any]:
    """The pod's securityContext before the overlay. Every container also drops all
    capabilities and may not escalate privileges (`_containers`), so with "restricted" the
    pod meets that Pod Security level whatever the image's USER is."""
    security: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if profile == RESTRICTED:
        security.update(runAsNonRoot=True, runAsUser=NOBODY, runAsGroup=NOBODY)
    return security


def _pod_spec(run: spec.RunSpec, settings: JobSettings) -> dict[str, Any]:
    overlay = settings.job_template
    pod: dict[str, Any] = {
        "restartPolicy": "Never",  # a failed container fails the attempt; Colonies retries
        "enableServiceLinks": False,  # no env var per Service of the namespace in user code
        "securityContext": podtemplate.merged(_pod_security(settings.security_profile), overlay.get("securityContext", {})),
        "containers": _containers(run, settings),
    }
    template_spec = overlay.get("podTemplate", {}).get("spec") or {}
    if "serviceAccountName" in overlay:
        pod["serviceAccountName"] = overlay["serviceAccountName"]
    elif "serviceAccountName" not in template_spec:
        pod["automountServiceAccountToken"] = False  # user code gets no API credentials
    node_selector = dict(overlay.get("nodeSelector", {}))
    if run.gpu_count > 0 and run.gpu_name:
        # The process's GPU choice wins over an overlay selector on the same label: a
        # mismatch then shows as Unschedulable instead of silently running elsewhere.
        node_selector[settings.gpu_node_label] = settings.gpu_products.get(run.gpu_name, run.gpu_name)
    if node_selector:
        pod["nodeSelector"] = node_selector
    if run.gpu_count > 0 and run.gpu_memory_mib > 0:
        # GPU Feature Discovery labels each node with one GPU's memory in MiB; Gt is strict.
        pod["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": settings.gpu_memory_label, "operator": "Gt",
                                   "values": [str(run.gpu_memory_mib - 1)]}]}]}}}
    for key in ("tolerations", "priorityClassName"):
        if overlay.get(key):
            pod[key] = copy.deepcopy(overlay[key])
    if overlay.get("imagePullSecrets"):
        pod["imagePullSecrets"] = _pull_secrets(overlay["imagePullSecrets"])
    if run.fs is not None:
        _add_storage(pod, run, settings)
    _add_io(pod, run, settings)
    if "podTemplate" in overlay:
        return podtemplate.merge_pod(overlay["podTemplate"], pod, _container_security(settings))
    return pod


def _add_io(pod: dict[str, Any], run: spec.RunSpec, settings: JobSettings) -> None:
    """in.json and the out.json sidecar (jobs/io.py), after any CFS steps."""
    volumes = io.volumes(job_name(run.process_id, run.attempt), run.input_json, settings.output)
    if volumes:
        pod["volumes"] = pod.get("volumes", []) + volumes
    if settings.output is not None:
        sidecar = io.output_sidecar(settings.output, {**_container_security(settings), "readOnlyRootFilesystem": True})
        pod["initContainers"] = pod.get("initContainers", []) + [sidecar]


def _add_storage(pod: dict[str, Any], run: spec.RunSpec, settings: JobSettings) -> None:
    """The CFS steps around the program (jobs/storage.py)."""
    if settings.storage is None or run.fs is None:
        raise ValueError("fs needs the executor's spec.storage")
    security = {**_container_security(settings), "readOnlyRootFilesystem": True}
    pod["initContainers"] = storage.containers(run.fs, run.process_id, run.attempt, settings.storage, security)
    pod["volumes"] = storage.volumes(run.fs, settings.storage)
    if run.fs.dirs:  # the push runs in the grace period, after the program
        pod["terminationGracePeriodSeconds"] = settings.storage.push_seconds


def build_job(run: spec.RunSpec, settings: JobSettings) -> dict[str, Any]:
    """The complete `batch/v1` Job for one attempt of one process."""
    settings = settings.for_profile(run.profile)
    labels, annotations = _metadata(run, settings)
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # Colonies owns retries: a failed attempt is reported, not repeated
        "parallelism": run.nodes,
        "completions": run.nodes,
    }
    if run.nodes > 1:
        job_spec["completionMode"] = "Indexed"  # each node's pod gets JOB_COMPLETION_INDEX
    if run.deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = run.deadline_seconds  # counts from admission under Kueue
    job_labels = dict(labels)
    if settings.kueue is not None:
        job_spec["suspend"] = True  # Kueue admits the Job by resuming it
        job_labels |= kueue.job_labels(settings.kueue, run.priority)
    # Labels go on the pods too: the operator watches pods by these labels.
    job_spec["template"] = {
        "metadata": podtemplate.pod_metadata(settings.job_template.get("podTemplate") or {}, labels, annotations),
        "spec": _pod_spec(run, settings),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(run.process_id, run.attempt), "namespace": settings.namespace,
                     "labels": job_labels, "annotations": annotations},
        "spec": job_spec,
    }


def _pod_requests(pod_spec: Mapping[str, Any], gpu_resource_name: str) -> tuple[int, int, int]:
    """A pod's effective requests, by Kubernetes' rule: the larger of what runs beside the
    program (its containers plus every sidecar, an init container with restartPolicy Always)
    and the peak of the init phase (each init container plus the sidecars started before
    it); a missing request defaults to the limit."""
    def amounts(container: Mapping[str, Any]) -> tuple[int, int, int]:
        resources = container.get("resources") or {}
        given = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        return (quantity.parse_cpu(given.get("cpu", 0)), quantity.parse_memory(given.get("memory", 0)),
                int(given.get(gpu_resource_name, 0)))

    main = [amounts(c) for c in pod_spec.get("containers") or []]
    sidecars, init_peak = [0, 0, 0], [0, 0, 0]
    for container in pod_spec.get("initContainers") or []:
        need = amounts(container)
        for i in range(3):
            if container.get("restartPolicy") == "Always":
                sidecars[i] += need[i]
                init_peak[i] = max(init_peak[i], sidecars[i])
            else:
                init_peak[i] = max(init_peak[i], sidecars[i] + need[i])
    cpu, memory, gpus = (max(sum(a[i] for a in main) + sidecars[i], init_peak[i]) for i in range(3))
    return cpu, memory, gpus


def job_request_totals(job: Mapping[str, Any], gpu_resource_name: str = "nvidia.com/gpu") -> tuple[int, int, int]:
    """(cpu millicores, memory bytes, GPUs) requested by all pods of `job` running at once
    (parallelism × one pod's requests): what it takes from the executor's capacity."""
    job_spec = job.get("spec") or {}
    parallelism = job_spec.get("parallelism", 1)
    pod_spec = (job_spec.get("template") or {}).get("spec") or {}
    cpu, memory, gpus = _pod_requests(pod_spec, gpu_resource_name)
    return cpu * parallelism, memory * parallelism, gpus * parallelism
