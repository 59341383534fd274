"""Models accept what the server echoes: normalised units, nulls, zero times."""

from colonies_operator.colonies.models import (
    FunctionSpec, Process, ProcessState, parse_time, server_cpu_millis, server_mem_bytes,
)


def test_normalised_quantities_read_as_the_server_reads_them():
    assert server_cpu_millis("500m") == 500
    assert server_cpu_millis("0m") == 0
    assert server_cpu_millis("2") == 0  # the server's own rule: no "m", no millicores
    assert server_mem_bytes("1024Mi") == 1024**3
    assert server_mem_bytes("0Mi") == 0
    assert server_mem_bytes("") == 0


def test_a_process_as_the_server_sends_it():
    process = Process.from_json({
        "processid": "ab" * 32, "state": 2, "isassigned": True, "retries": 1,
        "errors": None, "out": [{"k": 1}, 2, "three"], "in": None, "parents": None,
        "submissiontime": "2026-11-25T00:16:06.933898172+01:00", "endtime": "0001-01-01T01:12:12+01:12",
        "spec": {"funcname": "execute", "kwargs": {"docker-image": "busybox"}, "env": None,
                 "conditions": {"executornames": None, "cpu": "0m", "mem": "1024Mi", "gpu": {"count": 1, "name": "a100"}}},
    })
    assert process.state is ProcessState.SUCCESS
    assert process.output == ({"k": 1}, 2, "three")
    assert process.errors == () and process.input == ()
    assert process.submissiontime is not None and process.submissiontime.utcoffset().total_seconds() == 3600
    assert process.endtime is None
    assert process.spec.conditions.gpu.count == 1 and process.spec.conditions.mem == "1024Mi"
    assert process.spec.raw["kwargs"] == {"docker-image": "busybox"}


def test_a_new_spec_never_sends_maxexectime_zero():
    body = FunctionSpec(funcname="execute").to_json()
    assert body["maxexectime"] == -1


def test_unknown_fields_and_states_do_not_break_parsing():
    process = Process.from_json({"processid": "p", "state": 99, "somethingnew": {"x": 1}})
    assert process.state is ProcessState.WAITING and process.spec.funcname == ""
    assert parse_time("garbage") is None


def test_junk_where_objects_or_numbers_belong_parses_to_defaults_and_keeps_the_raw_spec():
    process = Process.from_json({"processid": "p", "state": "x", "spec": {
        "conditions": "not an object", "kwargs": ["x"], "env": 3, "maxexectime": "soon"}})
    assert process.spec.conditions.nodes == 0 and process.spec.kwargs == {} and process.spec.maxexectime == 0
    assert process.spec.raw["conditions"] == "not an object"
    spec = FunctionSpec.from_json({"conditions": {"gpu": "many", "nodes": "two"}})
    assert spec.conditions.gpu.count == 0 and spec.conditions.nodes == 0
