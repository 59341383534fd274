"""Job and pod status → outcome, diagnosis and output, on status dicts shaped like real
Kubernetes 1.37 output (containerd runtime)."""

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from colonies_operator.jobs import diagnosis
from colonies_operator.jobs.diagnosis import Outcome, Reason

JOB_NAME = "colony-0123456789abcdef0123-0"
CREATED = datetime(2026, 5, 4, 10, 0, 0, tzinfo=timezone.utc)
GRACE = 120.0


def ts(seconds: float = 0) -> str:
    return (CREATED + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(type_, status="True", reason=None, message=None, at=0) -> dict:
    c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": ts(at)}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def job(*conditions, deadline=None, **status) -> dict:
    spec = {"backoffLimit": 0, "completions": 1, "parallelism": 1, "completionMode": "NonIndexed",
            "template": {"spec": {"containers": [{"name": "main", "image": "ubuntu:20.04"}]}}}
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    body = {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": JOB_NAME, "namespace": "colonies", "creationTimestamp": ts()}, "spec": spec,
            "status": {"startTime": ts(), "active": 1, "ready": 0, "terminating": 0,
                       "uncountedTerminatedPods": {}, **status}}
    if conditions:
        body["status"]["conditions"] = list(conditions)
    return body


def terminated(code, reason="Error", message=None) -> dict:
    t = {"exitCode": code, "reason": reason, "startedAt": ts(2), "finishedAt": ts(9),
         "containerID": "containerd://4f1c0e5d9b"}
    if message is not None:
        t["message"] = message
    return {"terminated": t}


def waiting(reason, message) -> dict:
    return {"waiting": {"reason": reason, "message": message}}


RUNNING = {"running": {"startedAt": ts(2)}}


def pod(phase="Running", states=(("main", RUNNING),), conditions=None, index=None, memory="256Mi",
        image="ubuntu:20.04", reason=None, message=None, suffix="x7k2p") -> dict:
    annotations = {"colonyos.io/process-id": "0123456789abcdef" * 4}
    if index is not None:
        annotations["batch.kubernetes.io/job-completion-index"] = str(index)
    body = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{JOB_NAME}-{suffix}", "namespace": "colonies", "creationTimestamp": ts(),
                     "labels": {"batch.kubernetes.io/job-name": JOB_NAME, "colonyos.io/attempt": "0"},
                     "annotations": annotations},
        "spec": {"restartPolicy": "Never", "nodeName": "kwok-node-1",
                 "containers": [{"name": name, "image": image,
                                 "resources": {"limits": {"cpu": "500m", "memory": memory},
                                               "requests": {"cpu": "500m", "memory": memory}}}
                                for name, _ in states]},
        "status": {"phase": phase, "hostIP": "10.0.0.7", "podIP": "10.244.1.9", "qosClass": "Guaranteed",
                   "startTime": ts(1),
                   "conditions": conditions if conditions is not None else [
                       cond("PodReadyToStartContainers"), cond("Initialized"), cond("Ready"),
                       cond("ContainersReady"), cond("PodScheduled")],
                   # The API lists container statuses sorted by name, not in spec order.
                   "containerStatuses": sorted(
                       ({"name": name, "image": f"docker.io/library/{image}", "imageID": "", "ready": False,
                         "restartCount": 0, "started": "running" in state, "state": state, "lastState": {}}
                        for name, state in states), key=lambda s: s["name"])},
    }
    if reason:
        body["status"]["reason"] = reason
    if message:
        body["status"]["message"] = message
    return body


PENDING_CONDITIONS = [cond("PodReadyToStartContainers"), cond("Initialized"),
                      cond("Ready", "False", "ContainersNotReady", "containers with unready status: [main]"),
                      cond("ContainersReady", "False", "ContainersNotReady", "containers with unready status: [main]"),
                      cond("PodScheduled")]
TOO_LONG = "Job was active longer than specified deadline"
BACKOFF_LIMIT = [cond("FailureTarget", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit"),
                 cond("Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")]
NOT_FOUND = ('rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/nosuch:latest": '
             'failed to resolve reference "docker.io/library/nosuch:latest": docker.io/library/nosuch:latest: not found')
DENIED = ('failed to pull and unpack image "docker.io/acme/private:1": failed to resolve reference '
          '"docker.io/acme/private:1": pull access denied, repository does not exist or may require authorization: '
          'server message: insufficient_scope: authorization failed')
TIMEOUT = ('Back-off pulling image "registry.example.com/app:1": ErrImagePull: failed to pull and unpack image '
           '"registry.example.com/app:1": failed to do request: Head "https://registry.example.com/v2/app/manifests/1": '
           'dial tcp 10.1.2.3:443: i/o timeout')
EXEC_NOT_FOUND = ('failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create '
                  'failed: unable to start container process: exec: "nosuch": executable file not found in $PATH: unknown')
# The kubelet's words (kubelet_pods.go, makeEnvironmentVariables) for a secretKeyRef it cannot resolve.
SECRET_MISSING = 'secret "db" not found'
SECRET_KEY_MISSING = "couldn't find key password in Secret colonies/db"
NON_ROOT = f'container has runAsNonRoot and image will run as root (pod: "{JOB_NAME}-x7k2p_colonies(6a1f)", container: main)'
NO_GPU = ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
          "3 No preemption victims found for incoming pod.")
