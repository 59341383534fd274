"""A Colonies process's funcspec, parsed and validated into a `RunSpec`.

This is the border between what a user wrote and what the operator runs. `parse_process`
reads the funcspec as the server holds it (`FunctionSpec.raw`, the JSON dict, so that a
wrong type is seen rather than coerced away) and either returns a frozen `RunSpec` or
raises `SpecError`, whose `.field` is the dotted path of the offending field
(`kwargs.docker-image`, `kwargs.args[1]`, `conditions.cpu`) and whose message says what
was wrong and what is expected. Nothing else escapes for any input: on `SpecError` the
process is failed with that message and no Job is created.

The accepted funcspec is the one the ColonyOS kube executor accepts (`funcname:
"execute"`, `kwargs` `docker-image`, `cmd`, `args`, `init-cmd`), so existing funcspecs
keep working, plus a shell-free form (`kwargs.command` + `kwargs.args`) and
`kwargs.secrets` (environment variables filled from Secrets the executor allows, by name
only). Per-process limits come from a `SpecPolicy` the executor's configuration provides.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from colonies_operator.cfs.mounts import Filesystem
from colonies_operator.colonies.models import Process
from colonies_operator.jobs import image_reference, quantity, spec_fs
from colonies_operator.jobs.readers import SpecError, got, integer, non_negative, obj, string, strings
from colonies_operator.jobs.spec_fs import PROCESS_ID_PLACEHOLDER

SUPPORTED_FUNCNAME: Final = "execute"
PROCESS_ID_ENV: Final = "COLONIES_PROCESS_ID"
SHELL: Final = ("/bin/sh", "-c")

_PROCESS_ID: Final = re.compile(r"[0-9a-f]{64}")
# Kubernetes' classic rule for env names (still valid under the relaxed rule of 1.34+).
_ENV_NAME: Final = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
# A label value, at most 63 characters: the GPU name becomes a nodeSelector value.
_LABEL_VALUE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
# Kubernetes' rules for a Secret's name (a DNS-1123 subdomain) and for the keys of its data.
_SECRET_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY: Final = re.compile(r"[-._a-zA-Z0-9]+")
MAX_SECRET_NAME: Final = 253  # also the longest key


@dataclass(frozen=True)
class SpecPolicy:
    """What one executor allows a process to ask for.

    The cpu, memory and GPU caps apply per container, as `conditions` are per container
    (a process uses nodes × processespernode × each); `None` means no cap.
    """

    allowed_images: tuple[str, ...] = ()  # fnmatch patterns, or prefixes ending in "/"; empty: any
    max_cpu_millis: int | None = None
    max_memory_bytes: int | None = None
    max_gpus: int | None = None
    max_nodes: int = 16
    max_processes_per_node: int = 16
    default_cpu_millis: int | None = None  # used when conditions.cpu is unset ("0m")
    default_memory_bytes: int | None = None  # used when conditions.mem is unset ("0Mi")
    storage: bool = False  # the executor syncs CFS (spec.storage), so a funcspec may use fs
    allowed_secrets: tuple[str, ...] = ()  # Secret names kwargs.secrets may name; empty: none
    # kwargs.profile → the policy of that profile (spec.profiles: its own limits, if any)
    profiles: Mapping[str, SpecPolicy] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretEnv:
    """One environment variable the kubelet fills from a key of a Secret in the Job's
    namespace: the value never passes through Colonies, only these three names do."""

    env: str
    secret: str
    key: str


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to build the Job of one attempt of one process, already valid."""

    process_id: str
    attempt: int  # the process's retries count: a re-queued process gets a new Job
    image: str
    command: tuple[str, ...]  # the container's command (entrypoint override)
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # COLONIES_PROCESS_ID first, then spec.env in order
    cpu_millis: int | None  # per container, requests = limits; None: no cpu resources
    memory_bytes: int | None  # per container, requests = limits; None: no memory resources
    gpu_count: int  # per container
    gpu_name: str  # a node label value; "" means any GPU node
    nodes: int  # pods (Indexed Job when > 1)
    processes_per_node: int  # containers per pod
    deadline_seconds: int | None  # Job activeDeadlineSeconds
    assigned_at: str = ""  # the server's start time of this assignment (tells re-queued assignments apart)
    fs: Filesystem | None = None  # CFS: snapshots and directories under a mount, {processid} substituted
    input_json: str = ""  # the process's `in` as JSON ("" when it has none): /colonies/in.json
    secrets: tuple[SecretEnv, ...] = ()  # after env, in the funcspec's order
    gpu_memory_mib: int = 0  # each GPU's memory at least; 0: any
    profile: str = ""  # kwargs.profile: the executor's profile the Job is built from; "": jobTemplate
    priority: int = 0  # the funcspec's: Colonies' queue order, and a Kueue priority class (jobs/kueue.py)


