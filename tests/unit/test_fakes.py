"""The in-memory peers behave like the real ones where the runtime depends on it.

Colonies facts come from the v1.9.12 server's source (see tests/fakes/colonies*.py);
Kubernetes facts from the Job controller, garbage collector, TTL controller and kubelet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from colonies_operator.colonies import errors
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import ExecutorState, ProcessState
from colonies_operator.jobs import builder
from colonies_operator.runtime.kube import Conflict, Gone, KubeError, NotFound
from colonies_operator.runtime.watch import JobWatch

from tests.fakes import ManualClock
from tests.fakes.colonies import FakeColoniesClient, FakeColoniesServer, FakeConnection
from tests.fakes.kube import FakeKube

COLONY, TYPE = "dev", "kube"


async def settle(rounds: int = 20) -> None:
    """Let tasks started by the test run as far as they can (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# --- Colonies ------------------------------------------------------------------------------------

@dataclass
class Colony:
    server: FakeColoniesServer
    owner: FakeColoniesClient
    user: FakeColoniesClient
    me: FakeColoniesClient
    other: FakeColoniesClient  # a second approved executor of the same type


def colony(**knobs: Any) -> Colony:
    server = FakeColoniesServer(**knobs)
    owner, user, me, other = (Key.generate() for _ in range(4))
    server.add_colony(COLONY, owner)
    server.add_user(COLONY, user, "alice")
    server.add_executor(COLONY, me, "me", TYPE)
    server.add_executor(COLONY, other, "other", TYPE)
    connection = FakeConnection(server)
    return Colony(server, *(connection.client(k) for k in (owner, user, me, other)))


def spec(**conditions: Any) -> dict[str, Any]:
    return {"funcname": "execute", "maxexectime": 60, "maxretries": 3, "maxwaittime": -1,
            "conditions": {"colonyname": COLONY, "executortype": TYPE, **conditions}}


async def test_assign_matches_cpu_and_memory_per_container_not_per_job():
    c = colony()
    submitted = await c.user.submit(spec(cpu="500m", mem="1Gi", nodes=4, processespernode=2))
    assert await c.me.assign(COLONY, -1, available_cpu="499m", available_mem="8Gi") is None
    assert await c.me.assign(COLONY, -1, available_cpu="500m", available_mem="1023Mi") is None
    got = await c.me.assign(COLONY, -1, available_cpu="500m", available_mem="1Gi")
    assert got is not None and got.processid == submitted.processid and got.state is ProcessState.RUNNING


async def test_cpu_without_m_is_zero_and_negative_capacity_matches_not_even_unconditioned_processes():
    c = colony()
    await c.user.submit(spec(cpu="100m"))
    bare = await c.user.submit(spec())
    assert await c.me.assign(COLONY, -1, available_cpu="-1m") is None
    assert await c.me.assign(COLONY, -1, available_mem="-1Mi") is None
    got = await c.me.assign(COLONY, -1, available_cpu="4")  # "4" reads as 0 millicores
    assert got is not None and got.processid == bare.processid
    with pytest.raises(errors.BadRequest, match='parsing "1GB": invalid syntax'):
        await c.me.assign(COLONY, -1, available_mem="1GB")


async def test_every_assign_marks_the_executor_alive_even_when_paused_or_empty():
    clock = ManualClock(1_800_000_000.0)
    c = colony(clock=clock)
    assert c.server.lastheard("me") == 0
    assert await c.me.assign(COLONY, -1) is None
    assert c.server.lastheard("me") // 10**9 == clock.now
    clock.advance(5)
    c.server.pause_assignments(COLONY)
    with pytest.raises(errors.ColoniesHTTPError):
        await c.me.assign(COLONY, -1)
    assert c.server.lastheard("me") // 10**9 == clock.now
    assert (await c.me.get_executor(COLONY, "me")).lastheardfromtime.timestamp() == pytest.approx(clock.now)


async def test_paused_assignments_answer_408_to_a_long_poll_and_503_to_one_try():
    c = colony()
    await c.owner.pause_assignments(COLONY)
    with pytest.raises(errors.AssignmentsPaused) as once:
        await c.me.assign(COLONY, -1)
    assert (once.value.status, once.value.message) == (503, "No processes available: colony assignments are paused")
    poll = asyncio.create_task(c.me.assign(COLONY, 10))
    await settle()
    c.server.expire_waits()
    with pytest.raises(errors.AssignmentsPaused) as waited:
        await poll
    assert (waited.value.status, waited.value.message) == (408, "Assignment timeout: colony assignments are paused")


async def test_resuming_wakes_a_paused_long_poll_which_then_assigns():
    c = colony()
    submitted = await c.user.submit(spec())
    c.server.pause_assignments(COLONY)
    poll = asyncio.create_task(c.me.assign(COLONY, 10))
    await settle()
    assert not poll.done()
    await c.owner.resume_assignments(COLONY)
    assert (await asyncio.wait_for(poll, 1)).processid == submitted.processid


async def test_a_long_poll_is_woken_by_a_submission_and_answers_none_when_its_time_is_up():
    c = colony(timeout_scale=0.001)
    poll = asyncio.create_task(c.me.assign(COLONY, 30))
    await settle()
    submitted = await c.user.submit(spec())
    assert (await asyncio.wait_for(poll, 1)).processid == submitted.processid
    assert await asyncio.wait_for(c.me.assign(COLONY, 2), 1) is None  # 2 s × 0.001
    with pytest.raises(ValueError):  # the real client refuses 0 before sending; the server would answer 400
        await c.me.assign(COLONY, 0)


async def test_removing_an_executor_requeues_its_work_with_retries_unchanged_and_wakes_no_one():
    c = colony()
    submitted = await c.user.submit(spec())
    assert await c.me.assign(COLONY, -1) is not None
    waiting = asyncio.create_task(c.other.assign(COLONY, 10))
    await settle()
    await c.owner.remove_executor(COLONY, "me")
    await settle()
    assert not waiting.done()  # a bare UPDATE: no event reached the waiting poll
    process = await c.user.get_process(submitted.processid)
    assert (process.state, process.retries, process.assignedexecutorid, process.isassigned, process.starttime) == (
        ProcessState.WAITING, 0, "", False, None)
    assert (await c.user.get_executor(COLONY, "me")).state is ExecutorState.UNREGISTERED
    with pytest.raises(errors.Forbidden, match="not a member of Colony with name <dev>"):
        await c.me.assign(COLONY, -1)
    with pytest.raises(errors.BadRequest, match="Executor with name <me> in Colony <dev> already exists"):
        await c.owner.add_executor(COLONY, Key.generate().id, "me", TYPE)
    c.server.expire_waits()
    assert await waiting is None


async def test_with_reregistering_allowed_adding_a_taken_name_replaces_the_executor():
    c = colony(allow_reregister=True)
    await c.user.submit(spec())
    assert await c.me.assign(COLONY, -1) is not None
    new = Key.generate()
    added = await c.owner.add_executor(COLONY, new.id, "me", TYPE)
    assert (added.executorid, added.state) == (new.id, ExecutorState.PENDING)
    assert [p.retries for p in await c.user.get_processes(COLONY, ProcessState.WAITING)] == [0]


async def test_unassign_bumps_retries_and_sends_waiting_with_the_servers_stale_snapshot():
    c = colony()
    events = []

    async def listen() -> None:
        async for process in c.other.subscribe_processes(COLONY, TYPE, ProcessState.WAITING, timeout=60):
            events.append(process)

    submitted = await c.user.submit(spec() | {"maxretries": 1})
    got = await c.me.assign(COLONY, -1)
    listener = asyncio.create_task(listen())
    await settle()
    c.server.unassign(submitted.processid)
    await settle()
    assert [(e.state, e.retries, e.assignedexecutorid, e.isassigned) for e in events] == [
        (ProcessState.WAITING, 0, c.me.id, False)]  # what the server held in memory, not the table
    stored = await c.user.get_process(submitted.processid)
    assert (stored.state, stored.retries, stored.assignedexecutorid) == (ProcessState.WAITING, 1, "")
    with pytest.raises(errors.Forbidden, match="process is not assigned"):
        await c.me.close_successful(got.processid)
    await c.me.assign(COLONY, -1)
    c.server.unassign(submitted.processid)  # retries (1) reached maxretries (1): failed instead
    failed = await c.user.get_process(submitted.processid)
    assert (failed.state, failed.errors) == (ProcessState.FAILED, ("Maximum execution time limit exceeded",))
    c.server.expire_waits()
    await listener


async def test_a_cancelled_process_refuses_its_executors_close_fail_and_logs():
    c = colony()
    submitted = await c.user.submit(spec())
    await c.me.assign(COLONY, -1)
    await c.user.cancel(submitted.processid)
    assert (await c.user.get_process(submitted.processid)).state is ProcessState.CANCELLED
    with pytest.raises(errors.BadRequest, match="Tried to set cancelled process as successful"):
        await c.me.close_successful(submitted.processid, ["out"])
    with pytest.raises(errors.BadRequest, match="Tried to set cancelled process as failed"):
        await c.me.close_failed(submitted.processid, ["boom"])
    with pytest.raises(errors.Forbidden, match="process is not running"):
        await c.me.add_log(submitted.processid, "late line\n")


async def test_only_the_assigned_executor_may_close_and_a_success_cannot_become_a_failure():
    c = colony()
    submitted = await c.user.submit(spec())
    with pytest.raises(errors.Forbidden, match="process is not assigned"):
        await c.me.close_successful(submitted.processid)
    await c.me.assign(COLONY, -1)
    with pytest.raises(errors.Forbidden, match="not allowed to close process as successful"):
        await c.other.close_successful(submitted.processid)
    await c.me.close_successful(submitted.processid, [1, {"a": "b"}])
    await c.me.close_successful(submitted.processid)  # again: no guard, 200
    with pytest.raises(errors.BadRequest, match="Tried to set successful process as failed"):
        await c.me.close_failed(submitted.processid, ["late"])
    assert (await c.user.get_process(submitted.processid)).output == (1, {"a": "b"})
    with pytest.raises(errors.NotFound):  # 500 "... process is nil" reads as NotFound
        await c.me.close_successful("0" * 64)


async def test_nul_in_a_log_and_nan_in_an_output_are_bad_requests():
    c = colony(refuse_log=lambda text: "\x00" in text or "forbidden" in text)
    submitted = await c.user.submit(spec())
    await c.me.assign(COLONY, -1)
    with pytest.raises(errors.BadRequest, match="0x00"):
        await c.me.add_log(submitted.processid, "a\x00b\n")
    with pytest.raises(errors.BadRequest):
        await c.me.add_log(submitted.processid, "forbidden\n")
    with pytest.raises(errors.BadRequest, match="invalid JSON"):
        await c.me.close_successful(submitted.processid, [float("nan")])
    with pytest.raises(errors.BadRequest, match="invalid JSON"):
        await c.me.set_output(submitted.processid, [float("inf")])
    assert await c.user.get_logs(COLONY, submitted.processid) == []


async def test_logs_get_strictly_increasing_ns_and_page_by_since_and_latest():
    c = colony(clock=ManualClock(1_800_000_000.0))
    submitted = await c.user.submit(spec())
    await c.me.assign(COLONY, -1)
    for i in range(5):
        await c.me.add_log(submitted.processid, f"line {i}\n")
    every = await c.user.get_logs(COLONY, submitted.processid)
    stamps = [e.timestamp for e in every]
    assert stamps == sorted(set(stamps)) and [e.executorname for e in every] == ["me"] * 5
    after = await c.user.get_logs(COLONY, submitted.processid, since=stamps[2])
    assert [e.message for e in after] == ["line 3\n", "line 4\n"]
    latest = await c.user.get_logs(COLONY, submitted.processid, count=2, latest=True)
    assert [e.message for e in latest] == ["line 3\n", "line 4\n"]
    assert len(await c.user.get_all_logs(COLONY, submitted.processid)) == 5
    with pytest.raises(errors.Forbidden, match="Count exceeds max log count"):
        await c.user._call("getlogsmsg", colonyname=COLONY, processid=submitted.processid, executorname="",
                           count=501, since=0, latest=False)


async def test_specs_are_echoed_normalised_as_the_server_stores_them():
    c = colony()
    sent = spec(cpu="2", mem="1Gi", executornames=["*"], whatever=1)
    sent.update(kwargs={"cmd": "echo"}, unknown="dropped", env={"A": "1"})
    process = await c.user.submit(sent)
    raw = process.spec.raw
    assert raw["conditions"]["cpu"] == "0m" and raw["conditions"]["mem"] == "1024Mi"
    assert raw["conditions"]["executornames"] == [] and "whatever" not in raw["conditions"]
    assert "unknown" not in raw and raw["kwargs"] == {"cmd": "echo"} and raw["env"] == {"A": "1"}
    assert process.initiatorname == "alice" and len(process.processid) == 64
    with pytest.raises(errors.BadRequest, match="invalid JSON"):
        await c.user.submit(spec(nodes="two"))
    with pytest.raises(errors.BadRequest, match="priority outside range"):
        await c.user.submit({**spec(), "priority": 50001})


async def test_running_processes_are_listed_oldest_first_and_counts_over_100_are_refused():
    c = colony()
    for _ in range(3):
        await c.user.submit(spec())
    first = await c.me.assign(COLONY, -1)
    second = await c.other.assign(COLONY, -1)
    running = await c.user.get_processes(COLONY, ProcessState.RUNNING, executor_type=TYPE)
    assert [p.processid for p in running] == [first.processid, second.processid]
    assert running[0].starttime < running[1].starttime
    with pytest.raises(errors.BadRequest, match="MaxCount"):
        await c.user.get_processes(COLONY, ProcessState.RUNNING, count=101)


async def test_owners_manage_executors_members_read_and_executors_update_only_themselves():
    c = colony()
    with pytest.raises(errors.Forbidden, match="not colony owner"):
        await c.user.approve_executor(COLONY, "me")
    with pytest.raises(errors.Forbidden, match="not a member"):
        await c.owner.get_executor(COLONY, "me")  # the colony key is not a member
    with pytest.raises(errors.NotFound):  # 500 "executor is nil"
        await c.user.get_executor(COLONY, "nobody")
    await c.me.update_executor(COLONY, "me", {"hardware": [{"model": "x"}], "software": []})
    with pytest.raises(errors.BadRequest, match="Only an executor can update its own capabilities"):
        await c.other.update_executor(COLONY, "me", {"hardware": []})
    with pytest.raises(errors.Forbidden, match="another executor"):
        await c.other.add_function(COLONY, "me", "execute", TYPE)
    await c.me.add_function(COLONY, "me", "execute", TYPE)
    assert [f["funcname"] for f in await c.me.get_functions(COLONY, "me")] == ["execute"]


async def test_a_submission_wakes_exactly_one_general_listener_unless_events_are_broadcast():
    for broadcast, expected in ((False, 1), (True, 2)):
        c = colony(broadcast_events=broadcast)
        seen = []

        async def listen() -> None:
            async for process in c.me.subscribe_processes(COLONY, TYPE, ProcessState.WAITING, timeout=60):
                seen.append(process.processid)

        listener = asyncio.create_task(listen())
        poll = asyncio.create_task(c.other.assign(COLONY, 60))
        await settle()
        await c.user.submit(spec())
        await settle()
        assert len(seen) + poll.done() == expected  # the subscription and the long poll share the wakeup
        c.server.expire_waits()
        await asyncio.gather(listener, poll)


async def test_subscriptions_end_when_expired_and_fail_to_connect_while_down():
    c = colony()
    seen = []

    async def listen() -> None:
        async for process in c.me.subscribe_processes(COLONY, TYPE, ProcessState.CANCELLED, timeout=60):
            seen.append(process.state)

    listener = asyncio.create_task(listen())
    await settle()
    submitted = await c.user.submit(spec())
    await c.user.cancel(submitted.processid)
    await settle()
    c.server.set_subscriptions_down(True)
    await asyncio.wait_for(listener, 1)  # ends without an error, as a closed socket does
    assert seen == [ProcessState.CANCELLED]
    with pytest.raises(errors.ColoniesUnreachable):
        async for _ in c.me.subscribe_processes(COLONY, TYPE, ProcessState.CANCELLED, timeout=60):
            pass
    c.server.set_subscriptions_down(False)
    with pytest.raises(errors.BadRequest, match="executor not found"):  # a user may not subscribe
        async for _ in c.user.subscribe_processes(COLONY, TYPE, ProcessState.CANCELLED, timeout=60):
            pass


async def test_injected_failures_and_a_lost_assign_reply():
    c = colony()
    submitted = await c.user.submit(spec())
    c.server.fail_next("assign", errors.ColoniesUnreachable("fake", 1, 0.0, "refused"))
    with pytest.raises(errors.ColoniesUnreachable):
        await c.me.assign(COLONY, -1)
    assert (await c.user.get_process(submitted.processid)).state is ProcessState.WAITING
    c.server.lose_next_assign_reply()
    with pytest.raises(errors.ColoniesUnreachable):
        await c.me.assign(COLONY, -1)
    lost = await c.user.get_process(submitted.processid)
    assert (lost.state, lost.assignedexecutorid) == (ProcessState.RUNNING, c.me.id)
    assert c.server.calls["assign"] == 2
    assert c.me.connection.calls[("assignprocessmsg", "unreachable")] == 2


async def test_maxexectime_and_maxwaittime_pass_on_the_clock():
    clock = ManualClock(1_800_000_000.0)
    c = colony(clock=clock)
    running = await c.user.submit(spec() | {"maxexectime": 10})
    waiting = await c.user.submit(spec() | {"maxwaittime": 5, "maxexectime": -1})
    await c.me.assign(COLONY, -1, available_cpu="0m")
    clock.advance(12)
    c.server.sweep_timeouts()
    assert (await c.user.get_process(running.processid)).retries == 1
    after = await c.user.get_process(waiting.processid)
    assert (after.state, after.errors) == (ProcessState.FAILED, ("Maximum waiting time limit exceeded",))


# --- Kubernetes ----------------------------------------------------------------------------------

NS = "work"
MANAGED = {builder.MANAGED_BY_LABEL: builder.MANAGED_BY}


def job(name: str = "j", *, nodes: int = 1, ttl: int | None = None, suspend: bool = False,
        containers: tuple[str, ...] = ("main",)) -> dict[str, Any]:
    spec: dict[str, Any] = {"backoffLimit": 0, "parallelism": nodes, "completions": nodes, "suspend": suspend,
                            "template": {"metadata": {"labels": dict(MANAGED)}, "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": c, "image": "busybox:1.36",
                                                "terminationMessagePolicy": "FallbackToLogsOnError"}
                                               for c in containers]}}}
    if nodes > 1:
        spec["completionMode"] = "Indexed"
    if ttl is not None:
        spec["ttlSecondsAfterFinished"] = ttl
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": dict(MANAGED)}, "spec": spec}