NO_MATCH = ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are "
            "available: 3 Preemption is not helpful for scheduling.")
LOW_MEMORY = ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 88Mi. Container main was "
              "using 1200Mi, request is 256Mi, has larger consumption of memory. ")

REJECTED = "Pod was rejected: Node didn't have enough resource: cpu, requested: 4000, used: 500, capacity: 4000"


def unschedulable(message) -> list:
    return [cond("PodScheduled", "False", "Unschedulable", message, at=1)]


def evicted_by(disruption, why, **pod_status) -> dict:
    return pod("Failed", (("main", terminated(137, "ContainerStatusUnknown")),),
               [cond("DisruptionTarget", reason=disruption, message=why, at=30), cond("Ready", "False"),
                cond("PodScheduled")], **pod_status)


# (case, job, pods, seconds since the pod was created, reason, summary, infrastructure)
CASES = [
    ("exit code", job(*BACKOFF_LIMIT), [pod("Failed", (("main", terminated(3)),))], 10,
     Reason.EXIT_CODE, "ExitCode(3)", False),
    ("exit code before the Job controller noticed", job(), [pod("Failed", (("main", terminated(1)),))], 10,
     Reason.EXIT_CODE, "ExitCode(1)", False),
    ("oom", job(*BACKOFF_LIMIT), [pod("Failed", (("main", terminated(137, "OOMKilled")),))], 10,
     Reason.OOM_KILLED, "OOMKilled(limit 256Mi)", False),
    ("oom in a later container beats an exit code", job(),
     [pod("Failed", (("main-0", terminated(1)), ("main-1", terminated(137, "OOMKilled"))), memory="1Gi")], 10,
     Reason.OOM_KILLED, "OOMKilled(limit 1024Mi)", False),
    ("never started", job(*BACKOFF_LIMIT),
     [pod("Failed", (("main", terminated(128, "StartError", EXEC_NOT_FOUND)),))], 10,
     Reason.CONTAINER_CANNOT_RUN, f"ContainerCannotRun({EXEC_NOT_FOUND})", False),
    ("walltime", job(cond("FailureTarget", reason="DeadlineExceeded", message=TOO_LONG),
                     cond("Failed", reason="DeadlineExceeded", message=TOO_LONG), deadline=60),
     [pod("Failed", (("main", terminated(143)),))], 70, Reason.DEADLINE_EXCEEDED, "DeadlineExceeded(walltime 60s)", False),
    ("image not found", job(), [pod("Pending", (("main", waiting("ErrImagePull", NOT_FOUND)),), PENDING_CONDITIONS,
                                    image="nosuch:latest")], 5,
     Reason.IMAGE_PULL_FAILED, f"ImagePullFailed(nosuch:latest: {NOT_FOUND})", False),
    ("image denied", job(), [pod("Pending", (("main", waiting("ErrImagePull", DENIED)),), PENDING_CONDITIONS,
                                 image="acme/private:1")], 5,
     Reason.IMAGE_PULL_FAILED, f"ImagePullFailed(acme/private:1: {DENIED})", False),
    ("pull keeps failing", job(), [pod("Pending", (("main", waiting("ImagePullBackOff", TIMEOUT)),), PENDING_CONDITIONS,
                                       image="registry.example.com/app:1")], 130,
     Reason.IMAGE_PULL_FAILED, f"ImagePullFailed(registry.example.com/app:1: {TIMEOUT})", False),
    ("invalid image", job(), [pod("Pending", (("main", waiting(
        "InvalidImageName", 'Failed to apply default image tag "Ubuntu:20.04": couldn\'t parse image name '
        '"Ubuntu:20.04": invalid reference format: repository name must be lowercase')),), PENDING_CONDITIONS,
        image="Ubuntu:20.04")], 3, Reason.INVALID_IMAGE, "InvalidImage(Ubuntu:20.04)", False),
    ("runs as root", job(), [pod("Pending", (("main", waiting("CreateContainerConfigError", NON_ROOT)),),
                                PENDING_CONDITIONS)], 125,
     Reason.CONTAINER_CANNOT_RUN, f"ContainerCannotRun({NON_ROOT})", False),
    ("secret missing", job(), [pod("Pending", (("main", waiting("CreateContainerConfigError", SECRET_MISSING)),),
                                   PENDING_CONDITIONS)], 125,
     Reason.CONTAINER_CANNOT_RUN, f"ContainerCannotRun({SECRET_MISSING})", False),
    ("secret key missing", job(), [pod("Pending", (("main", waiting("CreateContainerConfigError", SECRET_KEY_MISSING)),),
                                       PENDING_CONDITIONS)], 125,
     Reason.CONTAINER_CANNOT_RUN, f"ContainerCannotRun({SECRET_KEY_MISSING})", False),
    ("no gpu", job(), [pod("Pending", (), unschedulable(NO_GPU))], 200,
     Reason.UNSCHEDULABLE, f"Unschedulable({NO_GPU})", False),
    ("no matching node", job(), [pod("Pending", (), unschedulable(NO_MATCH))], 200,
     Reason.UNSCHEDULABLE, f"Unschedulable({NO_MATCH})", False),
    ("evicted by the kubelet", job(*BACKOFF_LIMIT),
     [evicted_by("TerminationByKubelet", LOW_MEMORY, reason="Evicted", message=LOW_MEMORY)], 40,
     Reason.EVICTED, f"Evicted({LOW_MEMORY.strip()})", True),
    ("drained", job(*BACKOFF_LIMIT), [evicted_by("EvictionByEvictionAPI", "Eviction API: evicting")], 40,
     Reason.EVICTED, "Evicted(Eviction API: evicting)", True),
    ("preempted", job(*BACKOFF_LIMIT),
     [evicted_by("PreemptionByScheduler", "default-scheduler: preempting to accommodate a higher priority pod")], 40,
     Reason.PREEMPTED, "Preempted(default-scheduler: preempting to accommodate a higher priority pod)", True),
    ("node not ready", job(*BACKOFF_LIMIT),
     [evicted_by("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint")], 40,
     Reason.NODE_LOST, "NodeLost(Taint manager: deleting due to NoExecute taint)", True),
    ("node deleted", job(*BACKOFF_LIMIT), [evicted_by("DeletionByPodGC", "PodGC: node no longer exists")], 40,
     Reason.NODE_LOST, "NodeLost(PodGC: node no longer exists)", True),
    ("refused by the kubelet", job(*BACKOFF_LIMIT),
     [pod("Failed", (), [cond("PodScheduled")], reason="OutOfcpu", message=REJECTED)], 5,
     Reason.UNKNOWN, f"Unknown(OutOfcpu: {REJECTED})", True),
    ("failed with its pods gone", job(*BACKOFF_LIMIT), [], 300,
     Reason.UNKNOWN, "Unknown(BackoffLimitExceeded: Job has reached the specified backoff limit)", False),
]