def is_label_value(text: str) -> bool:
    """Whether `text` is a valid Kubernetes label value (also what a nodeSelector takes)."""
    return bool(_LABEL_VALUE.fullmatch(text))


def _quantity(value: Any, field: str, policy_cap: int | None, default: int | None,
              parse: Callable[[Any], int], show: Callable[[int], str]) -> int | None:
    """A cpu or memory condition: 0 or empty means unset, which gives the policy default."""
    try:
        amount = 0 if value is None or value == "" else parse(value)
    except quantity.QuantityError as err:
        raise SpecError(field, f"{field}: {err}") from None
    if amount == 0:
        return default
    if policy_cap is not None and amount > policy_cap:
        raise SpecError(field, f"{field} {show(amount)} is over this executor's limit of "
                               f"{show(policy_cap)} per container")
    return amount


def image_allowed(image: str, patterns: tuple[str, ...]) -> bool:
    """Whether `image` matches one of `patterns` (fnmatch, or a prefix ending in "/")."""
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(image, p) or (p.endswith("/") and image.startswith(p))
               for p in patterns)


def _image(kwargs: Mapping[str, Any], policy: SpecPolicy) -> str:
    field = "kwargs.docker-image"
    if kwargs.get("docker-image") is None:
        raise SpecError(field, f"{field} is missing: expected the container image to run, e.g. 'ubuntu:24.04'")
    image = string(kwargs["docker-image"], field)
    if not image or any(c.isspace() for c in image):
        raise SpecError(field, f"{field} {image!r} is not an image reference: expected e.g. 'ubuntu:24.04'")
    if problem := image_reference.problem(image):
        raise SpecError(field, f"{field} {image_reference.shown(image)} is not a valid image reference: {problem}")
    if not image_allowed(image, policy.allowed_images):
        raise SpecError(field, f"image {image!r} is not allowed by this executor "
                               f"(allowed: {', '.join(policy.allowed_images)})")
    return image


