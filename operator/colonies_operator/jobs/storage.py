"""The CFS parts of a Job whose funcspec has `fs`: a volume, the pull init container and the
push sidecar, built as plain dicts for jobs/builder.py.

- The volume is an `emptyDir` (size-limited) mounted at `fs.mount` in the program's
  containers and at `ROOT` in the two CFS containers.
- `cfs-pull` (init container) fetches snapshots and syncs directories in; the program only
  starts once it has succeeded.
- `cfs-push` is a native sidecar (an init container with `restartPolicy: Always`): started
  before the program, stopped by the kubelet after it, and syncing out when stopped. The
  pod's grace period bounds the push, so it is sized from the executor's setting.
- The executor key and the S3 keys reach only these two containers, as env from Secrets;
  the program's containers get neither, and the pod's containers share no process
  namespace, so the program cannot read them from /proc either.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Final

from colonies_operator.cfs import steps
from colonies_operator.cfs.mounts import Filesystem
from colonies_operator.jobs import sidecars

VOLUME: Final = "cfs"
ROOT: Final = "/cfs-volume"
PULL: Final = "cfs-pull"
PUSH: Final = "cfs-push"
CONTAINERS: Final = (PULL, PUSH)
CA_VOLUME: Final = "cfs-colonies-ca"
CA_DIR: Final = "/etc/colonies-ca"
# The push sidecar's own small volume for its ready file (jobs/sidecars.py).
RUN_VOLUME: Final = "cfs-push-run"
RUN_DIR: Final = "/run/cfs"
READY_FILE: Final = f"{RUN_DIR}/ready"


@dataclass(frozen=True)
class StorageSettings:
    """An executor's `spec.storage`, and how its Jobs' CFS steps reach Colonies."""

    image: str                       # the operator's own image, which has `colonies-operator cfs`
    endpoint: str                    # S3 host[:port]
    bucket: str
    keys_secret: str                 # Secret with the S3 keys
    executor_key_secret: tuple[str, str]  # (Secret, key) holding the executor's private key
    server_host: str                 # the Colonies server as pods reach it
    server_port: int
    colony_name: str
    region: str = ""
    tls: bool = False
    skip_verify: bool = False
    access_key_field: str = "accessKey"
    secret_key_field: str = "secretKey"
    server_tls: bool = False
    server_ca_secret: tuple[str, str] | None = None  # (Secret, key): the Colonies server's CA bundle
    volume_size: str = "10Gi"        # the emptyDir's sizeLimit
    push_seconds: int = 600          # the grace period the push has after the program ends
    cpu: str = "100m"
    memory: str = "256Mi"


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(fs: Filesystem, process_id: str, attempt: int, s: StorageSettings) -> list[dict[str, Any]]:
    plain = {
        "COLONIES_SERVER_HOST": s.server_host, "COLONIES_SERVER_PORT": str(s.server_port),
        "COLONIES_TLS": "true" if s.server_tls else "false", "COLONIES_COLONY_NAME": s.colony_name,
        "COLONIES_PROCESS_ID": process_id, steps.ENV_ATTEMPT: str(attempt),
        steps.ENV_FS: fs.to_json(), steps.ENV_ROOT: ROOT,
        "AWS_S3_ENDPOINT": s.endpoint, "AWS_S3_BUCKET": s.bucket, "AWS_S3_REGION": s.region,
        "AWS_S3_TLS": "true" if s.tls else "false", "AWS_S3_SKIPVERIFY": "true" if s.skip_verify else "false",
    }
    if s.server_ca_secret:
        plain["COLONIES_CA_FILE"] = f"{CA_DIR}/ca.crt"
    return [{"name": k, "value": v} for k, v in plain.items()] + [
        _secret_env(steps.ENV_KEY, *s.executor_key_secret),
        _secret_env("AWS_S3_ACCESSKEY", s.keys_secret, s.access_key_field),
        _secret_env("AWS_S3_SECRETKEY", s.keys_secret, s.secret_key_field),
    ]


def containers(fs: Filesystem, process_id: str, attempt: int, s: StorageSettings,
               security: dict[str, Any]) -> list[dict[str, Any]]:
    """The pull init container and, when there are directories to sync back, the push
    sidecar, in the order they must start."""
    mounts = [{"name": VOLUME, "mountPath": ROOT}]
    if s.server_ca_secret:
        mounts.append({"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True})
    amounts = {"cpu": s.cpu, "memory": s.memory}
    built = []
    for name, step in ((PULL, "pull"), (PUSH, "push"))[:2 if fs.dirs else 1]:
        container: dict[str, Any] = {
            "name": name, "image": s.image, "imagePullPolicy": "IfNotPresent",
            "command": ["colonies-operator", "cfs", step],
            "env": _env(fs, process_id, attempt, s),
            "volumeMounts": copy.deepcopy(mounts),
            "resources": {"requests": dict(amounts), "limits": dict(amounts)},
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "securityContext": copy.deepcopy(security),
        }
        if name == PUSH:
            container["restartPolicy"] = "Always"  # a native sidecar: runs beside the program
            container["env"].append({"name": steps.ENV_READY, "value": READY_FILE})
            container["volumeMounts"].append({"name": RUN_VOLUME, "mountPath": RUN_DIR})
            container["lifecycle"] = sidecars.ready_hook(READY_FILE)
        built.append(container)
    return built


def volumes(fs: Filesystem, s: StorageSettings) -> list[dict[str, Any]]:
    built: list[dict[str, Any]] = [{"name": VOLUME, "emptyDir": {"sizeLimit": s.volume_size}}]
    if fs.dirs:
        built.append(sidecars.run_volume(RUN_VOLUME))
    if s.server_ca_secret:
        secret, key = s.server_ca_secret
        built.append({"name": CA_VOLUME, "secret": {"secretName": secret, "items": [{"key": key, "path": "ca.crt"}]}})
    return built


def program_mount(fs: Filesystem) -> dict[str, Any]:
    return {"name": VOLUME, "mountPath": fs.mount}
