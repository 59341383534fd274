"""Funcspec → RunSpec: the kube executor's funcspecs run unchanged, and every bad input is
refused with a SpecError that names the field."""

import copy
import random

import pytest
from colonies_operator.cfs.mounts import Filesystem, SnapshotMount, SyncDir

from colonies_operator.colonies.models import FunctionSpec, Process, ProcessState
from colonies_operator.jobs import builder, spec
from colonies_operator.jobs.spec import RunSpec, SecretEnv, SpecError, SpecPolicy

PID = "0123456789abcdef" * 4
MI = 1024**2
DELETE = object()
HELLO = {
    "funcname": "execute",
    "kwargs": {"docker-image": "ubuntu:20.04", "cmd": "echo", "args": ["hello", "world"]},
    "conditions": {"executortype": "container-executor", "nodes": 1, "processespernode": 1,
                   "mem": "1024Mi", "cpu": "500m", "walltime": 200, "gpu": {"count": 0}},
    "env": {}, "maxwaittime": -1, "maxexectime": 100, "maxretries": 3,
}


def funcspec(**changes) -> dict:
    """HELLO with dotted paths (`kwargs__args` for kwargs.args) set, or removed with DELETE."""
    raw = copy.deepcopy(HELLO)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = raw
        for key in parents:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):  # an earlier change replaced the parent
                break
        else:
            if value is DELETE:
                target.pop(leaf, None)
            else:
                target[leaf] = value
    return raw


def process(raw: dict, retries: int = 0) -> Process:
    """A process as the client builds it from the server's JSON."""
    return Process.from_json({"processid": PID, "state": 1, "retries": retries, "spec": raw})


def unparsed(raw) -> Process:
    """A process whose spec the tolerant model could not even read (only `raw` is kept)."""
    return Process(processid=PID, state=ProcessState.RUNNING, spec=FunctionSpec(raw=raw))


def parse(raw: dict, **policy) -> RunSpec:
    return spec.parse_process(process(raw), SpecPolicy(**policy))


def test_the_kube_executor_hello_world_becomes_a_shell_command():
    assert parse(HELLO) == RunSpec(
        process_id=PID, attempt=0, image="ubuntu:20.04",
        command=("/bin/sh", "-c", "echo hello world"), args=(),
        env=(("COLONIES_PROCESS_ID", PID),),
        cpu_millis=500, memory_bytes=1024 * MI, gpu_count=0, gpu_name="",
        nodes=1, processes_per_node=1, deadline_seconds=200,
    )


@pytest.mark.parametrize("kwargs, command", [
    ({"cmd": "echo", "args": ["a", "b"], "init-cmd": "cd /tmp"}, "cd /tmp; echo a b"),
    ({"cmd": "echo", "args": [], "init-cmd": "apt-get update;  "}, "apt-get update; echo"),
    ({"cmd": "ls -l | wc -l"}, "ls -l | wc -l"),
    ({"cmd": "echo", "args": ["$HOME", "*.txt", "a b"]}, "echo $HOME *.txt a b"),  # shell semantics kept
    ({"cmd": "python3", "args": ["/cfs/src/{processid}/main.py", "--id={processid}"],
      "init-cmd": "mkdir -p /out/{processid}"},
     f"mkdir -p /out/{PID}; python3 /cfs/src/{PID}/main.py --id={PID}"),
    ({"cmd": "", "args": ["echo", "hi"]}, " echo hi"),
    ({"cmd": "echo", "args": None, "init-cmd": None}, "echo"),
])
def test_cmd_args_and_init_cmd_join_like_the_kube_executor(kwargs, command):
    run = parse(funcspec(kwargs={"docker-image": "busybox", **kwargs}))
    assert run.command == ("/bin/sh", "-c", command) and run.args == ()


def test_the_shell_free_form_passes_command_and_args_unchanged():
    run = parse(funcspec(kwargs={"docker-image": "busybox", "command": ["printf", "%s\\n"],
                                 "args": ["a b", "{processid}", "$HOME"]}))
    assert run.command == ("printf", "%s\\n") and run.args == ("a b", PID, "$HOME")


