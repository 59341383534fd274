"""The client against a real Colonies v1.9.12 server: every call an executor makes."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import httpx
import pytest

from colonies_operator.colonies import crypto, errors
from colonies_operator.colonies.client import envelope
from colonies_operator.colonies.models import ExecutorState, ProcessState
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def spec(colony: str, executor_type: str, **overrides) -> dict:
    body = {
        "funcname": "execute",
        "kwargs": {"docker-image": "busybox", "cmd": "echo", "args": ["hi"]},
        "conditions": {"colonyname": colony, "executortype": executor_type, "cpu": "500m", "mem": "256Mi",
                       "nodes": 1, "processespernode": 1, "walltime": 60},
        "maxwaittime": -1, "maxexectime": -1, "maxretries": 0,
    }
    body.update(overrides)
    return body


async def test_the_server_accepts_our_signed_calls_and_refuses_a_tampered_signature(colonies):
    user = colonies.user
    assert (await user.get_processes(colonies.colony, ProcessState.WAITING)) is not None
    body = json.loads(envelope("getprocessesmsg", {"colonyname": colonies.colony, "state": 0, "count": 1}, user.key))
    signature = body["signature"]
    body["signature"] = ("1" if signature[0] != "1" else "2") + signature[1:]
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{colonies.url}/api", content=json.dumps(body))
    assert response.status_code == 403
    message = json.loads(base64.b64decode(json.loads(response.text)["payload"]))["message"]
    assert "Access denied" in message or "signature" in message.lower()


async def test_an_executor_is_registered_approved_and_adds_its_function(colonies, executor):
    registered = await executor.get_executor(colonies.colony, executor.name)
    assert registered.executorid == executor.id and registered.state is ExecutorState.APPROVED
    functions = await executor.get_functions(colonies.colony, executor.name)
    assert [f["funcname"] for f in functions] == ["execute"]


async def test_an_unapproved_executor_is_refused(colonies):
    key = crypto.Key.generate()
    name = f"pending-{uuid.uuid4().hex[:8]}"
    await colonies.owner.add_executor(colonies.colony, key.id, name, "nobody-type")
    try:
        with pytest.raises(errors.Forbidden, match="not a member"):
            await colonies.connection.client(key).assign(colonies.colony, -1)
    finally:
        await colonies.owner.remove_executor(colonies.colony, name)


async def test_too_small_capacity_leaves_the_process_waiting_and_enough_assigns_it(colonies, executor):
    submitted = await colonies.user.submit(spec(colonies.colony, executor.type, conditions={
        "colonyname": colonies.colony, "executortype": executor.type, "cpu": "1000m", "mem": "2Gi"}))
    assert await executor.assign(colonies.colony, -1, available_cpu="999m", available_mem="8Gi") is None
    assert await executor.assign(colonies.colony, -1, available_cpu="4000m", available_mem="2047Mi") is None
    assert (await colonies.user.get_process(submitted.processid)).state is ProcessState.WAITING
    assigned = await executor.assign(colonies.colony, -1, available_cpu="1000m", available_mem="2048Mi")
    assert assigned is not None and assigned.processid == submitted.processid
    assert assigned.state is ProcessState.RUNNING and assigned.assignedexecutorid == executor.id
    assert assigned.spec.conditions.mem == "2048Mi"  # the server's normalised form
    await executor.close_successful(assigned.processid)


async def test_log_lines_come_back_in_order_and_close_successful_keeps_the_output(colonies, executor):
    process = await running(colonies, executor)
    lines = [f"line {i}\n" for i in range(30)]
    for line in lines:
        await executor.add_log(process.processid, line)
    logs = await colonies.user.get_all_logs(colonies.colony, process.processid)
    assert [entry.message for entry in logs] == lines
    await executor.close_successful(process.processid, [{"answer": 42}, "text"])
    done = await colonies.user.get_process(process.processid)
    assert done.state is ProcessState.SUCCESS and done.output == ({"answer": 42}, "text")


async def test_close_failed_keeps_the_errors(colonies, executor):
    process = await running(colonies, executor)
    await executor.close_failed(process.processid, ["ExitCode(3): boom", "last lines: x"])
    done = await colonies.user.get_process(process.processid)
    assert done.state is ProcessState.FAILED and done.errors == ("ExitCode(3): boom", "last lines: x")


async def test_a_cancelled_running_process_refuses_further_logs(colonies, executor):
    process = await running(colonies, executor)
    await colonies.user.cancel(process.processid)
    assert (await colonies.user.get_process(process.processid)).state is ProcessState.CANCELLED
    with pytest.raises(errors.Forbidden):
        await executor.add_log(process.processid, "too late\n")


async def test_a_process_past_its_maxexectime_goes_back_to_waiting(colonies, executor):
    submitted = await colonies.user.submit(spec(colonies.colony, executor.type, maxexectime=1, maxretries=3))
    assigned = await executor.assign(colonies.colony, -1)
    assert assigned is not None and assigned.processid == submitted.processid

    async def requeued():
        p = await colonies.user.get_process(submitted.processid)
        return p if p.state is ProcessState.WAITING and p.retries == 1 else None

    back = await wait_for(requeued, timeout=30, what="the server to unassign the process after maxexectime")
    assert not back.isassigned and back.assignedexecutorid == ""
    with pytest.raises(errors.Forbidden):
        await executor.close_successful(submitted.processid)
    await colonies.user.cancel(submitted.processid)


async def test_a_long_poll_assign_returns_the_process_submitted_while_it_waits(colonies, executor):
    events: list[str] = []

    async def poll():
        events.append("assign sent")
        process = await executor.assign(colonies.colony, 30)
        events.append("assign answered")
        return process

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.5)  # let the poll reach the server; the assertion is on order, not time
    events.append("submit sent")
    submitted = await colonies.user.submit(spec(colonies.colony, executor.type))
    process = await task
    # The server may answer the waiting assign before the submit's own reply reaches us: the
    # order that is certain is poll sent, submit sent, poll answered (with that process).
    assert events == ["assign sent", "submit sent", "assign answered"], events
    assert process is not None and process.processid == submitted.processid
    await executor.close_successful(process.processid)


async def test_set_output_then_close_keeps_it(colonies, executor):
    process = await running(colonies, executor)
    await executor.set_output(process.processid, ["partial"])
    await executor.close_successful(process.processid)
    assert (await colonies.user.get_process(process.processid)).output == ("partial",)


async def test_a_workflow_runs_its_steps_in_dependency_order(colonies, executor):
    steps = [
        spec(colonies.colony, executor.type, nodename="first"),
        spec(colonies.colony, executor.type, nodename="second",
             conditions={"colonyname": colonies.colony, "executortype": executor.type, "dependencies": ["first"]}),
    ]
    graph = await colonies.user.submit_workflow(colonies.colony, steps)
    assert len(graph.processids) == 2
    order = []
    for _ in range(2):
        process = await executor.assign(colonies.colony, 10)
        assert process is not None
        order.append(process.spec.nodename)
        await executor.close_successful(process.processid, [process.spec.nodename])
    assert order == ["first", "second"]


async def test_a_subscription_reports_the_process_reaching_a_state(colonies, executor):
    process = await running(colonies, executor)

    async def first_event():
        async for event in colonies.user.subscribe_process(colonies.colony, process.processid,
                                                           ProcessState.SUCCESS, timeout=30):
            return event

    task = asyncio.create_task(first_event())
    await asyncio.sleep(0.5)  # let the subscription register; the assertion is on the event
    await executor.close_successful(process.processid, ["ok"])
    event = await asyncio.wait_for(task, 30)
    assert event.processid == process.processid and event.state is ProcessState.SUCCESS


async def test_removing_the_executor_revokes_its_access(colonies):
    key = crypto.Key.generate()
    name = f"gone-{uuid.uuid4().hex[:8]}"
    await colonies.owner.add_executor(colonies.colony, key.id, name, "gone-type")
    await colonies.owner.approve_executor(colonies.colony, name)
    client = colonies.connection.client(key)
    assert await client.assign(colonies.colony, -1) is None
    await colonies.owner.remove_executor(colonies.colony, name)
    with pytest.raises(errors.Forbidden):
        await client.assign(colonies.colony, -1)


async def running(colonies, executor):
    submitted = await colonies.user.submit(spec(colonies.colony, executor.type))
    process = await executor.assign(colonies.colony, -1)
    assert process is not None and process.processid == submitted.processid
    return process
