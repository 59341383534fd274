"""`jobTemplate.podTemplate`: a full PodTemplateSpec an executor's admin writes, merged under
what the operator owns.

The program's container is `main` (each `main-<i>` when processespernode > 1 gets it): its
volumeMounts, env, envFrom, workingDir, ports, lifecycle and securityContext come from the
template; image, command, args and resources come from the funcspec. The template also
brings volumes, init containers and native sidecars (init containers with restartPolicy
Always), affinity, tolerations, runtimeClassName, hostAliases, dnsConfig and whatever else a
PodSpec holds. The operator's labels, annotations, restartPolicy and security floor always
win, and a template that would step below the floor (host namespaces, privileged, added
capabilities, hostPath) is refused with the path of the offending field, once, when the
ColonyExecutor is read, not when a process arrives.

`check` validates; `merge_pod` and `pod_metadata` are pure and return new dicts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from colonies_operator.jobs import io, storage

MAIN: Final = "main"

# Volume names the operator's own containers use.
RESERVED_VOLUMES: Final = frozenset({storage.VOLUME, storage.CA_VOLUME, storage.RUN_VOLUME,
                                     io.IO_VOLUME, io.INPUT_VOLUME, io.RUN_VOLUME})
# What the template may say about the program's container; the rest comes from the funcspec.
MAIN_KEYS: Final = frozenset({"name", "volumeMounts", "volumeDevices", "env", "envFrom", "workingDir", "ports",
                              "lifecycle", "securityContext", "startupProbe", "readinessProbe", "livenessProbe",
                              "stdin", "tty"})
# Pod fields the operator sets itself, or that would take the Job's pods out of its hands.
OWNED_POD_KEYS: Final = {
    "restartPolicy": "a failed container fails the attempt (Never); Colonies owns retries",
    "activeDeadlineSeconds": "the process's walltime becomes the Job's activeDeadlineSeconds",
    "nodeName": "it bypasses the scheduler (and any admission such as Kueue); use nodeSelector or affinity",
    "ephemeralContainers": "they are added to running pods, never created with them",
}
HOST_NAMESPACES: Final = ("hostNetwork", "hostPID", "hostIPC")
# The volume types Pod Security "restricted" allows.
RESTRICTED_VOLUMES: Final = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                                       "persistentVolumeClaim", "projected", "secret"})


class TemplateError(ValueError):
    """A jobTemplate (or profile) field that cannot be used: `field` is its path in the spec."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _object(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TemplateError(path, f"must be an object, got {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TemplateError(path, f"must be a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise TemplateError(f"{path}[{i}]", f"must be an object, got {type(item).__name__}")
    return value


def _check_container_security(value: Any, path: str, restricted: bool) -> None:
    security = _object(value, path)
    if security.get("privileged"):
        raise TemplateError(f"{path}.privileged", "privileged containers are below the operator's security floor")
    if security.get("allowPrivilegeEscalation"):
        raise TemplateError(f"{path}.allowPrivilegeEscalation", "must not be true: the security floor forbids it")
    if _object(security.get("capabilities"), f"{path}.capabilities").get("add"):
        raise TemplateError(f"{path}.capabilities.add", "every container drops all capabilities; none may be added")
    _check_identity(security, path, restricted)


def _check_identity(security: Mapping[str, Any], path: str, restricted: bool) -> None:
    seccomp = _object(security.get("seccompProfile"), f"{path}.seccompProfile")
    if seccomp.get("type") == "Unconfined":
        raise TemplateError(f"{path}.seccompProfile.type", "Unconfined is below the security floor (RuntimeDefault)")
    if restricted and security.get("runAsUser") == 0:
        raise TemplateError(f"{path}.runAsUser", "0 runs as root, which securityProfile restricted forbids")
    if restricted and security.get("runAsNonRoot") is False:
        raise TemplateError(f"{path}.runAsNonRoot", "false contradicts securityProfile restricted")


def _check_containers(value: Any, path: str, restricted: bool, *, program: bool) -> None:
    names: set[str] = set()
    for i, container in enumerate(_list(value, path)):
        at = f"{path}[{i}]"
        name = container.get("name")
        if not isinstance(name, str) or not name:
            raise TemplateError(f"{at}.name", "every container needs a name")
        if name in names:
            raise TemplateError(f"{at}.name", f"{name!r} is used twice")
        names.add(name)
        if program and name != MAIN:
            raise TemplateError(f"{at}.name", f"{name!r}: the only container a template may describe is {MAIN!r}, "
                                              "the program's; run helpers as native sidecars (initContainers with "
                                              "restartPolicy: Always), which end when the program does")
        if program:
            for key in container:
                if key not in MAIN_KEYS:
                    raise TemplateError(f"{at}.{key}", f"is set from the funcspec, not the template (a template "
                                                       f"may give {MAIN!r}: {', '.join(sorted(MAIN_KEYS - {'name'}))})")
        elif name.startswith(MAIN) or name in {io.OUTPUT, *storage.CONTAINERS}:
            raise TemplateError(f"{at}.name", f"{name!r} is a name the operator's containers use")
        _check_container_security(container.get("securityContext"), f"{at}.securityContext", restricted)


def _check_volumes(value: Any, path: str, restricted: bool) -> None:
    names: set[str] = set()
    for i, volume in enumerate(_list(value, path)):
        at = f"{path}[{i}]"
        name = volume.get("name")
        if name in RESERVED_VOLUMES:
            raise TemplateError(f"{at}.name", f"{name!r} is a volume the operator's containers use")
        if name in names:
            raise TemplateError(f"{at}.name", f"{name!r} is used twice")
        names.add(name)
        if "hostPath" in volume:
            raise TemplateError(f"{at}.hostPath", "hostPath volumes are below the security floor: use a "
                                                  "PersistentVolumeClaim (or a CSI volume) for datasets")
        kinds = [k for k in volume if k != "name"]
        if restricted and any(k not in RESTRICTED_VOLUMES for k in kinds):
            raise TemplateError(at, f"{', '.join(kinds)} volumes are not allowed by securityProfile restricted "
                                    f"(allowed: {', '.join(sorted(RESTRICTED_VOLUMES))})")


def check(template: Any, path: str, restricted: bool = False) -> None:
    """Raise TemplateError naming the field when `template` cannot be used as a podTemplate."""
    template = _object(template, path)
    for key in template:
        if key not in ("metadata", "spec"):
            raise TemplateError(f"{path}.{key}", "a PodTemplateSpec has only metadata and spec")
    metadata = _object(template.get("metadata"), f"{path}.metadata")
    for key in metadata:
        if key not in ("labels", "annotations"):
            raise TemplateError(f"{path}.metadata.{key}", "only labels and annotations go on the Job's pods")
        for k, v in _object(metadata[key], f"{path}.metadata.{key}").items():
            if not isinstance(v, str):
                raise TemplateError(f"{path}.metadata.{key}.{k}", f"must be a string, got {type(v).__name__}")
    pod = _object(template.get("spec"), f"{path}.spec")
    at = f"{path}.spec"
    for key, why in OWNED_POD_KEYS.items():
        if key in pod:
            raise TemplateError(f"{at}.{key}", f"is the operator's: {why}")
    for key in HOST_NAMESPACES:
        if pod.get(key):
            raise TemplateError(f"{at}.{key}", "sharing the node's namespaces is below the security floor")
    security = _object(pod.get("securityContext"), f"{at}.securityContext")
    _check_identity(security, f"{at}.securityContext", restricted)
    _check_containers(pod.get("containers"), f"{at}.containers", restricted, program=True)
    _check_containers(pod.get("initContainers"), f"{at}.initContainers", restricted, program=False)
    _check_volumes(pod.get("volumes"), f"{at}.volumes", restricted)
    for key in ("nodeSelector", "affinity", "dnsConfig"):
        _object(pod.get(key), f"{at}.{key}")
    for key in ("tolerations", "hostAliases", "imagePullSecrets", "topologySpreadConstraints"):
        _list(pod.get(key), f"{at}.{key}")


def pod_metadata(template: Mapping[str, Any], labels: Mapping[str, str],
                 annotations: Mapping[str, str]) -> dict[str, Any]:
    """The pods' metadata: the template's labels and annotations under ours."""
    given = template.get("metadata") or {}
    return {"labels": {**(given.get("labels") or {}), **labels},
            "annotations": {**(given.get("annotations") or {}), **annotations}}


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged in: nested objects merge, anything else `over` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _by_name(items: list[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {item["name"]: item for item in items}


def _main(template_main: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """One program container: the template's `main` under the funcspec's container."""
    container = merged({k: v for k, v in template_main.items() if k != "name"},
                        {k: v for k, v in ours.items() if k not in ("env", "volumeMounts")})
    ours_env = list(ours.get("env") or [])
    taken = {e["name"] for e in ours_env}
    env = [copy.deepcopy(e) for e in template_main.get("env") or [] if e.get("name") not in taken] + ours_env
    if env:
        container["env"] = env
    mounts = [copy.deepcopy(m) for m in template_main.get("volumeMounts") or []]
    paths = {m.get("mountPath"): m.get("name") for m in mounts}
    for mount in ours.get("volumeMounts") or []:
        if mount["mountPath"] in paths:
            raise ValueError(f"the executor's podTemplate mounts volume {paths[mount['mountPath']]!r} at "
                             f"{mount['mountPath']}, where this process needs its own (fs.mount or /colonies)")
        mounts.append(mount)
    if mounts:
        container["volumeMounts"] = mounts
    return container


def _sidecar(container: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, Any]:
    """A template's init container or sidecar, with the floor over its securityContext."""
    return {**copy.deepcopy(dict(container)),
            "securityContext": merged(container.get("securityContext") or {}, floor)}


def _affinity(template: Mapping[str, Any], ours: Mapping[str, Any]) -> dict[str, Any]:
    """The template's affinity with ours ANDed in: our required node expressions (the GPU's)
    join every required term of the template's, so each way to schedule still needs them."""
    out = copy.deepcopy(dict(template))
    required = (ours.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return out
    needed = [e for term in required["nodeSelectorTerms"] for e in term.get("matchExpressions") or []]
    node = out.setdefault("nodeAffinity", {})
    theirs = node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = theirs.get("nodeSelectorTerms") or [{}]
    node["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": [
        {**term, "matchExpressions": list(term.get("matchExpressions") or []) + copy.deepcopy(needed)}
        for term in terms]}
    return out


def merge_pod(template: Mapping[str, Any], ours: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec of a Job: `template`'s spec under `ours` (the operator's complete pod spec).
    `floor` is the container securityContext every container ends up with at least."""
    given = template.get("spec") or {}
    pod = copy.deepcopy({k: v for k, v in given.items() if k not in ("containers", "initContainers")})
    template_main = _by_name(given.get("containers") or []).get(MAIN, {})
    for key, value in ours.items():
        if key == "containers":
            pod[key] = [_main(template_main, c) for c in value]
        elif key == "securityContext":
            # A Localhost seccomp profile of the template is at least as strict as the floor's
            # RuntimeDefault (`check` refuses Unconfined), so it stays.
            theirs = given.get(key) or {}
            pod[key] = merged(theirs, {k: v for k, v in value.items()
                                        if k != "seccompProfile" or "seccompProfile" not in theirs})
        elif key == "nodeSelector":
            pod[key] = {**(given.get(key) or {}), **value}
        elif key in ("tolerations", "volumes", "imagePullSecrets"):
            pod[key] = copy.deepcopy(list(given.get(key) or [])) + copy.deepcopy(value)
        elif key == "affinity":
            pod[key] = _affinity(given.get(key) or {}, value)
        else:
            pod[key] = copy.deepcopy(value)
    extra = [_sidecar(c, floor) for c in given.get("initContainers") or []]
    if extra:
        pod["initContainers"] = list(pod.get("initContainers") or []) + extra
    return pod
