"""jobTemplate.podTemplate: a full PodTemplateSpec merged under what the operator owns."""

import dataclasses

import pytest

from colonies_operator.jobs import builder, io
from colonies_operator.jobs.builder import JobSettings
from colonies_operator.jobs.podtemplate import TemplateError
from tests.unit.test_builder import CONTAINER_SECURITY, LABELS, SETTINGS, run_of

DATASET = {"name": "dataset", "persistentVolumeClaim": {"claimName": "imagenet", "readOnly": True}}
SHM = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}
PROXY = {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}
TEMPLATE = {
    "metadata": {"labels": {"team": "vision", "colonyos.io/process": "mine"},
                 "annotations": {"cost-center": "42"}},
    "spec": {
        "volumes": [DATASET, SHM],
        "containers": [{"name": "main", "volumeMounts": [{"name": "dataset", "mountPath": "/data", "readOnly": True},
                                                        {"name": "shm", "mountPath": "/dev/shm"}],
                        "env": [{"name": "NCCL_DEBUG", "value": "INFO"}, {"name": "COLONIES_PROCESS_ID", "value": "x"}],
                        "workingDir": "/program", "securityContext": {"readOnlyRootFilesystem": True}}],
        "initContainers": [PROXY],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "nodeSelector": {"pool": "batch", "zone": "a"},
        "runtimeClassName": "gvisor",
        "hostAliases": [{"ip": "10.0.0.5", "hostnames": ["registry.local"]}],
        "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
        "securityContext": {"fsGroup": 2000, "seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}},
    },
}


def with_template(template=TEMPLATE, **overlay) -> JobSettings:
    return JobSettings(namespace="colonies", executor_name="kube", executor_id="e" * 64, colony_name="dev",
                       job_template={"podTemplate": template, **overlay})


def pod_of(settings: JobSettings, **run) -> dict:
    return builder.build_job(run_of(**run), settings)["spec"]["template"]


def test_the_template_brings_volumes_mounts_sidecars_and_scheduling_and_the_funcspec_keeps_the_program():
    template = pod_of(with_template())
    pod = template["spec"]
    main, = pod["containers"]
    assert (main["image"], main["command"]) == ("ubuntu:20.04", ["/bin/sh", "-c", "echo hello world"])
    assert main["volumeMounts"] == TEMPLATE["spec"]["containers"][0]["volumeMounts"]
    assert main["workingDir"] == "/program"
    # our COLONIES_PROCESS_ID wins over the template's variable of the same name
    assert main["env"][0] == {"name": "NCCL_DEBUG", "value": "INFO"}
    assert [e["value"] for e in main["env"] if e["name"] == "COLONIES_PROCESS_ID"] == ["0123456789abcdef" * 4]
    assert main["securityContext"] == {**CONTAINER_SECURITY, "readOnlyRootFilesystem": True}
    assert pod["volumes"] == [DATASET, SHM]
    assert pod["initContainers"] == [{**PROXY, "securityContext": CONTAINER_SECURITY}]
    for key in ("affinity", "tolerations", "nodeSelector", "runtimeClassName", "hostAliases", "dnsConfig"):
        assert pod[key] == TEMPLATE["spec"][key], key
    assert pod["restartPolicy"] == "Never"
    # a Localhost seccomp profile is as strict as the floor's RuntimeDefault: it stays
    assert pod["securityContext"] == TEMPLATE["spec"]["securityContext"]
    assert template["metadata"]["labels"] == {**LABELS, "team": "vision"}
    assert template["metadata"]["annotations"]["cost-center"] == "42"


def test_each_container_of_a_multi_process_pod_gets_the_main_template():
    pod = pod_of(with_template(), conditions={"processespernode": 2})["spec"]
    assert [c["name"] for c in pod["containers"]] == ["main-0", "main-1"]
    assert all(c["volumeMounts"] == TEMPLATE["spec"]["containers"][0]["volumeMounts"] for c in pod["containers"])


def test_the_classic_keys_still_apply_on_top_of_the_template():
    pod = pod_of(with_template(nodeSelector={"zone": "b"}, tolerations=[{"key": "spot", "operator": "Exists"}],
                               serviceAccountName="runner"))["spec"]
    assert pod["nodeSelector"] == {"pool": "batch", "zone": "b"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}, {"key": "spot", "operator": "Exists"}]
    assert pod["serviceAccountName"] == "runner"