def test_env_starts_with_the_process_id_and_keeps_the_users_order():
    run = parse(funcspec(env={"B": "2", "A": "1", "my.var-x": ""}))
    assert run.env == (("COLONIES_PROCESS_ID", PID), ("B", "2"), ("A", "1"), ("my.var-x", ""))


def test_the_attempt_is_the_processes_retry_count():
    assert spec.parse_process(process(HELLO, retries=2), SpecPolicy()).attempt == 2


@pytest.mark.parametrize("conditions, expected", [
    ({"cpu": "0m", "mem": "0Mi"}, (None, None)),  # what the server stores when the user gave none
    ({"cpu": "", "mem": ""}, (None, None)),
    ({}, (None, None)),
    ({"cpu": "2", "mem": "1Gi"}, (2000, 1024 * MI)),  # raw values, as a test or another path gives them
    ({"cpu": "1.5", "mem": "1G"}, (1500, 10**9)),
])
def test_cpu_and_memory_are_parsed_and_zero_means_unset(conditions, expected):
    run = parse(funcspec(conditions=conditions))
    assert (run.cpu_millis, run.memory_bytes) == expected


def test_unset_cpu_and_memory_take_the_policy_defaults():
    run = parse(funcspec(conditions={"cpu": "0m", "mem": "0Mi"}), default_cpu_millis=250, default_memory_bytes=64 * MI)
    assert (run.cpu_millis, run.memory_bytes) == (250, 64 * MI)


@pytest.mark.parametrize("conditions, expected", [
    ({"nodes": 0, "processespernode": 0}, (1, 1)),
    ({}, (1, 1)),
    ({"nodes": 3, "processespernode": 2}, (3, 2)),
])
def test_nodes_and_processes_per_node_default_to_one(conditions, expected):
    run = parse(funcspec(conditions=conditions))
    assert (run.nodes, run.processes_per_node) == expected


@pytest.mark.parametrize("walltime, maxexectime, deadline", [
    (200, 100, 200), (0, 100, 100), (-1, 60, 60), (0, -1, None), (0, 0, None), (DELETE, DELETE, None),
])
def test_the_deadline_is_the_walltime_else_the_maxexectime(walltime, maxexectime, deadline):
    assert parse(funcspec(conditions__walltime=walltime, maxexectime=maxexectime)).deadline_seconds == deadline


def test_a_gpu_request_keeps_its_count_and_name():
    run = parse(funcspec(conditions__gpu={"count": 1, "name": "nvidia-gtx-2080ti", "mem": "0Mi"}))
    assert (run.gpu_count, run.gpu_name) == (1, "nvidia-gtx-2080ti")


def secret(name="db", key="password", env="DB_PASSWORD", **changes) -> dict:
    """One kwargs.secrets entry; a change to DELETE leaves that member out."""
    entry = {"name": name, "key": key, "env": env, **changes}
    return {k: v for k, v in entry.items() if v is not DELETE}


def with_secrets(*entries, **changes) -> dict:
    return funcspec(kwargs__secrets=list(entries), **changes)


def test_named_secrets_become_env_entries_in_order_and_nothing_else_changes():
    run = parse(with_secrets(secret(), secret("api", "token.v2", "API_TOKEN")), allowed_secrets=("api", "db"))
    assert run.secrets == (SecretEnv(env="DB_PASSWORD", secret="db", key="password"),
                           SecretEnv(env="API_TOKEN", secret="api", key="token.v2"))
    assert run.env == (("COLONIES_PROCESS_ID", PID),)


@pytest.mark.parametrize("secrets", [DELETE, None, []])
def test_no_secrets_named_means_none(secrets):
    assert parse(funcspec(kwargs__secrets=secrets)).secrets == ()


