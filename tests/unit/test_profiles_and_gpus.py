"""Profiles (spec.profiles, picked by kwargs.profile) and GPU fidelity (conditions.gpu.*)."""

import pytest

from colonies_operator import config as cfg
from colonies_operator.jobs import builder, spec
from colonies_operator.jobs.resources import Resources
from tests.unit.test_builder import run_of
from tests.unit.test_config import MINIMAL, SETTINGS

GPU_PROFILE = {"nodeSelector": {"pool": "gpu"}, "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
               "limits": {"gpu": 8}}
SPEC = {**MINIMAL, "jobTemplate": {"nodeSelector": {"pool": "cpu"}, "labels": {"team": "ml"}},
        "limits": {"gpu": 0}, "profiles": {"gpu": GPU_PROFILE, "big": {"limits": {"memory": "64Gi"}}}}


def executor(spec_=SPEC, **gpu):
    return cfg.executor_config("jobs", "k8s", {**spec_, "gpu": gpu} if gpu else spec_, SETTINGS)


def job_for(config, kwargs_extra=None, conditions=None) -> dict:
    kwargs = {"docker-image": "ubuntu:20.04", "cmd": "nvidia-smi", **(kwargs_extra or {})}
    run = run_of(kwargs=kwargs, conditions=conditions, policy=config.policy)
    return builder.build_job(run, config.job_settings("e" * 64))


def test_a_funcspec_picks_a_profile_and_gets_its_template_and_limits():
    config = executor()
    job = job_for(config, {"profile": "gpu"}, {"gpu": {"count": 2}})
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "gpu"}
    assert pod["tolerations"] == GPU_PROFILE["tolerations"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    # keys the profile leaves out come from the jobTemplate; the profile is on the Job
    assert job["metadata"]["labels"]["team"] == "ml"
    assert job["metadata"]["labels"]["colonyos.io/profile"] == "gpu"


def test_without_a_profile_the_plain_job_template_and_limits_apply():
    config = executor()
    assert job_for(config)["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}
    assert "colonyos.io/profile" not in job_for(config)["metadata"]["labels"]
    with pytest.raises(spec.SpecError) as info:
        job_for(config, conditions={"gpu": {"count": 1}})
    assert info.value.field == "conditions.gpu.count"


def test_an_unknown_profile_is_refused_naming_the_field_and_the_profiles_offered():
    with pytest.raises(spec.SpecError) as info:
        job_for(executor(), {"profile": "tpu"})
    assert info.value.field == "kwargs.profile"
    assert "'tpu' is not a profile of this executor (its profiles: big, gpu)" in str(info.value)


def test_a_profile_keeps_the_executor_limits_it_does_not_override():
    config = executor()
    assert config.policy.profiles["big"].max_memory_bytes == 64 * 2**30
    assert config.policy.profiles["big"].max_gpus == 0
    assert config.policy.profiles["gpu"].max_gpus == 8


@pytest.mark.parametrize("profiles, field", [
    ({"Bad name!": {}}, "profiles.Bad name!"),
    ({"gpu": {"nodeSelectors": {}}}, "profiles.gpu.nodeSelectors"),
    ({"gpu": {"ttlSecondsAfterFinished": 5}}, "profiles.gpu.ttlSecondsAfterFinished"),
    ({"gpu": {"podTemplate": {"spec": {"hostPID": True}}}}, "profiles.gpu.podTemplate.spec.hostPID"),
    ({"gpu": {"limits": {"cpu": "lots"}}}, "profiles.gpu.limits.cpu"),
    ({"gpu": {"capacity": {"memory": "lots"}}}, "profiles.gpu.capacity.memory"),
    ({"gpu": {"capacity": 4}}, "profiles.gpu.capacity"),
    ({"gpu": []}, "profiles.gpu"),
])
def test_a_bad_profile_is_a_config_error_naming_its_field(profiles, field):
    with pytest.raises(cfg.ConfigError) as info:
        executor({**MINIMAL, "profiles": profiles})
    assert info.value.field == field


def test_a_gpu_product_name_maps_to_the_node_label_value_and_memory_becomes_a_node_affinity():
    config = executor(MINIMAL, nodeLabel="nvidia.com/gpu.product", products={"a100": "NVIDIA-A100-SXM4-80GB"})
    pod = job_for(config, conditions={"gpu": {"count": 1, "name": "a100", "mem": "40960Mi"}})["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["affinity"] == {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40959"]}]}]}}}
    # a name not in the map is used as the label value, as before
    other = job_for(config, conditions={"gpu": {"count": 1, "name": "Tesla-T4"}})["spec"]["template"]["spec"]
    assert other["nodeSelector"] == {"nvidia.com/gpu.product": "Tesla-T4"} and "affinity" not in other