def condition_types(kube: FakeKube, name: str = "j") -> list[str]:
    found = kube.get("Job", NS, name)
    return [c["type"] for c in (found or {}).get("status", {}).get("conditions", []) if c["status"] == "True"]


async def test_a_jobs_pods_are_named_labelled_and_owned_as_the_job_controller_does():
    kube = FakeKube()
    created = await kube.create_job(NS, job("single"))
    await kube.create_job(NS, job("multi", nodes=2))
    [pod] = kube.kubelet.pods("single")
    meta = pod["metadata"]
    assert meta["name"].startswith("single-") and len(meta["name"]) == len("single-") + 5
    assert meta["labels"]["batch.kubernetes.io/job-name"] == meta["labels"]["job-name"] == "single"
    assert meta["labels"][builder.MANAGED_BY_LABEL] == builder.MANAGED_BY
    assert meta["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "single",
                                        "uid": created["metadata"]["uid"], "controller": True,
                                        "blockOwnerDeletion": True}]
    assert (pod["status"]["phase"], pod["spec"]["nodeName"]) == ("Pending", "fake-node-0")
    multi = kube.kubelet.pods("multi")
    assert [p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in multi] == ["0", "1"]
    assert [p["metadata"]["name"][: len("multi-0-")] for p in multi] == ["multi-0-", "multi-1-"]
    assert (await kube.list_pods(NS, "job-name=multi"))["items"][0]["metadata"]["labels"]["job-name"] == "multi"


