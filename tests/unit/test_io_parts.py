"""Workflow input (/colonies/in.json) and file output (/colonies/out.json): the Job's parts,
the output frame the sidecar prints and the operator reads back, and the refusals."""

from __future__ import annotations

import json

import pytest
from colonies_operator import outfile
from colonies_operator.colonies.models import Process
from colonies_operator.jobs import builder, diagnosis, io, spec
from colonies_operator.jobs.builder import JobSettings

PID = "0123456789abcdef" * 4
SETTINGS = JobSettings(namespace="jobs", executor_name="kube", executor_id="e" * 64, colony_name="dev")
OUTPUT = io.OutputSettings(image="colonies-operator:1", max_bytes=1 << 20)


def job(input_=None, output=None, per_node=1) -> dict:
    raw = {"funcname": "execute", "kwargs": {"docker-image": "busybox:1.36", "cmd": "cat /colonies/in.json"},
           "conditions": {"processespernode": per_node}, "maxexectime": -1}
    process = Process.from_json({"processid": PID, "state": 1, "spec": raw, "in": input_})
    run = spec.parse_process(process, spec.SpecPolicy())
    return builder.build_job(run, JobSettings(**{**vars(SETTINGS), "output": output}))


def pod_spec(body: dict) -> dict:
    return body["spec"]["template"]["spec"]


def test_a_process_without_input_or_output_file_gets_neither():
    pod = pod_spec(job())
    assert "volumes" not in pod and "initContainers" not in pod and "volumeMounts" not in pod["containers"][0]


def test_input_is_a_file_from_a_configmap_the_job_owns_and_an_env_when_small():
    pod = pod_spec(job(input_=[{"n": 1}, "two"]))
    [main] = pod["containers"]
    assert main["volumeMounts"] == [{"name": "colonies-input", "mountPath": "/colonies/in.json",
                                     "subPath": "in.json", "readOnly": True}]
    assert pod["volumes"] == [{"name": "colonies-input", "configMap": {"name": f"colony-{PID[:20]}-0-input"}}]
    assert {"name": "COLONIES_PROCESS_INPUT", "value": '[{"n": 1}, "two"]'} in main["env"]
    created = {"metadata": {"name": f"colony-{PID[:20]}-0", "namespace": "jobs", "uid": "u-1", "labels": {"a": "b"}}}
    cm = io.input_configmap(created, '[{"n": 1}, "two"]')
    assert cm["metadata"]["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": f"colony-{PID[:20]}-0",
                                                  "uid": "u-1", "blockOwnerDeletion": False}]
    assert json.loads(cm["data"]["in.json"]) == [{"n": 1}, "two"]


def test_a_large_input_is_only_in_the_file():
    big = ["x" * (40 * 1024)]
    main = pod_spec(job(input_=big))["containers"][0]
    assert not any(e["name"] == "COLONIES_PROCESS_INPUT" for e in main["env"])


def test_the_output_file_gets_a_shared_volume_and_a_keyless_sidecar_that_holds_the_program_back_until_it_listens():
    pod = pod_spec(job(output=OUTPUT, per_node=2))
    [sidecar] = pod["initContainers"]
    assert (sidecar["name"], sidecar["restartPolicy"], sidecar["command"]) == (
        "colonies-output", "Always", ["colonies-operator", "output"])
    assert sidecar["lifecycle"]["postStart"]["exec"]["command"][-1].startswith("while [ ! -e /run/colonies-output/ready ]")
    assert not any("valueFrom" in e for e in sidecar["env"]), "no keys in the output sidecar"
    for main in pod["containers"]:
        assert {"name": "colonies-io", "mountPath": "/colonies"} in main["volumeMounts"]
    assert {"name": "colonies-io", "mountPath": "/colonies", "readOnly": True} in sidecar["volumeMounts"]


@pytest.mark.parametrize("data", [None, b"", b"[1, 2]", bytes(range(256)) * 5000, b"x" * (3 * outfile.LINE + 7)])
def test_the_output_frame_carries_any_bytes_whole(data):
    lines = ["09:00:00 waiting for the program to end", *outfile.frame(data)]
    assert outfile.unframe(lines).data == data
    assert all(len(line) <= outfile.LINE for line in lines[2:-1])


def test_a_frame_cut_short_or_changed_is_refused():
    lines = list(outfile.frame(b"hello world" * 10_000))
    with pytest.raises(outfile.OutputError, match="cut short"):
        outfile.unframe(lines[:-1])
    changed = [lines[0], lines[1].replace("a", "b", 1), *lines[2:]]
    with pytest.raises(outfile.OutputError, match="do not match"):
        outfile.unframe(changed)
    with pytest.raises(outfile.OutputError, match="no whole output frame"):
        outfile.unframe(["just a log line"])


def test_a_file_over_the_bound_is_refused_naming_both_sizes(tmp_path):
    (tmp_path / "out.json").write_bytes(b"1" * 2049)
    with pytest.raises(outfile.OutputError, match=r"is 2049 bytes, over this executor's limit of 2048 bytes"):
        outfile.read(tmp_path / "out.json", 2048)
    assert outfile.read(tmp_path / "missing.json", 2048) is None


def test_file_output_follows_the_termination_message_rules():
    assert diagnosis.file_output(b'[1, "a", {"k": [true]}]\n').values == (1, "a", '{"k": [true]}')
    assert diagnosis.file_output(b'{"answer": 42}').values == ('{"answer": 42}',)
    text = diagnosis.file_output(b"not json at all")
    assert text.values == ("not json at all",) and "not valid JSON" in text.notes[0]


def test_an_out_json_that_is_a_symbolic_link_is_refused(tmp_path):
    (tmp_path / "environ").write_text("SECRET=x")
    (tmp_path / "out.json").symlink_to(tmp_path / "environ")
    with pytest.raises(outfile.OutputError, match="not a regular file"):
        outfile.read(tmp_path / "out.json", 1024)