@pytest.mark.parametrize("name", ["db", "colony-key", "default-token-abcde"])
def test_an_executor_without_allowed_secrets_refuses_every_named_secret(name):
    with pytest.raises(SpecError) as err:
        parse(with_secrets(secret(name)))
    assert err.value.field == "kwargs.secrets[0].name"
    assert f"kwargs.secrets[0].name {name!r} is not allowed: this executor allows no Secrets" in str(err.value)


@pytest.mark.parametrize("key", ["password", "tls.crt", ".dotfile", "a_b-C.9", "k" * 253])
def test_secret_keys_valid_in_kubernetes_are_accepted(key):
    assert parse(with_secrets(secret(key=key)), allowed_secrets=("db",)).secrets[0].key == key


def refusal(raw: dict) -> tuple[str, str] | None:
    """(field, message) of the SpecError `raw` gets, or None when it parses."""
    try:
        parse(raw)
    except SpecError as err:
        return err.field, str(err)
    return None


# What a v1.9.12 server echoes for a funcspec that sets no fs (and no gpu.mem).
SERVER_ECHO_FS = {"mount": "", "snapshots": None, "dirs": None}
SNAPSHOT = {"snapshotid": "", "label": "/data", "dir": "/data", "keepfiles": False, "keepsnapshot": False}
SYNC_DIR = {"label": "/src", "dir": "/src", "keepfiles": False,
            "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": False}}}


def test_a_funcspec_asking_for_cfs_on_an_executor_without_storage_is_refused_naming_fs_and_the_empty_fs_is_not():
    outcomes = {
        "no fs": refusal(funcspec(fs=DELETE)),
        "null": refusal(funcspec(fs=None)),
        "{}": refusal(funcspec(fs={})),
        "the server's echo": refusal(funcspec(fs=SERVER_ECHO_FS)),
        "empty lists": refusal(funcspec(fs={"mount": "", "snapshots": [], "dirs": []})),
        "a mount": refusal(funcspec(fs={**SERVER_ECHO_FS, "mount": "/cfs"})),
        "a snapshot": refusal(funcspec(fs={**SERVER_ECHO_FS, "snapshots": [SNAPSHOT]})),
        "a sync dir": refusal(funcspec(fs={**SERVER_ECHO_FS, "mount": "/cfs", "dirs": [SYNC_DIR]})),
    }
    refused = {case: found for case, found in outcomes.items() if found}
    assert list(refused) == ["a mount", "a snapshot", "a sync dir"], outcomes
    for field, message in refused.values():
        assert field == "fs"
        assert "this executor has no storage for CFS (its ColonyExecutor sets no spec.storage)" in message


def fs_refusal(fs: dict) -> tuple[str, str] | None:
    try:
        parse(funcspec(fs=fs), storage=True)
    except SpecError as err:
        return err.field, str(err)
    return None


def test_fs_on_an_executor_with_storage_becomes_mounts_with_the_process_id_substituted():
    fs = {"mount": "/cfs/", "snapshots": [{"snapshotid": "s1", "label": "/src/{processid}", "dir": "src/{processid}",
                                          "keepfiles": True, "keepsnapshot": True}],
          "dirs": [{"label": "results", "dir": "/out/./{processid}", "keepfiles": False,
                    "onconflicts": {"onstart": {"keeplocal": True}, "onclose": {"keeplocal": False}}},
                   {"label": "/logs", "dir": "/logs"}]}
    run = parse(funcspec(fs=fs), storage=True)
    assert run.fs == Filesystem("/cfs", (SnapshotMount("s1", f"/src/{PID}", f"/src/{PID}", True),),
                                (SyncDir("results", f"/out/{PID}", True, False), SyncDir("/logs", "/logs", False, False)))
    assert Filesystem.from_json(run.fs.to_json()) == run.fs