def _shell_command(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The kube executor's form: `init-cmd; cmd arg1 arg2` run by /bin/sh -c.

    Arguments are joined with single spaces and no quoting, exactly as the kube executor
    does: existing funcspecs rely on the shell seeing them (pipes, globs, variables).
    """
    cmd = string(kwargs["cmd"], "kwargs.cmd")
    script = " ".join((cmd, *strings(kwargs.get("args"), "kwargs.args")))
    if not script.strip():
        raise SpecError("kwargs.cmd", "kwargs.cmd is empty: expected the command to run, e.g. 'echo'")
    init = kwargs.get("init-cmd")
    # A trailing ";" in init-cmd would make "init;; cmd", a shell syntax error.
    init = string(init, "kwargs.init-cmd").rstrip().rstrip(";") if init is not None else ""
    return (*SHELL, f"{init}; {script}" if init.strip() else script)


def _command(kwargs: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(container command, container args) from either form, before substitution."""
    has_cmd, has_command = kwargs.get("cmd") is not None, kwargs.get("command") is not None
    if has_cmd and has_command:
        raise SpecError("kwargs.command", "kwargs.cmd and kwargs.command are mutually exclusive: "
                                          "give cmd (run by /bin/sh -c) or command (run as is)")
    if has_cmd:
        return _shell_command(kwargs), ()
    if not has_command:
        raise SpecError("kwargs.cmd", "kwargs.cmd is missing: expected the command to run as a string "
                                      "(or kwargs.command as a list of strings)")
    if kwargs.get("init-cmd") is not None:
        raise SpecError("kwargs.init-cmd", "kwargs.init-cmd needs kwargs.cmd: "
                                           "the shell-free kwargs.command form runs no shell")
    command = strings(kwargs["command"], "kwargs.command")
    if not command:
        raise SpecError("kwargs.command", "kwargs.command is empty: expected the program and its arguments")
    return command, strings(kwargs.get("args"), "kwargs.args")


def _env_name(name: Any, field: str, shown: str) -> str:
    """An environment variable name the user may set; `shown` is how the message names it."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise SpecError(field, f"{shown} is not a valid environment variable name: expected letters, "
                               "digits, '_', '-' and '.', not starting with a digit")
    if name == PROCESS_ID_ENV:
        raise SpecError(field, f"{shown} is set by the executor to the process id and cannot be overridden")
    return name


def _env(value: Any, process_id: str) -> tuple[tuple[str, str], ...]:
    pairs = [(PROCESS_ID_ENV, process_id)]
    for name, text in obj(value, "env", "environment variable names to string values").items():
        field = f"env.{str(name)[:64]}"
        pairs.append((_env_name(name, field, field), string(text, field)))
    return tuple(pairs)


def is_secret_name(text: Any) -> bool:
    """Whether `text` is a valid Secret name (a DNS-1123 subdomain)."""
    return isinstance(text, str) and len(text) <= MAX_SECRET_NAME and bool(_SECRET_NAME.fullmatch(text))


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _member(entry: Mapping[str, Any], member: str, field: str, expected: str) -> str:
    """`entry[member]`, a required string; `field` is its dotted path."""
    if entry.get(member) is None:
        raise SpecError(field, f"{field} is missing: expected {expected}")
    return string(entry[member], field)


def _secret_name(entry: Mapping[str, Any], field: str, allowed: tuple[str, ...]) -> str:
    which = f"(allowed: {', '.join(allowed)})" if allowed else "(it allows none)"
    name = _member(entry, "name", field, f"the name of a Secret this executor allows {which}")
    if name not in allowed:
        why = (f"is not allowed by this executor {which}" if allowed else
               "is not allowed: this executor allows no Secrets (its ColonyExecutor sets no secrets.allowed)")
        raise SpecError(field, f"{field} {_quoted(name)} {why}")
    return name


def _secret_key(entry: Mapping[str, Any], field: str) -> str:
    """A key of the Secret's data, by Kubernetes' rule for Secret and ConfigMap keys."""
    key = _member(entry, "key", field, "the key in the Secret's data whose value the variable gets")
    if len(key) > MAX_SECRET_NAME:
        problem = f"expected at most {MAX_SECRET_NAME} characters, got {len(key)}"
    elif not _SECRET_KEY.fullmatch(key):
        problem = "expected letters, digits, '-', '_' and '.'"
    elif key in (".", ".."):
        problem = f"it must not be {key!r}"
    elif key.startswith(".."):
        problem = "it must not start with '..'"
    else:
        return key
    raise SpecError(field, f"{field} {_quoted(key)} is not a valid Secret key: {problem}")


def _secrets(value: Any, env: tuple[tuple[str, str], ...], policy: SpecPolicy) -> tuple[SecretEnv, ...]:
    """`kwargs.secrets`: [{name, key, env}], each naming a Secret the executor allows. Only
    names travel; the kubelet reads the value, so it never passes through Colonies."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError("kwargs.secrets", f"kwargs.secrets must be a list of {{name, key, env}} objects, "
                                          f"got {got(value)}")
    plain = {name for name, _ in env}
    seen: dict[str, str] = {}
    entries = []
    for i, entry in enumerate(value):
        field = f"kwargs.secrets[{i}]"
        if not isinstance(entry, Mapping):
            raise SpecError(field, f"{field} must be an object ({{name, key, env}}), got {got(entry)}")
        name = _secret_name(entry, f"{field}.name", policy.allowed_secrets)
        key = _secret_key(entry, f"{field}.key")
        env_field = f"{field}.env"
        var = _member(entry, "env", env_field, "the environment variable the program reads the value from")
        _env_name(var, env_field, f"{env_field} {_quoted(var)}")
        if var in seen:
            raise SpecError(env_field, f"{env_field} {_quoted(var)} is already set by {seen[var]}: "
                                       "give each variable one source")
        if var in plain:
            raise SpecError(env_field, f"{env_field} {_quoted(var)} is also set in env: "
                                       "give each variable one source")
        seen[var] = field
        entries.append(SecretEnv(env=var, secret=name, key=key))
    return tuple(entries)