def test_gpu_memory_joins_every_way_the_template_allows_to_schedule():
    template = {"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                              {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}]}]}}}}}
    config = executor({**MINIMAL, "jobTemplate": {"podTemplate": template}}, memoryLabel="amd.com/gpu.vram")
    pod = job_for(config, conditions={"gpu": {"count": 1, "mem": "16Gi"}})["spec"]["template"]["spec"]
    memory = {"key": "amd.com/gpu.vram", "operator": "Gt", "values": ["16383"]}
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}, memory]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n9"]}], "matchExpressions": [memory]}]


def test_an_amd_executor_requests_and_accounts_amd_gpus():
    config = executor(MINIMAL, resourceName="amd.com/gpu")
    job = job_for(config, conditions={"gpu": {"count": 2}, "nodes": 2, "cpu": "1"})
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "1000m", "amd.com/gpu": "2"} == resources["requests"]
    assert builder.job_request_totals(job, config.gpu_resource_name) == (2000, 0, 4)


def test_a_bad_gpu_product_value_is_a_config_error():
    with pytest.raises(cfg.ConfigError) as info:
        executor(MINIMAL, products={"a100": "NVIDIA A100 80GB"})
    assert info.value.field == "gpu.products.a100"


def test_a_profile_capacity_is_a_pool_inside_the_executor_budget_with_the_rest_from_it():
    config = executor({**MINIMAL, "capacity": {"cpu": "16", "memory": "64Gi", "gpu": 8, "maxConcurrentJobs": 50},
                       "profiles": {"gpu": {"capacity": {"gpu": 2, "maxConcurrentJobs": 3}}, "cpu": {}}})
    assert config.profile_budgets == {"gpu": Resources(16000, 64 * 2**30, 2, 3)}


async def test_a_template_the_apiserver_calls_invalid_is_refused_naming_it_and_other_refusals_are_not():
    from colonies_operator.runtime import templates
    from colonies_operator.runtime.kube import KubeError

    class Kube:
        def __init__(self, error):
            self.error, self.dry_runs = error, []

        async def create_job(self, namespace, job, *, dry_run=False):
            self.dry_runs.append((job["metadata"]["labels"].get("colonyos.io/profile", ""), dry_run))
            raise self.error

    config = executor({**MINIMAL, "jobTemplate": {"podTemplate": {"spec": {}}},
                       "profiles": {"gpu": {}, "plain": {"podTemplate": {}}}})
    invalid = Kube(KubeError(422, "Invalid", 'Job.batch "x" is invalid: spec.template.spec.volumes[0]: Required'))
    assert await templates.refusal(invalid, config) == (
        'spec.jobTemplate.podTemplate: the apiserver refuses the Jobs it makes: Job.batch "x" is invalid: '
        "spec.template.spec.volumes[0]: Required")
    quota = Kube(KubeError(403, "Forbidden", "exceeded quota"))
    assert await templates.refusal(quota, config) is None
    # every template is tried, each as a dry run; a profile inherits the podTemplate of jobTemplate
    assert quota.dry_runs == [("", True), ("gpu", True), ("plain", True)]
    assert await templates.refusal(invalid, executor(MINIMAL)) is None  # no template: nothing to ask
