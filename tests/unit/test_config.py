"""A ColonyExecutor spec becomes an ExecutorConfig, or a ConfigError naming the field."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from colonies_operator import config as cfg
from colonies_operator.jobs import spec as spec_module
from colonies_operator.jobs.resources import Resources

SETTINGS = cfg.OperatorSettings(server_host="colonies.example", server_port=443, server_tls=True, colony_name="dev")
MINIMAL = {"colonyKeySecretRef": {"name": "colony-key"}}
CRD = Path(__file__).resolve().parents[2] / "crds" / "colonyexecutor.yaml"


def test_a_minimal_spec_takes_the_operator_defaults():
    config = cfg.executor_config("jobs", "k8s", MINIMAL, SETTINGS)
    assert (config.server.host, config.server.port, config.server.tls) == ("colonies.example", 443, True)
    assert config.colony_name == "dev" and config.executor_name == "jobs-k8s"
    assert config.executor_type == "container-executor"
    assert config.colony_key == cfg.SecretRef("colony-key", "colonyPrvKey") and config.executor_key is None
    assert config.budget == Resources(4000, 8 * 2**30, 0, 100)
    assert config.generated_key_secret == "k8s-executor-key"


def test_the_spec_overrides_defaults_and_sets_limits_and_the_job_template():
    config = cfg.executor_config("jobs", "k8s", {
        **MINIMAL, "server": {"host": "c", "port": 50080, "tls": False}, "colonyName": "prod",
        "executorName": "gpu-pool", "capacity": {"cpu": "16", "memory": "64Gi", "gpu": 4, "maxConcurrentJobs": 8},
        "limits": {"cpu": "2", "memory": "4Gi", "gpu": 1}, "allowedImages": ["ghcr.io/acme/"],
        "gpu": {"resourceName": "amd.com/gpu", "nodeLabel": "gpu.model"},
        "jobTemplate": {"tolerations": [{"key": "gpu", "operator": "Exists"}], "runAsNonRoot": True,
                        "ttlSecondsAfterFinished": 60},
        "paused": True}, SETTINGS)
    assert config.budget == Resources(16000, 64 * 2**30, 4, 8)
    assert (config.policy.max_cpu_millis, config.policy.max_memory_bytes, config.policy.max_gpus) == (2000, 4 * 2**30, 1)
    assert config.policy.allowed_images == ("ghcr.io/acme/",)
    assert config.job_template == {"tolerations": [{"key": "gpu", "operator": "Exists"}],
                                   "securityContext": {"runAsNonRoot": True}}
    assert config.ttl_seconds_after_finished == 60 and config.paused
    settings = config.job_settings("id")
    assert (settings.gpu_resource_name, settings.gpu_node_label) == ("amd.com/gpu", "gpu.model")


@pytest.mark.parametrize("spec, field", [
    ({}, "colonyKeySecretRef"),
    ({**MINIMAL, "capacity": {"cpu": "lots"}}, "capacity.cpu"),
    ({**MINIMAL, "capacity": {"memory": "1GB"}}, "capacity.memory"),
    ({**MINIMAL, "limits": {"cpu": "x"}}, "limits.cpu"),
    ({"colonyKeySecretRef": {"key": "k"}}, "colonyKeySecretRef"),
])
def test_an_unusable_spec_is_a_config_error_naming_the_field(spec, field):
    with pytest.raises(cfg.ConfigError) as info:
        cfg.executor_config("jobs", "k8s", spec, SETTINGS)
    assert info.value.field == field and f"spec.{field}" in str(info.value)


def test_no_server_anywhere_is_a_config_error():
    with pytest.raises(cfg.ConfigError, match="server.host"):
        cfg.executor_config("jobs", "k8s", MINIMAL, cfg.OperatorSettings(colony_name="dev"))


def test_operator_settings_come_from_the_colonyos_environment_variables():
    settings = cfg.OperatorSettings.from_env({
        "COLONIES_SERVER_HOST": "h", "COLONIES_SERVER_PORT": "8080", "COLONIES_TLS": "true",
        "COLONIES_COLONY_NAME": "c", "COLONIES_OPERATOR_NAMESPACES": "a,b"})
    assert (settings.server_host, settings.server_port, settings.server_tls, settings.colony_name) == ("h", 8080, True, "c")
    assert settings.namespaces == ("a", "b")


def test_the_default_executor_name_is_unique_per_resource():
    names = {cfg.executor_config(ns, "k8s", MINIMAL, SETTINGS, uid).executor_name
             for ns, uid in [("a", "1f0e2d3c-0000-4000-8000-000000000001"), ("b", "1f0e2d3c-0000-4000-8000-000000000001"),
                             ("a", "9a8b7c6d-0000-4000-8000-000000000002")]}
    assert names == {"a-k8s-1f0e2d3c", "b-k8s-1f0e2d3c", "a-k8s-9a8b7c6d"}


@pytest.mark.parametrize("field,value", [("heartbeatSeconds", 0), ("heartbeatSeconds", 600),
                                         ("assignTimeoutSeconds", 900), ("heartbeatSeconds", "often")])
def test_assign_timing_outside_what_keeps_the_executor_registered_is_refused(field, value):
    with pytest.raises(cfg.ConfigError, match=field):
        cfg.executor_config("jobs", "k8s", {**MINIMAL, field: value}, SETTINGS)


def test_the_restricted_profile_and_the_user_and_group_reach_the_job_settings():
    config = cfg.executor_config("jobs", "k8s", {**MINIMAL, "jobTemplate": {
        "securityProfile": "restricted", "runAsUser": 1000, "runAsGroup": 3000}}, SETTINGS)
    settings = config.job_settings("id")
    assert settings.security_profile == "restricted"
    assert settings.job_template == {"securityContext": {"runAsUser": 1000, "runAsGroup": 3000}}


def test_a_restricted_profile_running_as_root_is_a_config_error_naming_the_job_template():
    with pytest.raises(cfg.ConfigError, match="spec.jobTemplate.runAsUser: 0 runs as root") as info:
        cfg.executor_config("jobs", "k8s", {**MINIMAL, "jobTemplate": {"securityProfile": "restricted",
                                                                        "runAsUser": 0}}, SETTINGS)
    assert info.value.field == "jobTemplate.runAsUser"


def test_a_ca_secret_is_read_from_the_spec_with_ca_crt_as_its_default_key():
    config = cfg.executor_config("jobs", "k8s", {**MINIMAL, "server": {"tls": True, "caSecretRef": {"name": "ca"}}},
                                 SETTINGS)
    assert config.ca_secret == cfg.SecretRef("ca", "ca.crt")


def test_a_ca_secret_without_tls_is_refused_naming_the_field():
    with pytest.raises(cfg.ConfigError, match=r"spec.server.caSecretRef: .*server.tls: true"):
        cfg.executor_config("jobs", "k8s", {**MINIMAL, "server": {"tls": False, "caSecretRef": {"name": "ca"}}},
                            SETTINGS)


# --- secrets.allowed: the Secrets funcspecs of this executor may name -----------------------------

def test_allowed_secrets_reach_the_spec_policy_in_order_and_none_means_none():
    config = cfg.executor_config("jobs", "k8s", {**MINIMAL, "secrets": {"allowed": ["db", "api.example.com"]}},
                                 SETTINGS)
    assert config.policy.allowed_secrets == ("db", "api.example.com")
    for spec in (MINIMAL, {**MINIMAL, "secrets": {}}, {**MINIMAL, "secrets": {"allowed": []}},
                 {**MINIMAL, "secrets": None}):
        assert cfg.executor_config("jobs", "k8s", spec, SETTINGS).policy.allowed_secrets == ()


@pytest.mark.parametrize("allowed, field, words", [
    (["db", "DB"], "secrets.allowed[1]", "'DB' is not a valid Secret name"),
    (["db-", "db"], "secrets.allowed[0]", "'db-' is not a valid Secret name"),
    (["db", "ok", "a_b"], "secrets.allowed[2]", "DNS-1123 subdomain"),
    ([""], "secrets.allowed[0]", "'' is not a valid Secret name"),
    (["a" * 254], "secrets.allowed[0]", "at most 253 characters"),
    ([7], "secrets.allowed[0]", "7 is not a valid Secret name"),
    ("db", "secrets.allowed", "must be a list of Secret names"),
])
def test_an_allowed_secret_that_is_not_a_secret_name_is_a_config_error_naming_its_index(allowed, field, words):
    with pytest.raises(cfg.ConfigError) as info:
        cfg.executor_config("jobs", "k8s", {**MINIMAL, "secrets": {"allowed": allowed}}, SETTINGS)
    assert info.value.field == field and f"spec.{field}: " in str(info.value) and words in str(info.value)


def test_secrets_that_is_not_an_object_is_a_config_error():
    with pytest.raises(cfg.ConfigError) as info:
        cfg.executor_config("jobs", "k8s", {**MINIMAL, "secrets": ["db"]}, SETTINGS)
    assert info.value.field == "secrets"


@pytest.mark.parametrize("spec, name, what", [
    (MINIMAL, "colony-key", "colonyKeySecretRef"),
    ({**MINIMAL, "executorKeySecretRef": {"name": "exec-key"}}, "exec-key", "executorKeySecretRef"),
    (MINIMAL, "k8s-executor-key", "k8s-executor-key"),
    ({**MINIMAL, "storage": {"endpoint": "s3:8333", "bucket": "cfs", "credentialsSecretRef": {"name": "s3-keys"}}},
     "s3-keys", "storage.credentialsSecretRef"),
])
def test_the_secrets_holding_the_executors_own_keys_cannot_be_allowed(spec, name, what):
    # every colony member who may submit to the executor could read them
    with pytest.raises(cfg.ConfigError) as info:
        cfg.executor_config("jobs", "k8s", {**spec, "secrets": {"allowed": ["db", name]}}, SETTINGS)
    assert info.value.field == "secrets.allowed[1]" and what in str(info.value)


@pytest.mark.parametrize("name", ["db", "a", "a.b-c", "0", "db-", "-db", "DB", "a_b", "a..b", ".a", "a" * 253, ""])
def test_the_crds_pattern_for_allowed_secrets_agrees_with_the_operators_own_check(name):
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]
    items = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["secrets"]["properties"][
        "allowed"]["items"]
    by_crd = bool(re.search(items["pattern"], name)) and len(name) <= items["maxLength"]
    assert by_crd is spec_module.is_secret_name(name)


STORAGE = {"endpoint": "s3.storage:8333", "bucket": "cfs", "credentialsSecretRef": {"name": "s3-keys"}}
WITH_KEY = {**MINIMAL, "executorKeySecretRef": {"name": "exec-key"}}


def test_storage_becomes_the_jobs_cfs_settings_with_the_operators_image_and_the_executor_key():
    settings = cfg.OperatorSettings(server_host="colonies.colonies", colony_name="dev", image="op:1")
    config = cfg.executor_config("jobs", "k8s", {**WITH_KEY, "storage": STORAGE,
                                                 "server": {"jobHost": "10.0.0.1", "jobPort": 8080}}, settings)
    s = config.storage
    assert (s.image, s.endpoint, s.bucket, s.keys_secret, s.access_key_field, s.secret_key_field) == (
        "op:1", "s3.storage:8333", "cfs", "s3-keys", "accessKey", "secretKey")
    assert s.executor_key_secret == ("exec-key", "executorPrvKey")
    assert (s.server_host, s.server_port, s.colony_name, s.push_seconds, s.volume_size) == (
        "10.0.0.1", 8080, "dev", 600, "10Gi")
    assert config.policy.storage and config.job_settings("e" * 64).storage == s


@pytest.mark.parametrize("spec, settings, field", [
    ({**MINIMAL, "storage": STORAGE}, cfg.OperatorSettings(image="op:1"), "executorKeySecretRef"),
    ({**WITH_KEY, "storage": STORAGE}, cfg.OperatorSettings(), "helperImage"),
    ({**WITH_KEY, "storage": {**STORAGE, "credentialsSecretRef": {}}}, cfg.OperatorSettings(image="op:1"),
     "storage.credentialsSecretRef"),
    ({**WITH_KEY, "storage": {**STORAGE, "volumeSize": "lots"}}, cfg.OperatorSettings(image="op:1"), "storage.volumeSize"),
    ({**WITH_KEY, "storage": {**STORAGE, "pushSeconds": 1}}, cfg.OperatorSettings(image="op:1"), "storage.pushSeconds"),
])
def test_storage_that_cannot_work_is_a_config_error_naming_the_field(spec, settings, field):
    settings = dataclasses.replace(settings, server_host="colonies.colonies", colony_name="dev")
    with pytest.raises(cfg.ConfigError) as info:
        cfg.executor_config("jobs", "k8s", spec, settings)
    assert info.value.field == field


def test_an_executor_without_storage_refuses_fs():
    assert cfg.executor_config("jobs", "k8s", MINIMAL, SETTINGS).policy.storage is False


def test_elastic_and_the_waiting_poll_are_off_or_at_their_defaults_unless_set():
    plain = cfg.executor_config("jobs", "k8s", MINIMAL, SETTINGS)
    assert (plain.elastic, plain.elastic_pending_seconds, plain.waiting_poll_seconds) == (0, 1800, 10)
    config = cfg.executor_config("jobs", "k8s", {**MINIMAL, "capacity": {"elastic": 3, "elasticPendingSeconds": 900},
                                                 "waitingPollSeconds": 0}, SETTINGS)
    assert (config.elastic, config.elastic_pending_seconds, config.waiting_poll_seconds) == (3, 900, 0)


@pytest.mark.parametrize("spec, field, words", [
    ({"capacity": {"elastic": -1}}, "capacity.elastic", "between 0 and"),
    ({"capacity": {"elastic": "2"}}, "capacity.elastic", "whole number"),
    ({"capacity": {"elastic": 1.5}}, "capacity.elastic", "whole number"),
    ({"capacity": {"elasticPendingSeconds": 0}}, "capacity.elasticPendingSeconds", "between 1 and"),
    ({"waitingPollSeconds": 1}, "waitingPollSeconds", "0 (off) or at least 2"),
    ({"waitingPollSeconds": "often"}, "waitingPollSeconds", "number of seconds"),
])
def test_a_bad_elastic_or_waiting_poll_setting_names_its_field(spec, field, words):
    with pytest.raises(cfg.ConfigError) as info:
        cfg.executor_config("jobs", "k8s", {**MINIMAL, **spec}, SETTINGS)
    assert info.value.field == field and words in str(info.value)


def test_the_crd_refuses_what_the_config_refuses_for_elastic_and_the_waiting_poll():
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    elastic = spec["capacity"]["properties"]["elastic"]
    assert (elastic["type"], elastic["minimum"], elastic["maximum"], elastic["default"]) == ("integer", 0, 10_000, 0)
    pending = spec["capacity"]["properties"]["elasticPendingSeconds"]
    assert (pending["minimum"], pending["maximum"], pending["default"]) == (1, 7 * 86400, 1800)
    poll = spec["waitingPollSeconds"]
    assert (poll["minimum"], poll["maximum"], poll["default"]) == (0, 3600, 10)
    assert [rule["rule"] for rule in poll["x-kubernetes-validations"]] == ["self == 0 || self >= 2"]