def _gpu(conditions: Mapping[str, Any], policy: SpecPolicy, nodes: int) -> tuple[int, str, int]:
    """(count per container, name, memory in MiB) of conditions.gpu."""
    gpu = obj(conditions.get("gpu"), "conditions.gpu", "count, name, mem, nodecount")
    count = non_negative(gpu.get("count"), "conditions.gpu.count", policy.max_gpus, "GPUs per container")
    name = "" if gpu.get("name") is None else string(gpu["name"], "conditions.gpu.name")
    # The name only matters (as a nodeSelector value) when GPUs are asked for, as in the
    # kube executor; an odd name on a cpu-only process is left alone.
    if count and not is_label_value(name):
        raise SpecError("conditions.gpu.name", f"conditions.gpu.name {name!r} is not a valid node label value: "
                                               "expected up to 63 letters, digits, '-', '_' or '.'")
    # The server stores mem as "<MiB>Mi", and an unset one as "0Mi".
    try:
        memory = 0 if gpu.get("mem") in (None, "") else quantity.parse_memory(gpu["mem"])
    except quantity.QuantityError as err:
        raise SpecError("conditions.gpu.mem", f"conditions.gpu.mem: {err}") from None
    nodecount = non_negative(gpu.get("nodecount"), "conditions.gpu.nodecount", None, "nodes")
    if count and nodecount and nodecount != nodes:
        # Every pod of a Job has the same containers: GPUs on some nodes only cannot be built.
        raise SpecError("conditions.gpu.nodecount", f"conditions.gpu.nodecount {nodecount} differs from "
                                                    f"conditions.nodes {nodes}: every node of a process gets the "
                                                    f"same GPUs; set conditions.nodes to {nodecount} or leave "
                                                    "nodecount out")
    return count, name, -(-memory // 2**20)


def _profile(kwargs: Mapping[str, Any], policy: SpecPolicy) -> tuple[str, SpecPolicy]:
    """kwargs.profile → (its name, its policy); no profile: ("", the executor's policy)."""
    if kwargs.get("profile") is None:
        return "", policy
    name = string(kwargs["profile"], "kwargs.profile")
    if name not in policy.profiles:
        offered = ", ".join(sorted(policy.profiles)) or "none"
        raise SpecError("kwargs.profile", f"kwargs.profile {name!r} is not a profile of this executor "
                                          f"(its profiles: {offered})")
    return name, policy.profiles[name]


def _deadline(spec: Mapping[str, Any], conditions: Mapping[str, Any]) -> int | None:
    """walltime bounds the Job; without it maxexectime does (the server only unassigns)."""
    walltime = integer(conditions.get("walltime"), "conditions.walltime")
    maxexectime = integer(spec.get("maxexectime"), "maxexectime")
    return walltime if walltime > 0 else maxexectime if maxexectime > 0 else None


def _substitute(parts: tuple[str, ...], process_id: str) -> tuple[str, ...]:
    return tuple(part.replace(PROCESS_ID_PLACEHOLDER, process_id) for part in parts)


def parse_process(process: Process, policy: SpecPolicy) -> RunSpec:
    """The validated `RunSpec` of `process`, or `SpecError` naming the first bad field."""
    process_id = process.processid
    if not isinstance(process_id, str) or not _PROCESS_ID.fullmatch(process_id):
        raise SpecError("processid", f"processid {process_id!r} is not a 64-character hex process id")
    spec = obj(process.spec.raw, "spec", "a function spec")
    funcname = spec.get("funcname")
    if funcname != SUPPORTED_FUNCNAME:
        what = "funcname is missing" if funcname is None else f"unsupported funcname {funcname!r}"
        raise SpecError("funcname", f"{what}: this executor runs only {SUPPORTED_FUNCNAME!r}")
    if spec.get("kwargs") is None:
        raise SpecError("kwargs", "kwargs is missing: expected an object with docker-image and cmd")
    kwargs = obj(spec["kwargs"], "kwargs", "docker-image, cmd, args")
    profile, policy = _profile(kwargs, policy)
    image = _image(kwargs, policy)
    command, args = _command(kwargs)
    env = _env(spec.get("env"), process_id)
    fs = spec_fs.filesystem(spec.get("fs"), process_id, policy.storage)
    secrets = _secrets(kwargs.get("secrets"), env, policy)
    conditions = obj(spec.get("conditions"), "conditions", "cpu, mem, gpu, nodes, ...")
    cpu = _quantity(conditions.get("cpu"), "conditions.cpu", policy.max_cpu_millis,
                    policy.default_cpu_millis, quantity.parse_cpu, quantity.format_cpu)
    memory = _quantity(conditions.get("mem"), "conditions.mem", policy.max_memory_bytes,
                       policy.default_memory_bytes, quantity.parse_memory, quantity.format_memory)
    nodes = non_negative(conditions.get("nodes"), "conditions.nodes", policy.max_nodes, "nodes")
    gpu_count, gpu_name, gpu_memory = _gpu(conditions, policy, nodes or 1)
    per_node = non_negative(conditions.get("processespernode"), "conditions.processespernode",
                      policy.max_processes_per_node, "processes per node")
    return RunSpec(
        process_id=process_id,
        attempt=process.retries,
        image=image,
        command=_substitute(command, process_id),
        args=_substitute(args, process_id),
        env=env,
        cpu_millis=cpu,
        memory_bytes=memory,
        gpu_count=gpu_count,
        gpu_name=gpu_name,
        nodes=nodes or 1,  # 0 is what the server stores when the user left it out
        processes_per_node=per_node or 1,
        deadline_seconds=_deadline(spec, conditions),
        assigned_at=process.starttime.isoformat() if process.starttime else "",
        fs=fs,
        input_json=json.dumps(list(process.input), ensure_ascii=False) if process.input else "",
        secrets=secrets,
        gpu_memory_mib=gpu_memory,
        profile=profile,
        priority=process.spec.priority,
    )