@pytest.mark.parametrize("case, job_, pods, seconds, reason, summary, infrastructure", CASES, ids=[c[0] for c in CASES])
def test_each_failure_gets_its_reason_and_summary(case, job_, pods, seconds, reason, summary, infrastructure):
    found = diagnosis.diagnose(job_, pods, now=CREATED + timedelta(seconds=seconds), pending_grace_seconds=GRACE)
    assert found is not None
    assert (found.reason, found.summary, found.infrastructure) == (reason, summary, infrastructure)
    assert found.detail and found.error_message().startswith(f"{summary}: {found.detail}")


@pytest.mark.parametrize("case, job_, pods, seconds, reason, summary, infrastructure", CASES, ids=[c[0] for c in CASES])
def test_a_failed_outcome_always_has_a_diagnosis(case, job_, pods, seconds, reason, summary, infrastructure):
    if diagnosis.job_outcome(job_, pods, now=CREATED) is Outcome.FAILED:
        assert diagnosis.diagnose(job_, pods, now=CREATED, pending_grace_seconds=1e9) is not None


@pytest.mark.parametrize("case, pods, seconds", [
    ("running", [pod()], 10_000),
    ("just created, no status yet", [pod("Pending", (), [])], 1),
    ("waiting to be scheduled within the grace period", [pod("Pending", (), unschedulable(NO_GPU))], 100),
    ("pulling", [pod("Pending", (("main", waiting("ContainerCreating", "")),), PENDING_CONDITIONS)], 10_000),
    ("pull retrying within the grace period", [pod("Pending", (("main", waiting("ImagePullBackOff", TIMEOUT)),),
                                                   PENDING_CONDITIONS)], 60),
    ("config error within the grace period", [pod("Pending", (("main", waiting("CreateContainerConfigError", NON_ROOT)),),
                                                  PENDING_CONDITIONS)], 60),
    ("secret missing within the grace period", [pod("Pending", (("main", waiting("CreateContainerConfigError",
                                                                            SECRET_MISSING)),), PENDING_CONDITIONS)], 60),
    ("succeeded", [pod("Succeeded", (("main", terminated(0, "Completed")),))], 10),
    ("one process done, one running", [pod("Running", (("main-0", terminated(0, "Completed")), ("main-1", RUNNING)))], 10),
    ("no pods yet", [], 10_000),
])
def test_nothing_is_diagnosed_while_things_are_still_fine(case, pods, seconds):
    assert diagnosis.diagnose(job(), pods, now=CREATED + timedelta(seconds=seconds), pending_grace_seconds=GRACE) is None