@pytest.mark.parametrize("fs, field, words", [
    ({"mount": "", "dirs": [SYNC_DIR]}, "fs.mount", "must be an absolute path"),
    ({"mount": "cfs", "dirs": [SYNC_DIR]}, "fs.mount", "must be an absolute path"),
    ({"mount": "/", "dirs": [SYNC_DIR]}, "fs.mount", "must be an absolute path"),
    ({"mount": "/etc/x", "dirs": [SYNC_DIR]}, "fs.mount", "would hide the image's /etc"),
    ({"mount": 7}, "fs.mount", "must be a string, got int"),
    ({"mount": "/cfs", "dirs": {"label": "/x"}}, "fs.dirs", "must be a list of objects"),
    ({"mount": "/cfs", "dirs": ["x"]}, "fs.dirs[0]", "must be an object"),
    ({"mount": "/cfs", "dirs": [{**SYNC_DIR, "dir": "../up"}]}, "fs.dirs[0].dir", "must not contain '..'"),
    ({"mount": "/cfs", "dirs": [{**SYNC_DIR, "label": "/"}]}, "fs.dirs[0].label", "is empty"),
    ({"mount": "/cfs", "dirs": [{**SYNC_DIR, "onconflicts": {"onstart": {"keeplocal": "yes"}}}]},
     "fs.dirs[0].onconflicts.onstart.keeplocal", "must be true or false"),
    ({"mount": "/cfs", "snapshots": [SNAPSHOT]}, "fs.snapshots[0].snapshotid", "expected a snapshot id"),
    ({"mount": "/cfs", "snapshots": [{**SNAPSHOT, "snapshotid": "{snapshotid}"}]}, "fs.snapshots[0].snapshotid",
     "colonies function submit --snapshot"),
    ({"mount": "/cfs", "snapshots": [{**SNAPSHOT, "snapshotid": "s", "keepsnapshot": 1}]},
     "fs.snapshots[0].keepsnapshot", "must be true or false"),
])
def test_a_bad_fs_is_refused_naming_the_field(fs, field, words):
    found = fs_refusal(fs)
    assert found is not None and found[0] == field, found
    assert words in found[1] and field in found[1]


def test_gpu_memory_is_read_in_mib_and_an_unset_one_asks_for_none():
    def memory(mem):
        return parse(funcspec(conditions__gpu={"count": 1, "name": "a100", "mem": mem})).gpu_memory_mib
    assert {mem: memory(mem) for mem in (None, "", "0Mi", "11Gi", "11264Mi", "40960Mi")} == {
        None: 0, "": 0, "0Mi": 0, "11Gi": 11264, "11264Mi": 11264, "40960Mi": 40960}
    assert refusal(funcspec(conditions__gpu={"count": 1, "mem": "lots"}))[0] == "conditions.gpu.mem"


def test_gpu_nodecount_must_be_every_node_of_the_process():
    assert refusal(funcspec(conditions__nodes=2, conditions__gpu={"count": 1, "nodecount": 2})) is None
    assert refusal(funcspec(conditions__gpu={"count": 1, "nodecount": 1})) is None
    field, message = refusal(funcspec(conditions__nodes=4, conditions__gpu={"count": 1, "nodecount": 2}))
    assert field == "conditions.gpu.nodecount"
    assert "differs from conditions.nodes 4" in message and "set conditions.nodes to 2" in message


def test_a_gpu_name_without_a_count_is_not_checked():
    assert parse(funcspec(conditions__gpu={"count": 0, "name": "any thing"})).gpu_count == 0


@pytest.mark.parametrize("image, patterns, allowed", [
    ("ubuntu:20.04", (), True),
    ("ubuntu:20.04", ("ubuntu:*",), True),
    ("ghcr.io/acme/tool:1", ("ghcr.io/acme/",), True),
    ("ghcr.io/acme/tool:1", ("ghcr.io/acme/*",), True),
    ("ghcr.io/acmeevil/tool:1", ("ghcr.io/acme/",), False),
    ("docker.io/library/busybox", ("ubuntu:*", "docker.io/library/*"), True),
    ("Ubuntu:20.04", ("ubuntu:*",), False),
    ("evil.io/ubuntu:20.04", ("ubuntu:*",), False),
])
def test_images_are_matched_against_the_allowed_patterns(image, patterns, allowed):
    assert spec.image_allowed(image, patterns) is allowed