async def test_success_and_failure_set_their_target_condition_before_the_final_one():
    kube = FakeKube()
    await kube.create_job(NS, job("ok"))
    await kube.create_job(NS, job("bad"))
    kube.kubelet.start("ok")
    kube.kubelet.succeed("ok", termination_message='["result"]')
    kube.kubelet.fail("bad", exit_code=3)
    seen = {name: [c["type"] for c in obj["status"].get("conditions", [])]
            for _, kind, _, obj in kube.history if kind == "Job" for name in [obj["metadata"]["name"]]}
    assert condition_types(kube, "ok") == ["SuccessCriteriaMet", "Complete"] and seen["ok"][-1] == "Complete"
    assert condition_types(kube, "bad") == ["FailureTarget", "Failed"]
    first_target = next(i for i, (_, k, _, o) in enumerate(kube.history)
                        if k == "Job" and o["metadata"]["name"] == "bad" and o["status"].get("conditions"))
    assert [c["type"] for c in kube.history[first_target][3]["status"]["conditions"]] == ["FailureTarget"]
    [ok] = kube.kubelet.pods("ok")
    assert ok["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == '["result"]'


async def test_a_failed_container_gets_its_log_tail_as_message_and_oom_is_137():
    kube = FakeKube()
    await kube.create_job(NS, job("a"))
    await kube.create_job(NS, job("b"))
    kube.kubelet.start("a")
    kube.kubelet.log("a", ["first", "last words"])
    kube.kubelet.fail("a", exit_code=2)
    kube.kubelet.start("b")
    kube.kubelet.fail("b", oom=True)
    [a], [b] = kube.kubelet.pods("a"), kube.kubelet.pods("b")
    assert a["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "first\nlast words\n"
    assert b["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    assert b["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "OOMKilled"


async def test_foreground_deletion_keeps_the_job_until_its_pods_are_gone():
    kube = FakeKube(termination_grace=True)
    await kube.create_job(NS, job())
    kube.kubelet.start("j")
    assert await kube.delete_job(NS, "j") is True
    held = kube.get("Job", NS, "j")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in held["metadata"]["finalizers"]
    [pod] = kube.kubelet.pods("j")
    assert pod["metadata"]["deletionTimestamp"] and pod["status"]["phase"] == "Running"
    assert kube.counter.counts[("delete", "jobs", 200)] == 1
    kube.kubelet.finish_termination(pod["metadata"]["name"])
    assert kube.get("Job", NS, "j") is None and kube.get("Pod", NS, pod["metadata"]["name"]) is None
    assert [e for _, k, e, _ in kube.history if k == "Job"][-1] == "DELETED"
    assert await kube.delete_job(NS, "j") is False


async def test_background_deletion_removes_the_job_at_once_and_its_pods_after():
    kube = FakeKube(termination_grace=True)
    await kube.create_job(NS, job())
    kube.kubelet.start("j")
    [pod] = kube.kubelet.pods("j")
    await kube.delete_job(NS, "j", propagation="Background")
    assert kube.get("Job", NS, "j") is None
    assert kube.get("Pod", NS, pod["metadata"]["name"])["metadata"]["deletionTimestamp"]
    kube.kubelet.finish_termination()
    assert kube.kubelet.terminating() == []


async def test_ttl_deletes_a_finished_job_at_once_for_zero_and_after_its_seconds_otherwise():
    clock = ManualClock(1_800_000_000.0)
    kube = FakeKube(clock=clock)
    await kube.create_job(NS, job("now", ttl=0))
    await kube.create_job(NS, job("later", ttl=30))
    kube.kubelet.succeed("now")
    kube.kubelet.succeed("later")
    assert kube.get("Job", NS, "now") is None
    clock.advance(29)
    kube.jobs.ttl_sweep()
    assert kube.get("Job", NS, "later") is not None
    clock.advance(1)
    kube.jobs.ttl_sweep()
    assert kube.get("Job", NS, "later") is None


async def test_a_watch_serves_events_after_its_resource_version_and_410_once_compacted():
    kube = FakeKube()
    await kube.create_job(NS, job("a"))
    listed = await kube.list_jobs(NS, "")
    await kube.annotate_job(NS, "a", {"x": "1"})
    await kube.create_job(NS, {**job("other"), "metadata": {"name": "other", "labels": {"team": "b"}}})
    events = []
    async for event in kube.watch("Job", NS, "app.kubernetes.io/managed-by=colonies-operator",
                                  listed["metadata"]["resourceVersion"]):
        events.append((event["type"], event["object"]["metadata"]["name"],
                       event["object"]["metadata"].get("annotations", {}).get("x")))
        if len(events) == 1:
            kube.end_watches()
    assert events[0] == ("MODIFIED", "a", "1")
    kube.compact()
    with pytest.raises(Gone):
        async for _ in kube.watch("Job", NS, "", listed["metadata"]["resourceVersion"]):
            pass


async def test_a_change_made_while_a_watcher_handles_an_event_still_reaches_it():
    kube = FakeKube()
    await kube.create_job(NS, job())
    since = str(kube.rv)
    await kube.annotate_job(NS, "j", {"n": "1"})
    seen: list[str] = []

    async def watch() -> None:
        async for event in kube.watch("Job", NS, "", since):
            seen.append(event["object"]["metadata"]["annotations"]["n"])
            if len(seen) == 1:
                await kube.annotate_job(NS, "j", {"n": "2"})  # written while the stream is yielding
            else:
                return

    await asyncio.wait_for(watch(), 1)
    assert seen == ["1", "2"]


async def test_an_apiserver_restart_breaks_streams_and_refuses_calls_until_up():
    kube = FakeKube()
    await kube.create_job(NS, job())

    async def watch() -> None:
        async for _ in kube.watch("Pod", NS, "", str(kube.rv)):
            pass

    stream = asyncio.create_task(watch())
    await settle()
    kube.down()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await stream
    with pytest.raises(aiohttp.ClientConnectionError):
        await kube.get_job(NS, "j")
    kube.up()
    assert (await kube.get_job(NS, "j"))["metadata"]["name"] == "j"


async def test_refusals_raise_the_real_error_types_and_every_call_is_counted():
    kube = FakeKube()
    await kube.create_job(NS, job())
    with pytest.raises(Conflict, match='jobs.batch "j" already exists'):
        await kube.create_job(NS, job())
    with pytest.raises(NotFound):
        await kube.annotate_job(NS, "missing", {"a": "b"})
    assert await kube.get_job(NS, "missing") is None
    kube.fail_next("create_job", KubeError(500, "InternalError", "etcd timeout"))
    with pytest.raises(KubeError):
        await kube.create_job(NS, job("k"))
    with pytest.raises(KubeError, match="immutable"):
        await kube.patch_job(NS, "j", {"spec": {"template": {}}})
    assert kube.counter.counts == {("post", "jobs", 201): 1, ("post", "jobs", 409): 1, ("patch", "jobs", 404): 1,
                                   ("get", "jobs", 404): 1, ("post", "jobs", 500): 1, ("patch", "jobs", 422): 1}


async def test_refused_pods_show_as_failed_create_events_until_accepted():
    kube = FakeKube()
    await kube.create_job(NS, job(suspend=True))
    kube.jobs.refuse_pods("j", 'pods "j-x" is forbidden: exceeded quota: q')
    await kube.patch_job(NS, "j", {"spec": {"suspend": False}})
    assert kube.kubelet.pods("j") == []
    events = await kube.list_events(NS, "involvedObject.name=j,reason=FailedCreate")
    [event] = events["items"]
    assert event["type"] == "Warning"
    assert event["message"] == 'Error creating: pods "j-x" is forbidden: exceeded quota: q'
    assert event["involvedObject"]["kind"] == "Job"
    kube.jobs.accept_pods("j")
    assert len(kube.kubelet.pods("j")) == 1


async def test_a_suspended_job_has_no_pods_and_suspending_deletes_them():
    kube = FakeKube()
    await kube.create_job(NS, job(suspend=True))
    assert kube.kubelet.pods("j") == [] and condition_types(kube) == ["Suspended"]
    await kube.patch_job(NS, "j", {"spec": {"suspend": False}})
    assert len(kube.kubelet.pods("j")) == 1 and condition_types(kube) == []
    await kube.patch_job(NS, "j", {"spec": {"suspend": True}})
    assert kube.kubelet.pods("j") == [] and kube.get("Job", NS, "j")["status"].get("failed", 0) == 0


async def test_a_follow_stream_yields_new_lines_until_its_container_terminates():
    kube = FakeKube()
    await kube.create_job(NS, job())
    kube.kubelet.start("j")
    [pod] = kube.kubelet.pods("j")
    kube.kubelet.log("j", ["one"])
    lines: list[bytes] = []

    async def follow() -> None:
        async for line in kube.pod_log(NS, pod["metadata"]["name"], "main", follow=True):
            lines.append(line)

    stream = asyncio.create_task(follow())
    await settle()
    kube.kubelet.log("j", ["two"])
    await settle()
    assert [line.split(b" ", 1)[1] for line in lines] == [b"one", b"two"] and not stream.done()
    kube.kubelet.succeed("j")
    await asyncio.wait_for(stream, 1)
    assert lines[0].split(b" ")[0].endswith(b"Z")


async def test_an_endless_follow_stream_outlives_its_container_and_times_out_reading():
    kube = FakeKube(endless_follow=True, timeout_scale=0.001)
    await kube.create_job(NS, job())
    kube.kubelet.start("j")
    [pod] = kube.kubelet.pods("j")
    kube.kubelet.succeed("j")
    with pytest.raises(aiohttp.ServerTimeoutError):  # read_timeout 5 s × 0.001
        async for _ in kube.pod_log(NS, pod["metadata"]["name"], "main", follow=True, read_timeout=5):
            pass


async def test_since_time_serves_lines_from_the_start_of_that_second():
    kube = FakeKube()
    await kube.create_job(NS, job())
    kube.kubelet.start("j")
    [pod] = kube.kubelet.pods("j")
    kube.kubelet.log("j", ["early"], at=1_800_000_000.9)
    kube.kubelet.log("j", ["same second", "twin"], at=1_800_000_001.5)
    kube.kubelet.log("j", ["later"], at=1_800_000_002.0)
    since = "2027-01-15T08:00:01Z"  # 1_800_000_001
    got = [line async for line in kube.pod_log(NS, pod["metadata"]["name"], "main", follow=False, since_time=since)]
    assert [line.split(b" ", 1)[1] for line in got] == [b"same second", b"twin", b"later"]
    assert got[0].split(b" ")[0] == got[1].split(b" ")[0] == b"2027-01-15T08:00:01.5Z"


async def test_logs_are_refused_for_a_missing_pod_an_unknown_container_or_one_not_started():
    kube = FakeKube()
    await kube.create_job(NS, job())
    [pod] = kube.kubelet.pods("j")
    name = pod["metadata"]["name"]
    with pytest.raises(NotFound):
        async for _ in kube.pod_log(NS, "gone", "main", follow=False):
            pass
    with pytest.raises(KubeError, match="is not valid for pod"):
        async for _ in kube.pod_log(NS, name, "sidecar", follow=False):
            pass
    kube.kubelet.wait("j", "ErrImagePull", "manifest unknown")
    with pytest.raises(KubeError, match="is waiting to start: ErrImagePull") as refused:
        async for _ in kube.pod_log(NS, name, "main", follow=False):
            pass
    assert refused.value.status == 400 and kube.counter.counts[("log", "pods/log", 400)] == 2


async def test_the_real_job_watch_follows_jobs_and_pods_and_relists_after_a_410():
    kube = FakeKube()
    watch = JobWatch(kube, NS)
    await asyncio.wait_for(watch.start(), 1)
    woken = watch.subscribe("j")
    await kube.create_job(NS, job())
    kube.kubelet.start("j")
    await settle()
    current, pods = watch.state("j")
    assert woken.is_set() and current is not None and [p["status"]["phase"] for p in pods] == ["Running"]
    relists = watch.relists
    kube.end_watches(gone=True)
    kube.kubelet.succeed("j")
    await settle(50)
    current, pods = watch.state("j")
    assert watch.relists > relists
    assert "Complete" in [c["type"] for c in current["status"]["conditions"]]
    assert [p["status"]["phase"] for p in pods] == ["Succeeded"]
    await watch.stop()