def test_the_error_message_carries_the_detail_and_the_log_tail():
    found = diagnosis.diagnose(job(), [pod("Failed", (("main", terminated(3)),))], now=CREATED, pending_grace_seconds=GRACE)
    assert found.error_message(["line 1", "line 2"]) == (
        "ExitCode(3): container main exited with code 3\nlast log lines:\nline 1\nline 2")


@pytest.mark.parametrize("message, words", [
    (SECRET_MISSING, "does not exist in the executor's namespace"),
    (SECRET_KEY_MISSING, "has no such key"),
    (NON_ROOT, "non-root"),
])
def test_a_container_that_cannot_be_configured_gets_a_hint_for_its_cause(message, words):
    pods = [pod("Pending", (("main", waiting("CreateContainerConfigError", message)),), PENDING_CONDITIONS)]
    found = diagnosis.diagnose(job(), pods, now=CREATED + timedelta(seconds=GRACE + 1), pending_grace_seconds=GRACE)
    assert found.summary == f"ContainerCannotRun({message})"
    assert words in found.hint and ("kwargs.secrets" in found.hint) is (message != NON_ROOT)


def test_an_oom_message_names_the_limit_and_hints_at_conditions_mem():
    found = diagnosis.diagnose(job(), [pod("Failed", (("main", terminated(137, "OOMKilled")),))],
                               now=CREATED, pending_grace_seconds=GRACE)
    assert found.error_message().startswith(
        "OOMKilled(limit 256Mi): container main was killed for using more memory than its limit\nhint: ")
    assert "conditions.mem" in found.hint


def test_the_first_failing_container_in_spec_order_is_reported_with_its_signal():
    pods = [pod("Failed", (("main-0", terminated(143)), ("main-1", terminated(2))))]
    found = diagnosis.diagnose(job(), pods, now=CREATED, pending_grace_seconds=GRACE)
    assert found.detail == "container main-0 exited with code 143 (killed by SIGTERM)"


def test_in_a_multi_node_job_the_failing_node_is_named():
    pods = [pod("Running", index=1, suffix="b"), pod("Failed", (("main", terminated(4)),), index=0, suffix="a")]
    pods[0]["status"]["phase"] = "Failed"
    pods[0]["status"]["containerStatuses"][0]["state"] = terminated(9)
    found = diagnosis.diagnose(job(), pods, now=CREATED, pending_grace_seconds=GRACE)
    assert found.detail == "container main of node 0 exited with code 4"


@pytest.mark.parametrize("message, words", [(NO_GPU, "conditions.gpu.count"), (NO_MATCH, "conditions.gpu.name"),
                                            ("0/1 nodes are available: 1 node(s) had untolerated taint "
                                             "{dedicated: gpu}.", "tolerations")])
def test_unschedulable_hints_follow_the_scheduler_message(message, words):
    found = diagnosis.diagnose(job(), [pod("Pending", (), unschedulable(message))],
                               now=CREATED + timedelta(seconds=500), pending_grace_seconds=GRACE)
    assert words in found.hint and found.detail == "no node could take the pod for 499s"


def test_a_naive_now_is_taken_as_utc():
    pods = [pod("Pending", (), unschedulable(NO_GPU))]
    naive = (CREATED + timedelta(seconds=500)).replace(tzinfo=None)
    assert diagnosis.diagnose(job(), pods, now=naive, pending_grace_seconds=GRACE).reason is Reason.UNSCHEDULABLE


def test_create_failed_tells_a_full_quota_from_a_refused_job():
    quota = diagnosis.create_failed(f'jobs.batch "{JOB_NAME}" is forbidden: exceeded quota: compute, requested: '
                                    "requests.cpu=2, used: requests.cpu=3, limited: requests.cpu=4")
    invalid = diagnosis.create_failed(
        f'Job.batch "{JOB_NAME}" is invalid: spec.template.spec.containers[0].image: Required value')
    assert quota.reason is invalid.reason is Reason.CREATE_FAILED
    assert quota.summary.startswith("CreateFailed(jobs.batch") and quota.infrastructure
    assert not invalid.infrastructure


POD = f"{JOB_NAME}-x7k2p"
QUOTA = (f'pods "{POD}" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1')
POD_SECURITY = (f'pods "{POD}" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true '
                '(pod or container "main" must set securityContext.runAsNonRoot=true)')
LIMIT_RANGE = (f'pods "{POD}" is forbidden: [minimum cpu usage per Container is 200m, but request is 100m, '
               'maximum memory usage per Container is 1Gi, but limit is 2Gi]')