def test_a_template_service_account_gets_its_token_and_without_one_there_is_none():
    assert "automountServiceAccountToken" not in pod_of(with_template({"spec": {"serviceAccountName": "s"}}))["spec"]
    assert pod_of(with_template({"spec": {}}))["spec"]["automountServiceAccountToken"] is False


def test_a_template_mount_where_the_process_needs_its_own_fails_that_process():
    settings = with_template({"spec": {"volumes": [SHM], "containers": [
        {"name": "main", "volumeMounts": [{"name": "shm", "mountPath": "/colonies"}]}]}})
    settings = dataclasses.replace(settings, output=io.OutputSettings(image="helper", max_bytes=1024))
    with pytest.raises(ValueError, match="mounts volume 'shm' at /colonies"):
        builder.build_job(run_of(), settings)


@pytest.mark.parametrize("spec, path, words", [
    ({"hostNetwork": True}, "spec.hostNetwork", "security floor"),
    ({"restartPolicy": "OnFailure"}, "spec.restartPolicy", "Colonies owns retries"),
    ({"nodeName": "n1"}, "spec.nodeName", "bypasses the scheduler"),
    ({"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}, "spec.volumes[0].hostPath", "PersistentVolumeClaim"),
    ({"volumes": [{"name": "cfs", "emptyDir": {}}]}, "spec.volumes[0].name", "the operator's containers use"),
    ({"containers": [{"name": "main", "image": "evil"}]}, "spec.containers[0].image", "set from the funcspec"),
    ({"containers": [{"name": "helper", "image": "x"}]}, "spec.containers[0].name", "native sidecars"),
    ({"containers": [{"name": "main", "securityContext": {"privileged": True}}]},
     "spec.containers[0].securityContext.privileged", "security floor"),
    ({"initContainers": [{"name": "p", "image": "x", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}]},
     "spec.initContainers[0].securityContext.capabilities.add", "drops all capabilities"),
    ({"initContainers": [{"name": "main-x", "image": "x"}]}, "spec.initContainers[0].name", "operator's containers"),
    ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "spec.securityContext.seccompProfile.type",
     "RuntimeDefault"),
    ({"tolerations": {"key": "x"}}, "spec.tolerations", "must be a list"),
])
def test_a_template_below_the_floor_or_taking_what_the_operator_owns_is_refused_by_path(spec, path, words):
    with pytest.raises(TemplateError, match=words) as info:
        with_template({"spec": spec})
    assert info.value.field == f"jobTemplate.podTemplate.{path}"


def test_restricted_allows_only_its_volume_types_and_no_root():
    def settings(spec):
        return JobSettings(namespace="n", executor_name="kube", executor_id="e", colony_name="dev",
                           security_profile=builder.RESTRICTED, job_template={"podTemplate": {"spec": spec}})
    settings({"volumes": [DATASET, SHM, {"name": "s", "secret": {"secretName": "x"}}]})
    with pytest.raises(TemplateError, match="nfs volumes are not allowed by securityProfile restricted"):
        settings({"volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]})
    with pytest.raises(TemplateError) as info:
        settings({"containers": [{"name": "main", "securityContext": {"runAsUser": 0}}]})
    assert info.value.field == "jobTemplate.podTemplate.spec.containers[0].securityContext.runAsUser"


def test_the_template_adds_its_sidecars_requests_to_what_the_job_takes():
    sidecar = {**PROXY, "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}
    job = builder.build_job(run_of(conditions={"cpu": "500m", "mem": "1Gi"}),
                            with_template({"spec": {"initContainers": [sidecar]}}))
    assert builder.job_request_totals(job) == (600, (1024 + 64) * 2**20, 0)


def test_without_a_template_the_job_is_unchanged():
    assert builder.build_job(run_of(), with_template({})) == builder.build_job(run_of(), SETTINGS)
