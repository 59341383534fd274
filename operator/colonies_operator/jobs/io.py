"""Workflow input and file output for a process's Job, as plain dicts for jobs/builder.py.

- Input: a process with `in` (a workflow child gets its parents' output there) finds it as
  JSON in `/colonies/in.json`, from a ConfigMap the operator creates next to the Job and owned
  by it (`input_configmap`), and in `COLONIES_PROCESS_INPUT` when it is small.
- Output: with the executor's `spec.output.file`, `/colonies` is a volume shared with the
  output sidecar, which hands `/colonies/out.json` to the operator once the program has ended
  (colonies_operator/outfile.py). The sidecar holds no keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from colonies_operator.jobs import sidecars

DIR: Final = "/colonies"
IN_FILE: Final = "in.json"
OUT_FILE: Final = "out.json"
INPUT_ENV: Final = "COLONIES_PROCESS_INPUT"
INPUT_ENV_MAX: Final = 32 * 1024  # larger input only in the file: env counts against the pod's size
IO_VOLUME: Final = "colonies-io"
INPUT_VOLUME: Final = "colonies-input"
OUTPUT: Final = "colonies-output"
RUN_VOLUME: Final = "colonies-output-run"
RUN_DIR: Final = "/run/colonies-output"
READY_FILE: Final = f"{RUN_DIR}/ready"


@dataclass(frozen=True)
class OutputSettings:
    """An executor's `spec.output`: out.json becomes the output, up to `max_bytes`."""

    image: str
    max_bytes: int = 1 << 20
    cpu: str = "100m"
    memory: str = "128Mi"


def input_configmap_name(job_name: str) -> str:
    return f"{job_name}-input"


def input_configmap(job: dict[str, Any], input_json: str) -> dict[str, Any]:
    """The ConfigMap that carries in.json, owned by the created `job` (so it goes with it)."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": input_configmap_name(meta["name"]), "namespace": meta["namespace"],
                     "labels": dict(meta.get("labels") or {}),
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                          "uid": meta["uid"], "blockOwnerDeletion": False}]},
        "data": {IN_FILE: input_json},
    }


def program_mounts(input_json: str, output: OutputSettings | None) -> list[dict[str, Any]]:
    mounts = []
    if output is not None:
        mounts.append({"name": IO_VOLUME, "mountPath": DIR})
    if input_json:
        mounts.append({"name": INPUT_VOLUME, "mountPath": f"{DIR}/{IN_FILE}", "subPath": IN_FILE, "readOnly": True})
    return mounts


def program_env(input_json: str) -> list[dict[str, str]]:
    return [{"name": INPUT_ENV, "value": input_json}] if 0 < len(input_json.encode()) <= INPUT_ENV_MAX else []


def volumes(job_name: str, input_json: str, output: OutputSettings | None) -> list[dict[str, Any]]:
    built: list[dict[str, Any]] = []
    if output is not None:
        built += [{"name": IO_VOLUME, "emptyDir": {}}, sidecars.run_volume(RUN_VOLUME)]
    if input_json:
        built.append({"name": INPUT_VOLUME, "configMap": {"name": input_configmap_name(job_name)}})
    return built


def output_sidecar(output: OutputSettings, security: dict[str, Any]) -> dict[str, Any]:
    """The native sidecar that hands out.json over; the program starts once it can hear the
    program end (its postStart hook waits for its SIGTERM handler, as the CFS push's does)."""
    amounts = {"cpu": output.cpu, "memory": output.memory}
    return {
        "name": OUTPUT, "image": output.image, "imagePullPolicy": "IfNotPresent",
        "command": ["colonies-operator", "output"], "restartPolicy": "Always",
        "env": [{"name": "COLONIES_OUTPUT_FILE", "value": f"{DIR}/{OUT_FILE}"},
                {"name": "COLONIES_OUTPUT_MAX_BYTES", "value": str(output.max_bytes)},
                {"name": "COLONIES_OUTPUT_READY", "value": READY_FILE}],
        "volumeMounts": [{"name": IO_VOLUME, "mountPath": DIR, "readOnly": True},
                         {"name": RUN_VOLUME, "mountPath": RUN_DIR}],
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "lifecycle": sidecars.ready_hook(READY_FILE),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security,
    }