DIGEST = "sha256:" + "0123456789abcdef" * 4


def with_image(image: str) -> dict:
    return funcspec(**{"kwargs__docker-image": image})


@pytest.mark.parametrize("image", [
    "busybox", "ubuntu:24.04", "library/ubuntu:Latest_1.2-rc", "ghcr.io/acme/tool:1", "localhost:5000/a/b:c",
    "registry.example.com:443/team/app", "Registry.Example.COM/app", "[::1]:5000/app:1", "a.b_c__d---e/f:v",
    f"ubuntu@{DIGEST}", f"ghcr.io/acme/tool:1@{DIGEST}", "localhost:5000", "x" * 255, "ubuntu:" + "t" * 128,
])
def test_image_references_valid_by_the_oci_grammar_are_accepted(image):
    assert parse(with_image(image)).image == image


NAME_RULE = "must be [registry[:port]/]path/to/repository"
TAG_RULE = "must be letters, digits, '_', '.' or '-', not starting with '.' or '-'"
DIGEST_RULE = "must be <algorithm>:<at least 32 hex digits>"


@pytest.mark.parametrize("image, problem", [
    ("Ubuntu:Latest", "uppercase letters in the repository name are not allowed: write 'ubuntu'"),
    ("ghcr.io/Acme/tool:1", "uppercase letters in the repository name are not allowed: write 'ghcr.io/acme/tool'"),
    ("ubuntu:", "the tag after ':' is empty"),
    ("ubuntu:.hidden", f"the tag '.hidden' {TAG_RULE}"),
    ("ubuntu:a+b", f"the tag 'a+b' {TAG_RULE}"),
    ("ubuntu:" + "t" * 129, "the tag is 129 characters long, at most 128"),
    ("ubuntu@sha256:abc", f"the digest 'sha256:abc' {DIGEST_RULE}"),
    ("ubuntu@", f"the digest '' {DIGEST_RULE}"),
    ("ubuntu@@" + DIGEST, f"the digest '@{DIGEST}' {DIGEST_RULE}"),
    ("-ubuntu", f"the repository name '-ubuntu' {NAME_RULE}"),
    ("ubuntu-", f"the repository name 'ubuntu-' {NAME_RULE}"),
    ("a//b", f"the repository name 'a//b' {NAME_RULE}"),
    ("ghcr.io/", f"the repository name 'ghcr.io/' {NAME_RULE}"),
    ("a..b", f"the repository name 'a..b' {NAME_RULE}"),
    ("a___b", f"the repository name 'a___b' {NAME_RULE}"),
    ("-host.io/app", f"the repository name '-host.io/app' {NAME_RULE}"),
    ("ubuntu:1:2", f"the repository name 'ubuntu:1' {NAME_RULE}"),
    ("x" * 256, "the repository name is 256 characters long, at most 255"),
])
def test_an_image_reference_the_oci_grammar_refuses_fails_before_a_job_exists_saying_what_is_wrong(image, problem):
    with pytest.raises(SpecError) as err:
        parse(with_image(image))
    assert err.value.field == "kwargs.docker-image"
    assert str(err.value).startswith(f"invalid funcspec: kwargs.docker-image {image!r} is not a valid image "
                                     f"reference: {problem}")


def test_a_very_long_bad_image_reference_is_cut_short_in_the_message():
    with pytest.raises(SpecError) as err:
        parse(with_image(f"ubuntu@sha256:{'x' * 100_000}"))
    assert len(str(err.value)) < 1000 and "the digest 'sha256:xxx" in str(err.value)