WEBHOOK = ('admission webhook "validate.kyverno.svc-fail" denied the request: resource Pod/jobs/x was blocked: '
           "require-team: label 'team' is required")
NO_SERVICE_ACCOUNT = (f'pods "{POD}" is forbidden: error looking up service account jobs/runner: '
                      'serviceaccount "runner" not found')


# (cause, the Job controller's FailedCreate message, words the hint must hold, infrastructure)
REFUSED = [
    ("quota", QUOTA, "ResourceQuota", True),
    ("pod security", POD_SECURITY, "jobTemplate.securityProfile: restricted", False),
    ("limit range", LIMIT_RANGE, "LimitRange", False),
    ("webhook", WEBHOOK, "admission webhook", False),
    ("service account", NO_SERVICE_ACCOUNT, "jobTemplate.serviceAccountName", False),
    ("anything else", 'pods "x" is forbidden: something new', "", False),
]


@pytest.mark.parametrize("cause, message, words, infrastructure", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_refused_pod_is_pod_create_refused_with_a_hint_for_its_cause(cause, message, words, infrastructure):
    found = diagnosis.pod_create_refused(f"Error creating: {message}")
    assert found.reason is Reason.POD_CREATE_REFUSED
    assert found.summary == f"PodCreateRefused({message})"  # without the controller's "Error creating: "
    assert found.detail == "the Job's pods could not be created"
    assert words in found.hint and (cause != "anything else" or found.hint.startswith("read the message"))
    assert found.infrastructure is infrastructure


def test_the_pod_security_hint_names_the_enforced_level():
    baseline = diagnosis.pod_create_refused(
        f'Error creating: pods "{POD}" is forbidden: violates PodSecurity "baseline:v1.37": privileged '
        '(container "main" must not set securityContext.privileged=true)')
    assert 'Pod Security "baseline:v1.37"' in baseline.hint


def test_long_api_messages_are_cut_in_the_summary():
    found = diagnosis.create_failed("x" * 1000)
    assert len(found.summary) < 320 and found.summary.endswith("...)")


def test_reason_values_are_the_documented_contract():
    assert [r.value for r in Reason] == [
        "ExitCode", "OOMKilled", "ImagePullFailed", "InvalidImage", "Unschedulable", "DeadlineExceeded",
        "Evicted", "Preempted", "NodeLost", "CreateFailed", "ContainerCannotRun", "Unknown", "PodCreateRefused",
        "CFSPullFailed", "CFSPushFailed", "OutputFailed"]
    assert Reason.OOM_KILLED == "OOMKilled"


def test_a_diagnosis_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        diagnosis.create_failed("x").summary = "y"


@pytest.mark.parametrize("job_, pods, outcome", [
    (job(), [], Outcome.RUNNING),
    (job(), [pod()], Outcome.RUNNING),
    (job(cond("Suspended", reason="JobSuspended")), [], Outcome.RUNNING),
    (job(cond("SuccessCriteriaMet", reason="CompletionsReached")), [pod("Succeeded")], Outcome.SUCCEEDED),
    (job(cond("SuccessCriteriaMet", reason="CompletionsReached"), cond("Complete", reason="CompletionsReached")), [],
     Outcome.SUCCEEDED),
    (job(BACKOFF_LIMIT[0]), [], Outcome.FAILED),
    (job(*BACKOFF_LIMIT), [], Outcome.FAILED),
    (job(cond("Failed", "False")), [], Outcome.RUNNING),
    (job(), [pod("Failed", (("main", terminated(1)),))], Outcome.FAILED),  # backoffLimit 0: the Job will fail
])
def test_the_outcome_follows_the_job_conditions(job_, pods, outcome):
    assert diagnosis.job_outcome(job_, pods, now=CREATED) is outcome



def succeeded(*messages, index=None, suffix="x7k2p") -> dict:
    states = tuple((f"main-{i}" if len(messages) > 1 else "main", terminated(0, "Completed", m))
                   for i, m in enumerate(messages))
    return pod("Succeeded", states, index=index, suffix=suffix)


# The output is what ColonyOS clients read back: pycolonies 1.0.25 validates `out` as
# List[str | int | float] (its model.py), so objects, arrays and null would fail get_process and
# wait, and a boolean would read as 1 or 0: those go as their JSON text.
@pytest.mark.parametrize("pods, values", [
    ([succeeded('[1, "two", {"three": 3}]')], (1, "two", '{"three": 3}')),
    ([succeeded('{"accuracy": 0.93}\n')], ('{"accuracy": 0.93}',)),
    ([succeeded('{"answer": 42}')], ('{"answer": 42}',)),
    ([succeeded('[[1, 2], [], null, false, "x", 7, -0.5, {"a": [true]}]')],
     ("[1, 2]", "[]", "null", "false", "x", 7, -0.5, '{"a": [true]}')),
    ([succeeded('{"name": "Zoë"}')], ('{"name": "Zoë"}',)),
    ([succeeded("true")], ("true",)),
    ([succeeded("null")], ("null",)),
    ([succeeded("42")], (42,)),
    ([succeeded("-2.5e3")], (-2500.0,)),
    ([succeeded('"done"')], ("done",)),
    ([succeeded("hello world\n")], ("hello world",)),
    ([succeeded(None)], ()),
    ([succeeded("  \n")], ()),
    ([succeeded("[]")], ()),
    ([succeeded("NaN")], ("NaN",)),  # not JSON for Colonies' Go server, so kept as text
    ([succeeded("[" * 3000)], ("[" * 3000,)),
    ([succeeded('["a"]', "b", None)], ("a", "b")),
    ([succeeded("second", index=1, suffix="b"), succeeded("first", index=0, suffix="a")], ("first",)),
    ([pod("Failed", (("main", terminated(1, "Error", "Traceback ...")),)), succeeded("ok", suffix="z")], ("ok",)),
    ([pod("Failed", (("main", terminated(1, "Error", "Traceback ...")),))], ()),
    ([], ()),
])
def test_the_output_is_the_termination_message_with_objects_arrays_booleans_and_null_as_their_json_text(pods, values):
    output = diagnosis.termination_output(pods)
    assert output.values == values and output.notes == ()


def test_an_integer_the_servers_float64_would_round_goes_as_its_text():
    # Colonies v1.9.12 holds numbers as float64: it returns 12345678901234567890 as 12345678901234567000
    # and 2**53 + 1 as 2**53. Past 2**53 an integer goes as its exact text instead.
    output = diagnosis.termination_output([succeeded("[12345678901234567890, -9007199254740993, 9007199254740992]")])
    assert output.values == ("12345678901234567890", "-9007199254740993", 9007199254740992)


def recorded_process(out: list) -> dict:
    """A finished process as a v1.9.12 server returns it from getprocessmsg."""
    zero = "0001-01-01T00:00:00Z"
    return {"processid": "0123456789abcdef" * 4, "initiatorid": "a" * 64, "initiatorname": "user",
            "assignedexecutorid": "e" * 64, "isassigned": True, "state": 2, "prioritytime": 1,
            "submissiontime": ts(), "starttime": ts(1), "endtime": ts(9), "waitdeadline": zero,
            "execdeadline": zero, "retries": 0, "attributes": None,
            "spec": {"nodename": "", "funcname": "execute", "args": [],
                     "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo"}, "priority": 0, "maxwaittime": -1,
                     "maxexectime": -1, "maxretries": 0,
                     "conditions": {"colonyname": "dev", "executornames": None, "executortype": "k8s",
                                    "dependencies": [], "nodes": 1, "cpu": "100m", "processes": 0,
                                    "processespernode": 1, "mem": "64Mi", "storage": "0Mi",
                                    "gpu": {"name": "", "mem": "0Mi", "count": 0, "nodecount": 0}, "walltime": 60},
                     "label": "", "fs": {"mount": "", "snapshots": None, "dirs": None}, "env": {}},
            "waitforparents": False, "parents": [], "children": [], "processgraphid": "", "in": [],
            "out": out, "errors": []}


