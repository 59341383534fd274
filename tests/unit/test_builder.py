"""RunSpec → Job dict: compared against whole expected dicts, so every field is deliberate."""

import copy
import json
import re

import pytest

from colonies_operator.colonies.models import Process
from colonies_operator.jobs import builder, spec
from colonies_operator.jobs.builder import JobSettings

PID = "0123456789abcdef" * 4
SHORT = "0123456789abcdef0123"
MI = 1024**2
SETTINGS = JobSettings(namespace="colonies", executor_name="kube", executor_id="e" * 64, colony_name="dev")
LABELS = {
    "app.kubernetes.io/managed-by": "colonies-operator",
    "colonyos.io/executor": "kube",
    "colonyos.io/colony": "dev",
    "colonyos.io/process": SHORT,
    "colonyos.io/attempt": "0",
}
ANNOTATIONS = {"colonyos.io/process-id": PID, "colonyos.io/executor-id": "e" * 64, "colonyos.io/executor-name": "kube"}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def run_of(kwargs=None, conditions=None, retries=0, policy=spec.SpecPolicy(), **spec_fields) -> spec.RunSpec:
    raw = {"funcname": "execute",
           "kwargs": kwargs or {"docker-image": "ubuntu:20.04", "cmd": "echo", "args": ["hello", "world"]},
           "conditions": conditions or {}, "maxexectime": -1, **spec_fields}
    process = Process.from_json({"processid": PID, "state": 1, "retries": retries, "spec": raw})
    return spec.parse_process(process, policy)


def test_hello_world_becomes_this_job():
    assert builder.build_job(run_of(), SETTINGS) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"colony-{SHORT}-0", "namespace": "colonies",
                     "labels": LABELS, "annotations": ANNOTATIONS},
        "spec": {
            "backoffLimit": 0,
            "parallelism": 1,
            "completions": 1,
            "template": {
                "metadata": {"labels": LABELS, "annotations": ANNOTATIONS},
                "spec": {
                    "restartPolicy": "Never",
                    "enableServiceLinks": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "automountServiceAccountToken": False,
                    "containers": [{
                        "name": "main",
                        "image": "ubuntu:20.04",
                        "command": ["/bin/sh", "-c", "echo hello world"],
                        "env": [{"name": "COLONIES_PROCESS_ID", "value": PID}],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "securityContext": CONTAINER_SECURITY,
                    }],
                },
            },
        },
    }


def test_cpu_memory_and_a_named_gpu_become_equal_requests_and_limits_and_a_node_selector():
    settings = JobSettings(namespace="colonies", executor_name="kube", executor_id="e" * 64, colony_name="dev",
                           gpu_resource_name="amd.com/gpu", gpu_node_label="gpu.example.com/model")
    job = builder.build_job(run_of(conditions={"cpu": "500m", "mem": "1Gi", "gpu": {"count": 1, "name": "a100"}}),
                            settings)
    pod = job["spec"]["template"]["spec"]
    amounts = {"cpu": "500m", "memory": "1024Mi", "amd.com/gpu": "1"}
    assert pod["containers"][0]["resources"] == {"requests": amounts, "limits": amounts}
    assert pod["nodeSelector"] == {"gpu.example.com/model": "a100"}