DB = {"allowed_secrets": ("db",)}
# (funcspec, policy, field, words the message must contain)
BAD = [
    (funcspec(kwargs={"cmd": "echo"}), {}, "kwargs.docker-image", "is missing"),
    (funcspec(kwargs={"docker-image": "", "cmd": "echo"}), {}, "kwargs.docker-image", "not an image reference"),
    (funcspec(kwargs={"docker-image": 42, "cmd": "echo"}), {}, "kwargs.docker-image", "must be a string, got int (42)"),
    (funcspec(kwargs={"docker-image": "ubuntu 20.04", "cmd": "echo"}), {}, "kwargs.docker-image", "not an image"),
    (funcspec(kwargs__args=["hello", 42]), {}, "kwargs.args[1]", "kwargs.args[1] must be a string, got int (42)"),
    (funcspec(kwargs__args="hello world"), {}, "kwargs.args", "must be a list of strings"),
    (funcspec(kwargs__cmd=DELETE), {}, "kwargs.cmd", "kwargs.cmd is missing"),
    (funcspec(kwargs__cmd=["echo"]), {}, "kwargs.cmd", "must be a string, got list"),
    (funcspec(kwargs__cmd="  ", kwargs__args=[]), {}, "kwargs.cmd", "is empty"),
    (funcspec(kwargs__command=["echo"]), {}, "kwargs.command", "mutually exclusive"),
    (funcspec(kwargs={"docker-image": "busybox", "command": []}), {}, "kwargs.command", "is empty"),
    (funcspec(kwargs={"docker-image": "busybox", "command": ["ls", 1]}), {}, "kwargs.command[1]", "must be a string"),
    (funcspec(kwargs={"docker-image": "busybox", "command": "ls"}), {}, "kwargs.command", "list of strings"),
    (funcspec(kwargs={"docker-image": "busybox", "command": ["ls"], "init-cmd": "cd /"}), {},
     "kwargs.init-cmd", "needs kwargs.cmd"),
    (funcspec(**{"kwargs": {"docker-image": "busybox", "cmd": "ls", "init-cmd": 5}}), {}, "kwargs.init-cmd", "string"),
    (funcspec(conditions__cpu="abc"), {}, "conditions.cpu", "expected millicores"),
    (funcspec(conditions__mem="1GB"), {}, "conditions.mem", "Kubernetes suffix"),
    (funcspec(conditions__mem="-1Mi"), {}, "conditions.mem", "invalid memory quantity"),
    (funcspec(funcname="foo"), {}, "funcname", "unsupported funcname 'foo': this executor runs only 'execute'"),
    (funcspec(funcname="sync"), {}, "funcname", "runs only 'execute'"),
    (funcspec(funcname=DELETE), {}, "funcname", "funcname is missing"),
    (HELLO, {"allowed_images": ("ghcr.io/acme/", "busybox:*")}, "kwargs.docker-image",
     "image 'ubuntu:20.04' is not allowed by this executor (allowed: ghcr.io/acme/, busybox:*)"),
    (funcspec(conditions__cpu="4"), {"max_cpu_millis": 2000}, "conditions.cpu",
     "4000m is over this executor's limit of 2000m"),
    (funcspec(conditions__mem="8Gi"), {"max_memory_bytes": 4096 * MI}, "conditions.mem", "limit of 4096Mi"),
    (funcspec(conditions__gpu={"count": 2}), {"max_gpus": 1}, "conditions.gpu.count", "limit of 1 GPUs"),
    (funcspec(conditions__gpu={"count": 1}), {"max_gpus": 0}, "conditions.gpu.count", "limit of 0"),
    (funcspec(conditions__gpu={"count": -1}), {}, "conditions.gpu.count", "must not be negative, got -1"),
    (funcspec(conditions__gpu={"count": 1, "name": "A100 80GB"}), {}, "conditions.gpu.name", "label value"),
    (funcspec(conditions__gpu={"count": 1, "name": 7}), {}, "conditions.gpu.name", "must be a string"),
    (funcspec(conditions__nodes=17), {}, "conditions.nodes", "17 is over this executor's limit of 16 nodes"),
    (funcspec(conditions__nodes=-1), {}, "conditions.nodes", "must not be negative"),
    (funcspec(conditions__processespernode=5), {"max_processes_per_node": 4}, "conditions.processespernode", "limit of 4"),
    (funcspec(conditions__walltime="200"), {}, "conditions.walltime", "must be an integer, got string ('200')"),
    (funcspec(kwargs="ubuntu echo"), {}, "kwargs", "kwargs must be an object"),
    (funcspec(kwargs=["ubuntu", "echo"]), {}, "kwargs", "kwargs must be an object"),
    (funcspec(kwargs=DELETE), {}, "kwargs", "kwargs is missing"),
    (funcspec(env=["A=1"]), {}, "env", "env must be an object"),
    (funcspec(env={"A": 1}), {}, "env.A", "env.A must be a string, got int (1)"),
    (funcspec(env={"1A": "x"}), {}, "env.1A", "not a valid environment variable name"),
    (funcspec(env={"A=B": "x"}), {}, "env.A=B", "not a valid environment variable name"),
    (funcspec(env={"COLONIES_PROCESS_ID": "x"}), {}, "env.COLONIES_PROCESS_ID", "cannot be overridden"),
    (funcspec(kwargs__secrets="db"), DB, "kwargs.secrets", "kwargs.secrets must be a list of {name, key, env} "
                                                           "objects, got string ('db')"),
    (funcspec(kwargs__secrets={"name": "db"}), DB, "kwargs.secrets", "must be a list"),
    (with_secrets(secret(), "db"), DB, "kwargs.secrets[1]", "kwargs.secrets[1] must be an object"),
    (with_secrets(None), DB, "kwargs.secrets[0]", "must be an object ({name, key, env}), got null"),
    (with_secrets(secret(name=DELETE)), DB, "kwargs.secrets[0].name", "kwargs.secrets[0].name is missing"),
    (with_secrets(secret(name=5)), DB, "kwargs.secrets[0].name", "must be a string, got int (5)"),
    (with_secrets(secret(name="other")), {"allowed_secrets": ("db", "api")}, "kwargs.secrets[0].name",
     "kwargs.secrets[0].name 'other' is not allowed by this executor (allowed: db, api)"),
    (with_secrets(secret()), {}, "kwargs.secrets[0].name", "this executor allows no Secrets"),
    (with_secrets(secret(key=DELETE)), DB, "kwargs.secrets[0].key", "kwargs.secrets[0].key is missing"),
    (with_secrets(secret(key=["password"])), DB, "kwargs.secrets[0].key", "must be a string, got list"),
    (with_secrets(secret(key="")), DB, "kwargs.secrets[0].key", "is not a valid Secret key"),
    (with_secrets(secret(key="a/b")), DB, "kwargs.secrets[0].key", "'a/b' is not a valid Secret key"),
    (with_secrets(secret(key="pass word")), DB, "kwargs.secrets[0].key", "is not a valid Secret key"),
    (with_secrets(secret(key="..")), DB, "kwargs.secrets[0].key", "must not be '..'"),
    (with_secrets(secret(key="..data")), DB, "kwargs.secrets[0].key", "must not start with '..'"),
    (with_secrets(secret(key=".")), DB, "kwargs.secrets[0].key", "must not be '.'"),
    (with_secrets(secret(key="k" * 254)), DB, "kwargs.secrets[0].key", "at most 253 characters"),
    (with_secrets(secret(env=DELETE)), DB, "kwargs.secrets[0].env", "kwargs.secrets[0].env is missing"),
    (with_secrets(secret(env=1)), DB, "kwargs.secrets[0].env", "must be a string, got int (1)"),
    (with_secrets(secret(env="1TOKEN")), DB, "kwargs.secrets[0].env", "not a valid environment variable name"),
    (with_secrets(secret(env="A=B")), DB, "kwargs.secrets[0].env", "not a valid environment variable name"),
    (with_secrets(secret(env="")), DB, "kwargs.secrets[0].env", "not a valid environment variable name"),
    (with_secrets(secret(env="COLONIES_PROCESS_ID")), DB, "kwargs.secrets[0].env", "set by the executor"),
    (with_secrets(secret(), secret(key="user", env="DB_PASSWORD")), DB, "kwargs.secrets[1].env",
     "kwargs.secrets[1].env 'DB_PASSWORD' is already set by kwargs.secrets[0]"),
    (with_secrets(secret(), env={"DB_PASSWORD": "x"}), DB, "kwargs.secrets[0].env",
     "kwargs.secrets[0].env 'DB_PASSWORD' is also set in env"),
]