@pytest.mark.parametrize("message", [
    '{"answer": 42}', '[1, "two", {"three": 3}, [4], null, true]', "true", "null", "3.25", "-7", '"text"', "plain",
])
def test_pycolonies_reads_every_output_back_as_it_was_sent(message):
    import model as pycolonies_model  # pycolonies' top-level module

    sent = list(diagnosis.termination_output([succeeded(message)]).values)
    read = pycolonies_model.Process(**recorded_process(sent)).output
    assert read == sent and [type(v) for v in read] == [type(v) for v in sent]


@pytest.mark.parametrize("message", [
    "1e999", "-1E400", '{"loss": 1e999}', "[1, 2, 1e999]", "1" + "0" * 400, '[{"x": -Infinity}]', "NaN",
])
def test_a_message_holding_a_non_finite_number_is_output_as_text(message):
    assert diagnosis.termination_output([succeeded(message)]).values == (message,)


KUBE_LIMIT = 4096  # bytes the kubelet keeps of one container's termination message (its last 4096)


def cut_json(size: int, keep: str) -> str:
    """A JSON document cut to `size` bytes, keeping its head or its tail."""
    whole = json.dumps({"rows": [{"id": i, "name": f"row {i}"} for i in range(size // 8)]})
    return whole[:size] if keep == "head" else whole[-size:]


def test_a_termination_message_cut_at_the_kubernetes_limit_stays_text_and_gets_a_note_saying_so():
    tail = cut_json(KUBE_LIMIT, "tail")
    output = diagnosis.termination_output([succeeded(tail)])
    assert output.values == (tail.strip(),)
    assert output.notes == (
        f"[colonies-operator: the termination message of container main reached Kubernetes' limit of "
        f"{KUBE_LIMIT} bytes, so Kubernetes probably cut it, and it is not valid JSON: the output holds it as text]",)


def test_with_many_containers_the_limit_is_their_share_of_12_kib_and_each_cut_message_gets_a_note():
    head = cut_json(12 * 1024 // 4, "head")  # four containers share 12 KiB: 3072 bytes each
    output = diagnosis.termination_output([succeeded(head, '{"ok": true}', head, "short text")])
    assert output.values == (head, '{"ok": true}', head, "short text")
    assert [note.split(" reached")[0] for note in output.notes] == [
        "[colonies-operator: the termination message of container main-0",
        "[colonies-operator: the termination message of container main-2"]
    assert all("limit of 3072 bytes" in note for note in output.notes)


@pytest.mark.parametrize("message", [
    "{not json", "x" * (KUBE_LIMIT - 1), json.dumps({"blob": "y" * (KUBE_LIMIT - 12)}),
])
def test_a_short_or_valid_message_gets_no_note(message):
    assert len(message.encode()) < KUBE_LIMIT or json.loads(message)
    assert diagnosis.termination_output([succeeded(message)]).notes == ()


# --- CFS: the pull init container and the push sidecar -----------------------------------------------

def with_cfs(body: dict, pull=terminated(0, "Completed"), push=RUNNING) -> dict:
    """`body` as a pod of a Job with fs: the pull init container and the push sidecar first."""
    body["spec"]["initContainers"] = [{"name": "cfs-pull", "image": "colonies-operator:1"},
                                      {"name": "cfs-push", "image": "colonies-operator:1", "restartPolicy": "Always"}]
    body["status"]["initContainerStatuses"] = [{"name": n, "state": s} for n, s in (("cfs-push", push), ("cfs-pull", pull))]
    return body


PULL_FAILED = "cfs pull: pull /in: 1 of 2 files not synced: /in/data.csv: S3 GET 7f3a: NoSuchKey (gone)"
PUSH_FAILED = "cfs push: push /out: 1 of 1 files not synced: /out/result.bin: S3 PUT 9c1e: ConnectError (refused)"
WAITING_MAIN = ("main", waiting("PodInitializing", ""))


def test_a_failed_pull_fails_the_process_naming_the_label_and_file_and_the_program_never_ran():
    pods = [with_cfs(pod("Failed", (WAITING_MAIN,)), pull=terminated(1, message=PULL_FAILED))]
    assert diagnosis.job_outcome(job(*BACKOFF_LIMIT), pods, now=CREATED) is Outcome.FAILED
    found = diagnosis.diagnose(job(*BACKOFF_LIMIT), pods, now=CREATED, pending_grace_seconds=300)
    assert found.summary == "CFSPullFailed(pull /in: 1 of 2 files not synced: /in/data.csv: S3 GET 7f3a: NoSuchKey (gone))"
    assert "the program did not run" in found.detail


def test_a_program_that_succeeded_whose_push_failed_is_not_a_success():
    pods = [with_cfs(pod("Succeeded", (("main", terminated(0, "Completed")),)),
                     push=terminated(1, message=PUSH_FAILED))]
    complete = job(cond("SuccessCriteriaMet"), cond("Complete"))
    assert diagnosis.job_outcome(complete, pods, now=CREATED) is Outcome.FAILED
    found = diagnosis.diagnose(complete, pods, now=CREATED, pending_grace_seconds=300)
    assert found.reason is Reason.CFS_PUSH_FAILED and "/out/result.bin" in found.summary
    assert "not reported as successful" in found.detail


def test_a_program_that_failed_is_reported_by_its_exit_code_even_when_the_push_failed_too():
    pods = [with_cfs(pod("Failed", (("main", terminated(3)),)), push=terminated(1, message=PUSH_FAILED))]
    found = diagnosis.diagnose(job(*BACKOFF_LIMIT), pods, now=CREATED, pending_grace_seconds=300)
    assert found.summary == "ExitCode(3)"


def test_a_push_that_succeeded_leaves_a_success_and_its_message_is_not_output():
    pods = [with_cfs(pod("Succeeded", (("main", terminated(0, "Completed", message="42")),)),
                     push=terminated(0, "Completed", message="pushed 3 files"))]
    assert diagnosis.job_outcome(job(cond("Complete")), pods, now=CREATED) is Outcome.SUCCEEDED
    assert diagnosis.termination_output(pods).values == (42,)


def test_a_cfs_step_whose_image_cannot_be_pulled_is_diagnosed_like_the_programs():
    pods = [with_cfs(pod("Pending", (WAITING_MAIN,)), pull=waiting("ErrImagePull", NOT_FOUND))]
    found = diagnosis.diagnose(job(), pods, now=CREATED, pending_grace_seconds=300)
    assert found.reason is Reason.IMAGE_PULL_FAILED and "container cfs-pull" in found.detail


def test_an_output_file_over_the_bound_fails_a_program_that_succeeded_with_the_sidecars_words():
    body = pod("Succeeded", (("main", terminated(0, "Completed")),))
    body["spec"]["initContainers"] = [{"name": "colonies-output", "image": "colonies-operator:1", "restartPolicy": "Always"}]
    message = ("output: /colonies/out.json is 2097152 bytes, over this executor's limit of 1048576 bytes "
               "(spec.output.maxBytes): write less, or put the data in CFS and return a reference")
    body["status"]["initContainerStatuses"] = [{"name": "colonies-output", "state": terminated(1, message=message)}]
    complete = job(cond("Complete"))
    assert diagnosis.job_outcome(complete, [body], now=CREATED) is Outcome.FAILED
    found = diagnosis.diagnose(complete, [body], now=CREATED, pending_grace_seconds=300)
    assert found.reason is Reason.OUTPUT_FAILED
    assert found.summary.startswith("OutputFailed(/colonies/out.json is 2097152 bytes, over this executor's limit")


def test_an_unschedulable_grace_of_its_own_outlasts_the_pending_grace_for_unschedulable_pods_only():
    """capacity.elastic: a pod waiting for the node an autoscaler adds is given longer."""
    waiting_for_node = [pod("Pending", (), unschedulable(NO_GPU))]
    later = CREATED + timedelta(seconds=GRACE + 100)
    assert diagnosis.diagnose(job(), waiting_for_node, now=later, pending_grace_seconds=GRACE,
                              unschedulable_grace_seconds=GRACE + 200) is None
    assert diagnosis.diagnose(job(), waiting_for_node, now=later + timedelta(seconds=200), pending_grace_seconds=GRACE,
                              unschedulable_grace_seconds=GRACE + 200).reason is Reason.UNSCHEDULABLE


def test_the_grace_for_a_container_that_cannot_start_begins_when_the_pod_got_its_node():
    """A pod that waited long for a node (capacity.elastic) still gets the whole grace for its image."""
    late = [cond("Initialized"), cond("Ready", "False", "ContainersNotReady"), cond("PodScheduled", at=GRACE + 50)]
    pods = [pod("Pending", (("main", waiting("ImagePullBackOff", TIMEOUT)),), late)]
    assert diagnosis.diagnose(job(), pods, now=CREATED + timedelta(seconds=GRACE + 100), pending_grace_seconds=GRACE) is None
    found = diagnosis.diagnose(job(), pods, now=CREATED + timedelta(seconds=2 * GRACE + 51), pending_grace_seconds=GRACE)
    assert found.reason is Reason.IMAGE_PULL_FAILED


def indexed(completions, deadline=None) -> dict:
    body = job(deadline=deadline)
    body["spec"] |= {"completions": completions, "parallelism": completions, "completionMode": "Indexed"}
    return body


# The Job controller marks a Job Complete in a sync it batches a second after its pods' last
# update: the pods say it a second sooner, and the process's room is handed on that much sooner.
@pytest.mark.parametrize("job_, pods, seconds, outcome", [
    (job(), [succeeded("42")], 10, Outcome.SUCCEEDED),
    (job(deadline=3600), [succeeded("42")], 10, Outcome.SUCCEEDED),
    (indexed(2), [succeeded("b", index=1, suffix="b"), succeeded("a", index=0, suffix="a")], 10, Outcome.SUCCEEDED),
    # not yet: a node still runs, or the same index succeeded twice
    (indexed(2), [pod("Running", index=1, suffix="b"), succeeded("a", index=0, suffix="a")], 10, Outcome.RUNNING),
    (indexed(2), [succeeded("a", index=0, suffix="a"), succeeded("a", index=0, suffix="c")], 10, Outcome.RUNNING),
    # near the deadline the controller may sync after it and fail the Job: its conditions decide
    (job(deadline=60), [succeeded("42")], 45, Outcome.RUNNING),
    (job(deadline=60), [succeeded("42")], 10, Outcome.SUCCEEDED),
    # a Job suspended again (Kueue) or one with no start time yet: wait for the controller
    (dict(job(deadline=3600), spec=job()["spec"] | {"suspend": True}), [succeeded("42")], 10, Outcome.RUNNING),
    (dict(job(deadline=3600), status={}), [succeeded("42")], 10, Outcome.RUNNING),
    # a push that failed after the program succeeded is a failure either way
    (job(), [with_cfs(succeeded("42"), push=terminated(1, message=PUSH_FAILED))], 10, Outcome.FAILED),
])
def test_pods_that_all_succeeded_end_the_job_before_its_conditions_say_so(job_, pods, seconds, outcome):
    assert diagnosis.job_outcome(job_, pods, now=CREATED + timedelta(seconds=seconds)) is outcome