def test_the_gpu_resource_defaults_to_nvidia_and_an_unnamed_gpu_selects_no_node():
    pod = builder.build_job(run_of(conditions={"gpu": {"count": 2}}), SETTINGS)["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}
    assert "nodeSelector" not in pod


def test_several_nodes_and_processes_make_an_indexed_job_with_numbered_containers():
    job = builder.build_job(run_of(conditions={"nodes": 2, "processespernode": 2, "cpu": "250m"}), SETTINGS)
    assert {k: job["spec"][k] for k in ("completionMode", "parallelism", "completions")} == {
        "completionMode": "Indexed", "parallelism": 2, "completions": 2}
    containers = job["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main-0", "main-1"]
    assert all(c["command"] == ["/bin/sh", "-c", "echo hello world"] for c in containers)
    assert all(c["resources"]["limits"] == {"cpu": "250m"} for c in containers)


def test_init_cmd_process_id_and_env_reach_the_container():
    run = run_of(kwargs={"docker-image": "python:3.12", "init-cmd": "mkdir -p /out/{processid}",
                         "cmd": "python3", "args": ["/src/{processid}/main.py"]},
                 env={"MODE": "fast", "LEVEL": "3"})
    container = builder.build_job(run, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c", f"mkdir -p /out/{PID}; python3 /src/{PID}/main.py"]
    assert container["env"] == [{"name": "COLONIES_PROCESS_ID", "value": PID},
                                {"name": "MODE", "value": "fast"}, {"name": "LEVEL", "value": "3"}]


def test_named_secrets_become_secret_key_refs_after_the_plain_env_in_every_container_of_every_pod():
    run = run_of(kwargs={"docker-image": "busybox", "cmd": "env",
                         "secrets": [{"name": "db", "key": "password", "env": "DB_PASSWORD"},
                                     {"name": "api", "key": "token", "env": "API_TOKEN"}]},
                 conditions={"nodes": 2, "processespernode": 3}, env={"MODE": "fast"},
                 policy=spec.SpecPolicy(allowed_secrets=("db", "api")))
    containers = builder.build_job(run, SETTINGS)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 3
    for container in containers:
        assert container["env"] == [
            {"name": "COLONIES_PROCESS_ID", "value": PID}, {"name": "MODE", "value": "fast"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
        ]
    # each container has its own list: a change to one cannot leak into another
    assert len({id(c["env"][2]) for c in containers}) == 3


def test_the_shell_free_form_sets_command_and_args():
    run = run_of(kwargs={"docker-image": "busybox", "command": ["echo"], "args": ["{processid}"]})
    container = builder.build_job(run, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert (container["command"], container["args"]) == (["echo"], [PID])


def test_every_dollar_is_doubled_so_the_kubelet_passes_command_and_args_on_as_written():
    # the kubelet expands $(VAR) in command and args and turns $$ into $: doubled, nothing changes
    shell = run_of(kwargs={"docker-image": "busybox", "cmd": "echo $(COLONIES_PROCESS_ID) $HOME; kill -9 $$"})
    free = run_of(kwargs={"docker-image": "busybox", "command": ["printf", "$(id)"], "args": ["$$", "a$"]})
    [sh] = builder.build_job(shell, SETTINGS)["spec"]["template"]["spec"]["containers"]
    [direct] = builder.build_job(free, SETTINGS)["spec"]["template"]["spec"]["containers"]
    assert sh["command"] == ["/bin/sh", "-c", "echo $$(COLONIES_PROCESS_ID) $$HOME; kill -9 $$$$"]
    assert (direct["command"], direct["args"]) == (["printf", "$$(id)"], ["$$$$", "a$$"])


@pytest.mark.parametrize("conditions, maxexectime, deadline", [
    ({"walltime": 600}, 100, 600), ({}, 100, 100), ({}, -1, None),
])
def test_the_walltime_becomes_the_active_deadline(conditions, maxexectime, deadline):
    job = builder.build_job(run_of(conditions=conditions, maxexectime=maxexectime), SETTINGS)
    assert job["spec"].get("activeDeadlineSeconds") == deadline


def test_a_job_is_created_without_a_ttl_so_it_cannot_vanish_before_it_is_reported():
    for ttl in (None, 0, 300):
        settings = JobSettings(namespace="n", executor_name="kube", executor_id="e", colony_name="dev",
                               ttl_seconds_after_finished=ttl)
        assert "ttlSecondsAfterFinished" not in builder.build_job(run_of(), settings)["spec"]


def test_the_job_template_overlay_is_merged_and_cannot_replace_our_labels():
    overlay = {
        "nodeSelector": {"pool": "batch", "accelerator": "v100"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "labels": {"team": "ml", "colonyos.io/process": "fake", "app.kubernetes.io/managed-by": "me"},
        "annotations": {"owner": "ml-team", "colonyos.io/process-id": "fake"},
        "serviceAccountName": "runner",
        "imagePullSecrets": ["regcred", {"name": "other"}],
        "priorityClassName": "batch-low",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "containerSecurityContext": {"readOnlyRootFilesystem": True, "capabilities": {"add": ["NET_BIND_SERVICE"]}},
    }
    settings = JobSettings(namespace="colonies", executor_name="kube", executor_id="e" * 64, colony_name="dev",
                           job_template=overlay)
    before = copy.deepcopy(overlay)
    job = builder.build_job(run_of(conditions={"gpu": {"count": 1, "name": "a100"}}), settings)
    template = job["spec"]["template"]
    pod = template["spec"]
    assert job["metadata"]["labels"] == template["metadata"]["labels"] == {"team": "ml", **LABELS}
    assert job["metadata"]["annotations"] == {"owner": "ml-team", **ANNOTATIONS}
    assert pod["nodeSelector"] == {"pool": "batch", "accelerator": "a100"}  # the process's GPU wins
    assert pod["tolerations"] == overlay["tolerations"]
    assert pod["serviceAccountName"] == "runner" and "automountServiceAccountToken" not in pod
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    assert pod["priorityClassName"] == "batch-low"
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True,
                                      "runAsUser": 1000}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "readOnlyRootFilesystem": True}
    pod["tolerations"].append({"key": "x"})
    pod["containers"][0]["securityContext"]["capabilities"]["add"].append("SYS_ADMIN")
    assert overlay == before  # the job shares no mutable data with the settings


def restricted(**job_template) -> JobSettings:
    return JobSettings(namespace="colonies", executor_name="kube", executor_id="e" * 64, colony_name="dev",
                       security_profile="restricted", job_template=job_template)


def test_the_restricted_profile_runs_as_nobody_with_every_restricted_pod_security_setting():
    pod = builder.build_job(run_of(), restricted())["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True,
                                      "runAsUser": 65534, "runAsGroup": 65534}
    assert pod["containers"][0]["securityContext"] == CONTAINER_SECURITY


def test_the_restricted_profile_keeps_a_given_user_and_group():
    pod = builder.build_job(run_of(), restricted(securityContext={"runAsUser": 1000, "runAsGroup": 3000}))
    assert pod["spec"]["template"]["spec"]["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 3000}


@pytest.mark.parametrize("profile, security, words", [
    ("restricted", {"runAsUser": 0}, "jobTemplate.runAsUser: 0 runs as root"),
    ("restricted", {"runAsNonRoot": False}, "jobTemplate.runAsNonRoot: false contradicts"),
    ("baseline", {}, "jobTemplate.securityProfile: 'baseline' is not supported (supported: restricted)"),
])
def test_a_security_profile_that_cannot_hold_is_refused(profile, security, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        JobSettings(namespace="n", executor_name="kube", executor_id="e", colony_name="dev",
                    security_profile=profile, job_template={"securityContext": security})


@pytest.mark.parametrize("overlay, words", [
    ({"nodeSelectors": {}}, "jobTemplate.nodeSelectors: is not supported"),
    ({"tolerations": {"key": "x"}}, "jobTemplate.tolerations: must be a list"),
    ({"serviceAccountName": 5}, "jobTemplate.serviceAccountName: must be a str"),
])
def test_a_job_template_with_unknown_keys_or_wrong_types_is_refused(overlay, words):
    with pytest.raises(ValueError, match=words):
        JobSettings(namespace="n", executor_name="kube", executor_id="e", colony_name="dev", job_template=overlay)


def test_names_are_deterministic_per_process_and_attempt():
    assert builder.job_name(PID, 0) == f"colony-{SHORT}-0"
    assert builder.build_job(run_of(), SETTINGS) == builder.build_job(run_of(), SETTINGS)
    second = builder.build_job(run_of(retries=1), SETTINGS)
    assert second["metadata"]["name"] == f"colony-{SHORT}-1"
    assert second["metadata"]["labels"]["colonyos.io/attempt"] == "1"


@pytest.mark.parametrize("process_id, attempt", [("p1", 0), ("X" * 64, 0), (PID, -1)])
def test_a_name_needs_a_hex_process_id_and_a_non_negative_attempt(process_id, attempt):
    with pytest.raises(ValueError):
        builder.job_name(process_id, attempt)


@pytest.mark.parametrize("text, value", [
    ("kube", "kube"), ("dev-colony_1.a", "dev-colony_1.a"),
    ("my executor", "my-executor-e5e89b88a9"), ("é", "4a99557e40"), ("x" * 64, "x" * 52 + "-7ce100971f"),
])
def test_names_that_are_not_label_values_are_cleaned_and_hashed(text, value):
    assert builder.label_value(text) == value and len(value) <= 63


def test_the_executor_selector_matches_the_labels_of_its_jobs():
    assert builder.executor_selector(SETTINGS) == "app.kubernetes.io/managed-by=colonies-operator,colonyos.io/executor=kube"


@pytest.mark.parametrize("conditions, totals", [
    ({}, (0, 0, 0)),
    ({"cpu": "500m", "mem": "1Gi"}, (500, 1024 * MI, 0)),
    ({"cpu": "500m", "mem": "1Gi", "gpu": {"count": 1}, "nodes": 2, "processespernode": 3},
     (3000, 6 * 1024 * MI, 6)),
])
def test_request_totals_count_every_container_of_every_parallel_pod(conditions, totals):
    assert builder.job_request_totals(builder.build_job(run_of(conditions=conditions), SETTINGS)) == totals


def test_request_totals_follow_kubernetes_rules_for_limits_and_init_containers():
    job = {"spec": {"parallelism": 2, "template": {"spec": {
        "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}],
        "containers": [{"resources": {"limits": {"cpu": "500m", "memory": "256Mi", "example.com/gpu": 1}}},
                       {"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1", "memory": "128Mi"}}}],
    }}}}
    assert builder.job_request_totals(job, gpu_resource_name="example.com/gpu") == (4000, 768 * MI, 2)


# --- CFS: a volume, the pull init container and the push sidecar -----------------------------------

STORAGE = builder.storage.StorageSettings(
    image="colonies-operator:1", endpoint="s3.storage:8333", bucket="cfs", keys_secret="s3-keys",
    executor_key_secret=("executor-key", "executorPrvKey"), server_host="colonies.colonies", server_port=50080,
    colony_name="dev", volume_size="2Gi", push_seconds=900)
FS = {"mount": "/cfs", "dirs": [{"label": "/out/{processid}", "dir": "/out",
                                 "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}}}]}


def cfs_job(**settings) -> dict:
    raw = {"funcname": "execute", "kwargs": {"docker-image": "ubuntu:20.04", "cmd": "ls /cfs/out"},
           "conditions": {"cpu": "500m", "mem": "1Gi"}, "maxexectime": -1, "fs": FS}
    process = Process.from_json({"processid": PID, "state": 1, "retries": 2, "spec": raw})
    run = spec.parse_process(process, spec.SpecPolicy(storage=True))
    return builder.build_job(run, JobSettings(**{**vars(SETTINGS), "storage": STORAGE, **settings}))


def test_a_job_with_fs_pulls_before_the_program_and_pushes_from_a_sidecar_after_it():
    pod = cfs_job()["spec"]["template"]["spec"]
    pull, push = pod["initContainers"]
    assert [pull["name"], pull["command"], pull.get("restartPolicy")] == [
        "cfs-pull", ["colonies-operator", "cfs", "pull"], None]
    assert [push["name"], push["command"], push["restartPolicy"]] == [
        "cfs-push", ["colonies-operator", "cfs", "push"], "Always"]
    assert pod["volumes"] == [{"name": "cfs", "emptyDir": {"sizeLimit": "2Gi"}},
                              {"name": "cfs-push-run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "cfs", "mountPath": "/cfs"}]
    assert pull["volumeMounts"] == [{"name": "cfs", "mountPath": "/cfs-volume"}]
    assert push["volumeMounts"] == [{"name": "cfs", "mountPath": "/cfs-volume"},
                                    {"name": "cfs-push-run", "mountPath": "/run/cfs"}]
    # the program starts only once the sidecar can hear it end (a SIGTERM before would be lost)
    assert push["lifecycle"]["postStart"]["exec"]["command"][-1] == "while [ ! -e /run/cfs/ready ]; do sleep 0.05; done"
    assert {"name": "COLONIES_CFS_READY", "value": "/run/cfs/ready"} in push["env"]
    assert pod["terminationGracePeriodSeconds"] == 900, "the push's time after the program ends"
    env = {e["name"]: e.get("value") for e in pull["env"]}
    assert json.loads(env["COLONIES_CFS"]) == {"mount": "/cfs", "snapshots": [], "dirs": [
        {"label": f"/out/{PID}", "dir": "/out", "onconflicts": {"onstart": {"keeplocal": False},
                                                              "onclose": {"keeplocal": True}}}]}
    assert (env["COLONIES_PROCESS_ID"], env["COLONIES_ATTEMPT"], env["AWS_S3_ENDPOINT"]) == (PID, "2", "s3.storage:8333")
    assert pull["securityContext"] == {**CONTAINER_SECURITY, "readOnlyRootFilesystem": True}


def test_a_job_whose_fs_has_only_snapshots_needs_no_push():
    raw = {"funcname": "execute", "kwargs": {"docker-image": "ubuntu:20.04", "cmd": "ls /cfs/src"},
           "maxexectime": -1, "fs": {"mount": "/cfs", "snapshots": [{"snapshotid": "s1", "label": "/src", "dir": "/src"}]}}
    process = Process.from_json({"processid": PID, "state": 1, "spec": raw})
    job = builder.build_job(spec.parse_process(process, spec.SpecPolicy(storage=True)),
                            JobSettings(**{**vars(SETTINGS), "storage": STORAGE}))
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["cfs-pull"]
    assert [v["name"] for v in pod["volumes"]] == ["cfs"]
    assert "terminationGracePeriodSeconds" not in pod, "nothing to push: the cluster's default grace"


def test_the_keys_reach_only_the_cfs_containers_and_only_from_secrets():
    pod = cfs_job()["spec"]["template"]["spec"]
    secret_refs = {c["name"]: {(e["name"], e["valueFrom"]["secretKeyRef"]["name"]) for e in c["env"] if "valueFrom" in e}
                   for c in pod["initContainers"] + pod["containers"]}
    keys = {("COLONIES_PRVKEY", "executor-key"), ("AWS_S3_ACCESSKEY", "s3-keys"), ("AWS_S3_SECRETKEY", "s3-keys")}
    assert secret_refs == {"cfs-pull": keys, "cfs-push": keys, "main": set()}
    assert "shareProcessNamespace" not in pod, "the program must not see the sidecar's environment in /proc"


def test_a_cfs_job_counts_its_sidecar_beside_the_program():
    cpu, memory, _ = builder.job_request_totals(cfs_job())
    assert (cpu, memory) == (500 + 100, 1024 * MI + 256 * MI)


def test_request_totals_count_sidecars_started_before_an_init_container():
    pod_spec = {"containers": [{"resources": {"requests": {"cpu": "100m"}}}],
                "initContainers": [{"restartPolicy": "Always", "resources": {"requests": {"cpu": "300m"}}},
                                   {"resources": {"requests": {"cpu": "500m"}}}]}
    job = {"spec": {"parallelism": 2, "template": {"spec": pod_spec}}}
    assert builder.job_request_totals(job)[0] == 2 * 800