@pytest.mark.parametrize("raw, policy, field, words", BAD)
def test_every_bad_input_names_its_field(raw, policy, field, words):
    with pytest.raises(SpecError) as err:
        parse(raw, **policy)
    assert err.value.field == field
    assert str(err.value).startswith("invalid funcspec: ")
    assert words in str(err.value)


@pytest.mark.parametrize("raw, field", [
    (funcspec(conditions__nodes="two"), "conditions.nodes"),
    (funcspec(maxexectime="x"), "maxexectime"),
    (funcspec(conditions__gpu={"count": True}), "conditions.gpu.count"),
    (funcspec(conditions__gpu=[1]), "conditions.gpu"),
    (funcspec(conditions="big"), "conditions"),
    ("not a spec", "spec"),
])
def test_types_the_model_cannot_read_are_still_named(raw, field):
    with pytest.raises(SpecError) as err:
        spec.parse_process(unparsed(raw), SpecPolicy())
    assert err.value.field == field


def test_a_process_id_that_is_not_hex_is_refused():
    bad = Process.from_json({"processid": "p1", "state": 1, "spec": HELLO})
    with pytest.raises(SpecError) as err:
        spec.parse_process(bad, SpecPolicy())
    assert err.value.field == "processid"


def test_a_spec_error_is_a_value_error_with_its_message_apart():
    err = SpecError("kwargs.cmd", "kwargs.cmd is missing")
    assert isinstance(err, ValueError) and err.message == "kwargs.cmd is missing"
    assert str(err) == "invalid funcspec: kwargs.cmd is missing"


def _junk(rng: random.Random, depth: int = 0):
    leaves = [None, True, False, 0, -1, 7, 2**70, 0.5, float("nan"), "", "x", "{processid}", "500m", "1GB",
              "ubuntu:20.04", "a" * 300, "é\x00", b"bytes", ("tuple",)]
    if depth < 3 and rng.random() < 0.4:
        if rng.random() < 0.5:
            return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        keys = ["cmd", "args", "docker-image", "init-cmd", "command", "count", "name", "cpu", "mem", 1, None, "A",
                "key", "env"]
        return {rng.choice(keys): _junk(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice(leaves)


def test_random_junk_never_raises_anything_but_a_spec_error():
    rng = random.Random(20260504)
    paths = ["funcname", "kwargs", "kwargs__docker-image", "kwargs__cmd", "kwargs__args", "kwargs__init-cmd",
             "kwargs__command", "env", "conditions", "conditions__cpu", "conditions__mem", "conditions__gpu",
             "conditions__gpu__count", "conditions__gpu__name", "conditions__nodes", "conditions__processespernode",
             "conditions__walltime", "maxexectime", "kwargs__secrets"]
    settings = builder.JobSettings(namespace="ns", executor_name="kube", executor_id="e", colony_name="dev")
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(2000):
        raw = funcspec(**{rng.choice(paths): _junk(rng) for _ in range(rng.randint(1, 3))})
        if rng.random() < 0.1:
            raw = _junk(rng)
        try:
            run = spec.parse_process(unparsed(raw), SpecPolicy(max_cpu_millis=4000, max_gpus=2,
                                                               allowed_secrets=("x", "500m")))
        except SpecError as err:
            assert err.field and str(err).startswith("invalid funcspec: ")
            outcomes["refused"] += 1
        else:
            builder.build_job(run, settings)  # whatever parses must also build
            outcomes["ok"] += 1
    assert outcomes["ok"] > 50 and outcomes["refused"] > 500
