"""The hard paths, on the real stack: no process stranded, dropped, run twice or left
RUNNING — waiting for room, pausing, orphans, refused log lines, re-queues, name clashes,
deletion, refused pods, a colony paused on the server, identity edits, a full executor with
a backlog, and two executors sharing one executor type.

Pods are kwok's, steered through funcspec env (KWOK_*). Tests that prove something did not
happen wait for what would have made it happen (heartbeats, long polls) to happen first.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from colonies_operator.colonies import crypto
from colonies_operator.colonies.models import ExecutorState, ProcessState
from tests.fixtures.operator import (
    GROUP, PLURAL, VERSION, Executor, create_colony_key_secret, executor_resource, start_executor,
)
from tests.fixtures.kube import new_namespace
from tests.helpers import wait_for
from tests.integration.recorders import (
    raw_executor, recording, registered, set_colony_assignments,
)

pytestmark = pytest.mark.integration

RUN_LONG = "600s"


async def executor_id(ex: Executor) -> str:
    return await wait_for(lambda: _status(ex, "executorId"), 60, "the executor id in the status")


async def _status(ex: Executor, key: str) -> Any:
    return ((await ex.resource()).get("status") or {}).get(key)


async def colonies_executor(ex: Executor):
    found = await registered(ex.colonies, await executor_id(ex))
    assert found is not None, "the executor is not registered in Colonies"
    return found


async def last_heard(ex: Executor):
    return (await colonies_executor(ex)).lastheardfromtime


async def heard_again(ex: Executor, after, timeout: float):
    """Wait until Colonies has heard from the executor later than `after`; return that time."""
    async def later():
        heard = await last_heard(ex)
        return heard if heard and heard > after else None
    return await wait_for(later, timeout, "Colonies to hear from the executor again", interval=0.5)


async def running(ex: Executor, process_id: str) -> bool:
    pods = await client.CoreV1Api(ex.api).list_namespaced_pod(ex.namespace)
    return any(p.metadata.labels.get("colonyos.io/process") == process_id[:20] and p.status.phase == "Running"
               for p in pods.items)


async def patch_spec(ex: Executor, spec: dict[str, Any]) -> None:
    await client.CustomObjectsApi(ex.api).patch_namespaced_custom_object(
        GROUP, VERSION, ex.namespace, PLURAL, ex.name, {"spec": spec}, _content_type="application/merge-patch+json")


async def condition_reason(ex: Executor, type_: str = "Ready") -> str | None:
    cond = await ex.condition(type_)
    return cond["reason"] if cond else None


async def key_secret(api, namespace: str, name: str, key: crypto.Key) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={"executorPrvKey": key.private_hex})
    await client.CoreV1Api(api).create_namespaced_secret(namespace, secret)


# --- 1. the assign loop never stops heartbeating ------------------------------------------------

async def test_a_process_waiting_for_room_does_not_stop_assigning_or_heartbeating(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, capacity={"cpu": "2000m", "memory": "16Gi"})
    first = await ex.submit(conditions={"cpu": "750m"}, env={"KWOK_RUN_FOR": "90s"})
    await wait_for(lambda: running(ex, first.processid), 60, "the 750m process to run")
    # 2 × 750m: Colonies matches the 750m per container against the 1,250m free and assigns it;
    # in all it needs 1,500m, which is free only once the first one ends.
    wide = await ex.submit(conditions={"cpu": "750m", "nodes": 2})
    await wait_for(lambda: _assigned(ex, wide.processid), 30, "Colonies to assign the 2 × 750m process")
    small = await ex.submit(conditions={"cpu": "100m"})
    done = await ex.final(small.processid, timeout=60)  # it fits in what is free: it runs at once
    assert done.state is ProcessState.SUCCESS, done.errors
    assert (await ex.colonies.user.get_process(first.processid)).state is ProcessState.RUNNING
    # the loop keeps polling: Colonies hears from the executor again and again while it waits
    heard = await last_heard(ex)
    for _ in range(3):  # three long polls (assignTimeoutSeconds 5)
        heard = await heard_again(ex, heard, 30)
    assert (await ex.colonies.user.get_process(first.processid)).state is ProcessState.RUNNING
    assert (await ex.final(wide.processid, timeout=180)).state is ProcessState.SUCCESS


async def _assigned(ex: Executor, process_id: str) -> bool:
    return (await ex.colonies.user.get_process(process_id)).state is not ProcessState.WAITING


# --- 2. a paused executor takes nothing it will not run ---------------------------------------

async def test_a_paused_executor_takes_nothing_it_will_not_run(api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, heartbeatSeconds=3)
    await patch_spec(ex, {"paused": True})
    await wait_for(lambda: _reason_is(ex, "Paused"), 30, "Ready=False, reason Paused")
    anything = ex.spec()
    for key in ("cpu", "mem"):  # no cpu/mem conditions: it matches any executor of its type
        anything["conditions"].pop(key)
    process = await ex.colonies.user.submit(anything)
    heard = await last_heard(ex)
    for _ in range(2):  # two heartbeats after the submission: either one would have taken it
        heard = await heard_again(ex, heard, 400)
        assert (await ex.colonies.user.get_process(process.processid)).state is ProcessState.WAITING
    await patch_spec(ex, {"paused": False})
    assert (await ex.final(process.processid)).state is ProcessState.SUCCESS


async def _reason_is(ex: Executor, reason: str) -> bool:
    return await condition_reason(ex) == reason


# --- 3. no orphans ----------------------------------------------------------------------------

async def test_a_process_running_on_this_executor_without_a_job_is_found_and_run(
        api, colonies, namespace, stack, operator):
    key = crypto.Key.generate()
    await key_secret(api, namespace, "executor-key", key)
    ex = await start_executor(api, colonies, namespace, stack, executorKeySecretRef={"name": "executor-key"})
    await patch_spec(ex, {"paused": True})
    await wait_for(lambda: _reason_is(ex, "Paused"), 30, "Ready=False, reason Paused")
    process = await ex.submit(env={"KWOK_LOG": "found me"})
    # What a crash between the assign reply and the Job create leaves: RUNNING on this
    # executor's id, and no Job.
    taken = await colonies.connection.client(key).assign(colonies.colony, -1)
    assert taken is not None and taken.processid == process.processid
    await patch_spec(ex, {"paused": False})
    done = await ex.final(process.processid, timeout=180)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await ex.log_lines(process.processid) == ["found me"]


# --- 4. every supervisor ends with the process closed or fenced -------------------------------

async def test_a_nul_byte_in_a_log_line_is_replaced_and_every_line_arrives(executor_cr):
    process = await executor_cr.submit(env={"KWOK_LOG": "before\\nbad\\0byte\\nafter"})
    done = await executor_cr.final(process.processid, timeout=60)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await executor_cr.log_lines(process.processid) == ["before", "bad\ufffdbyte", "after"]


# --- 5. a re-queue never reuses a dying Job ------------------------------------------------------

async def test_removing_the_executor_in_colonies_runs_each_process_again_in_a_fresh_job(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack)
    async with recording(api, namespace) as seen:
        processes = [await ex.submit(env={"KWOK_RUN_FOR": "15s", "KWOK_LOG_LINES": "3"}) for _ in range(3)]
        for p in processes:
            await wait_for(lambda p=p: running(ex, p.processid), 60, "the pods to run")
        name = (await colonies_executor(ex)).executorname
        await colonies.owner.remove_executor(colonies.colony, name)  # Colonies re-queues all 3, retries unchanged
        for p in processes:
            done = await ex.final(p.processid, timeout=180)
            assert done.state is ProcessState.SUCCESS, done.errors
            assert done.retries == 0
    for p in processes:
        assert len(seen.job_uids(p.processid)) == 2, "one Job per assignment"
        assert seen.most_alive_at_once(p.processid) == 1, "the new Job was created only once the old one was gone"


async def test_a_new_attempt_starts_only_once_the_old_attempts_pods_are_gone(executor_cr):
    ex = executor_cr
    async with recording(ex.api, ex.namespace) as seen:
        process = await ex.submit(maxexectime=4, maxretries=1, env={"KWOK_RUN_FOR": "30s"})
        done = await ex.final(process.processid, timeout=120)
    assert done.state is ProcessState.FAILED and done.retries == 1
    first, second = seen.job_uids(process.processid)[:2]
    created = seen.first(second, "ADDED")
    old_pods = {e.uid for e in seen.of(process.processid, "Pod") if e.name.startswith(f"colony-{process.processid[:20]}-0")}
    assert old_pods
    for uid in old_pods:
        gone = seen.first(uid, "DELETED")
        assert gone is not None and gone.at <= created.at, "attempt 1's Job was created while attempt 0's pod existed"
    gone = seen.first(first, "DELETED")
    assert gone is not None and gone.at <= created.at


# --- 6. executors never evict each other ----------------------------------------------------------

async def test_two_executors_with_the_same_name_never_evict_each_other(api, colonies, namespace, stack, operator):
    name = f"shared-{uuid.uuid4().hex[:6]}"
    first = await start_executor(api, colonies, namespace, stack, executorName=name)
    holder = await executor_id(first)
    other_ns = await new_namespace(api)
    second = await start_executor(api, colonies, other_ns, stack, wait_ready=False, executorName=name,
                                  executorType=first.executor_type)
    await wait_for(lambda: _reason_is(second, "NameConflict"), 60, "Ready=False, reason NameConflict")
    assert holder in (await second.condition("Ready"))["message"]
    processes = [await first.submit() for _ in range(5)]
    for p in processes:
        assert (await first.final(p.processid)).state is ProcessState.SUCCESS
    jobs = [j for ns in (namespace, other_ns) for j in (await client.BatchV1Api(api).list_namespaced_job(ns)).items]
    assert sorted(j.metadata.labels["colonyos.io/process"] for j in jobs) == sorted(p.processid[:20] for p in processes)
    executor = await registered(colonies, holder)
    assert executor is not None and executor.state is ExecutorState.APPROVED
    assert await condition_reason(first) == "Assigning"
    await client.CoreV1Api(api).delete_namespace(other_ns)


async def test_the_default_executor_name_differs_between_namespaces(api, colonies, namespace, stack, operator):
    other_ns = await new_namespace(api)
    executor_type = f"it-type-{uuid.uuid4().hex[:8]}"
    same = [Executor(api, colonies, ns, "k8s", executor_type) for ns in (namespace, other_ns)]
    for ex in same:  # two resources named alike, no executorName: the example's defaults
        await create_colony_key_secret(api, ex.namespace, stack.colonies.colony_prvkey)
        await client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, ex.namespace, PLURAL, executor_resource(ex.name, executor_type, colonies.colony))
    for ex in same:
        await wait_for(lambda ex=ex: _reason_is(ex, "Assigning"), 60, f"{ex.namespace}/k8s to be Ready")
    found = [await colonies_executor(ex) for ex in same]
    assert found[0].executorname != found[1].executorname
    heard = [await last_heard(ex) for ex in same]
    for ex, at in zip(same, heard):  # both keep assigning: neither was evicted by the other
        await heard_again(ex, at, 30)
    for f in found:
        assert (await registered(colonies, f.executorid)).state is ExecutorState.APPROVED
    await client.CoreV1Api(api).delete_namespace(other_ns)


# --- 7. deleting a ColonyExecutor fails what it runs --------------------------------------------

async def test_deleting_a_colonyexecutor_fails_its_in_flight_processes_with_executor_removed(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack)
    the_id = await executor_id(ex)
    processes = [await ex.submit(conditions={"cpu": "2000m"}, env={"KWOK_RUN_FOR": RUN_LONG}) for _ in range(3)]
    for p in processes:
        await wait_for(lambda p=p: running(ex, p.processid), 60, "the pods to run")
    # 2 × 1500m: assigned (Colonies matches 1500m per container against the 2000m free), and
    # waiting for room in all (3000m)
    waiting = await ex.submit(conditions={"cpu": "1500m", "nodes": 2})
    await wait_for(lambda: _assigned(ex, waiting.processid), 30, "Colonies to assign the 2 × 1500m process")
    await client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, ex.name)
    for p in [*processes, waiting]:
        done = await ex.final(p.processid, timeout=60)
        assert done.state is ProcessState.FAILED, done
        assert done.errors[0].startswith("ExecutorRemoved"), done.errors
    await wait_for(lambda: _no_jobs(ex), 60, "every Job to be deleted")
    executor = await registered(colonies, the_id)
    assert executor is None or executor.state is ExecutorState.UNREGISTERED


def _removal_lines(stack) -> str:
    log = Path(stack.run_dir) / "logs" / "operator.log"
    words = ("removed:", "Daemon", "finalizer", "Timer", "ERROR", "WARNING")
    lines = [line for line in log.read_text(errors="replace").splitlines() if any(w in line for w in words)]
    return "\n".join(lines[-40:])


async def _no_jobs(ex: Executor) -> bool:
    return not await ex.jobs()


async def test_deleting_a_colonyexecutor_with_a_thousand_in_flight_finishes_within_kopfs_timeouts(
        api, colonies, namespace, stack, operator):
    count = 1000
    # Pods no node matches: in flight, pending (no log streams, no node filled for later tests)
    ex = await start_executor(api, colonies, namespace, stack, pendingGraceSeconds=3600,
                              capacity={"cpu": "2000", "memory": "4000Gi", "maxConcurrentJobs": count},
                              jobTemplate={"nodeSelector": {"colonies-it/no-such-node": "true"}})
    # one request at a time: the test's own client must not add a storm of connections to a
    # server that is busy assigning (a connect timed out under load that way)
    processes = [await ex.submit(conditions={"cpu": "1m", "mem": "1Mi"}, env={"KWOK_RUN_FOR": RUN_LONG})
                 for _ in range(count)]

    async def all_in_flight():
        return await _status(ex, "inFlight") == count
    await wait_for(all_in_flight, 300, f"{count} processes in flight")
    await client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, ex.name)

    async def resource_gone():
        try:
            await ex.resource()
        except client.exceptions.ApiException as exc:
            return exc.status == 404
        return False
    # kopf gives the daemon cancellation_backoff + cancellation_timeout (10 s + 110 s) before it
    # leaves it orphaned and lets the resource go; the states below prove the removal finished
    try:
        await wait_for(resource_gone, 10 + 110 + 30, "the ColonyExecutor to be gone")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe operator's removal and kopf's lines about it:\n"
                             + _removal_lines(stack)) from None
    states = [await ex.colonies.user.get_process(p.processid) for p in processes]
    assert {s.state for s in states} == {ProcessState.FAILED}
    assert all(s.errors and s.errors[0].startswith("ExecutorRemoved") for s in states)
    await wait_for(lambda: _no_jobs(ex), 120, "every Job to be deleted")


# --- 8. refused pods fail the process with the cluster's words ----------------------------------

async def test_pods_refused_by_a_resource_quota_fail_the_process_with_the_clusters_words(
        api, colonies, namespace, stack, operator):
    quota = client.V1ResourceQuota(metadata=client.V1ObjectMeta(name="no-pods"),
                                   spec=client.V1ResourceQuotaSpec(hard={"pods": "0"}))
    await client.CoreV1Api(api).create_namespaced_resource_quota(namespace, quota)
    ex = await start_executor(api, colonies, namespace, stack)
    process = await ex.submit()
    done = await ex.final(process.processid, timeout=120)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("PodCreateRefused("), done.errors
    assert "exceeded quota" in done.errors[0]
    await wait_for(lambda: _no_jobs(ex), 30, "the Job to be deleted")


# --- 9. assign answered 408 --------------------------------------------------------------------

async def test_a_colony_paused_on_the_server_keeps_the_runtime_and_resumes(api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack)
    long = await ex.submit(env={"KWOK_RUN_FOR": "40s"})
    await wait_for(lambda: running(ex, long.processid), 60, "the pod to run")
    heard = await last_heard(ex)
    starts = runtime_starts(operator, ex)
    await set_colony_assignments(colonies, paused=True)
    try:
        await wait_for(lambda: _reason_is(ex, "ColonyPaused"), 60, "Ready=False, reason ColonyPaused")
        reasons = set()
        for _ in range(3):  # three long polls answered 408 (assignTimeoutSeconds 5): still heard
            heard = await heard_again(ex, heard, 60)
            reasons.add(await condition_reason(ex))
        assert reasons == {"ColonyPaused"}
        assert runtime_starts(operator, ex) == starts, "the runtime was torn down and rebuilt"
        queued = await ex.submit()
    finally:
        await set_colony_assignments(colonies, paused=False)
    assert (await ex.final(queued.processid)).state is ProcessState.SUCCESS
    done = await ex.final(long.processid, timeout=120)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert runtime_starts(operator, ex) == starts == 1


def runtime_starts(operator, ex: Executor) -> float:
    from tests.integration.test_operator import scrape, total
    return total(scrape(operator.metrics_url), "colonies_operator_executor_runtime_starts_total",
                 executor=f"{ex.namespace}/{ex.name}")


# --- 10. identity and spec edits strand nothing --------------------------------------------------

async def test_a_new_executor_key_lets_in_flight_processes_finish_under_the_old_identity(
        api, colonies, namespace, stack, operator):
    old_key, new_key = crypto.Key.generate(), crypto.Key.generate()
    await key_secret(api, namespace, "key-1", old_key)
    await key_secret(api, namespace, "key-2", new_key)
    ex = await start_executor(api, colonies, namespace, stack, executorKeySecretRef={"name": "key-1"})
    processes = [await ex.submit(env={"KWOK_RUN_FOR": "15s", "KWOK_LOG_LINES": "3"}) for _ in range(2)]
    for p in processes:
        await wait_for(lambda p=p: running(ex, p.processid), 60, "the pods to run")
    await patch_spec(ex, {"executorKeySecretRef": {"name": "key-2"}})
    for p in processes:
        done = await ex.final(p.processid, timeout=120)
        assert done.state is ProcessState.SUCCESS, done.errors
        assert done.assignedexecutorid == old_key.id
        assert await ex.log_lines(p.processid) == ["line 1", "line 2", "line 3"]

    async def new_identity():
        return await _status(ex, "executorId") == new_key.id and await _reason_is(ex, "Assigning")
    await wait_for(new_identity, 120, "the new key to be registered")
    later = await ex.submit()
    done = await ex.final(later.processid)
    assert done.state is ProcessState.SUCCESS and done.assignedexecutorid == new_key.id
    old = await registered(colonies, old_key.id)
    assert old is None or old.state is ExecutorState.UNREGISTERED


async def test_a_new_executor_name_lets_in_flight_processes_finish_and_retires_the_old_name(
        api, colonies, namespace, stack, operator):
    ex = await start_executor(api, colonies, namespace, stack, executorName=f"before-{uuid.uuid4().hex[:6]}")
    process = await ex.submit(env={"KWOK_RUN_FOR": "15s"})
    await wait_for(lambda: running(ex, process.processid), 60, "the pod to run")
    before = await colonies_executor(ex)
    renamed = f"after-{uuid.uuid4().hex[:6]}"
    await patch_spec(ex, {"executorName": renamed})
    done = await ex.final(process.processid, timeout=120)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert done.assignedexecutorid == before.executorid

    async def renamed_ready():
        found = await registered(colonies, await _status(ex, "executorId") or "")
        return found and found.executorname == renamed and found.state is ExecutorState.APPROVED
    await wait_for(renamed_ready, 120, "the new name to be registered")
    later = await ex.submit()
    assert (await ex.final(later.processid)).state is ProcessState.SUCCESS

    async def old_name_retired():
        old = await colonies.user.get_executor(colonies.colony, before.executorname)
        return old.state is ExecutorState.UNREGISTERED
    await wait_for(old_name_retired, 120, "the old name to be unregistered")


async def test_capability_edits_reach_colonies(executor_cr):
    ex = executor_cr
    name = (await colonies_executor(ex)).executorname
    hardware = [{"model": "edited", "cpu": "8", "mem": "16Gi", "nodes": 1}]
    await patch_spec(ex, {"capabilities": {"hardware": hardware}})

    async def edited():
        caps = (await raw_executor(ex.colonies, name)).get("capabilities") or {}
        return [h.get("model") for h in caps.get("hardware") or []] == ["edited"]
    await wait_for(edited, 60, "the edited capabilities in Colonies")


# --- 15. a process that fits starts at once, also when the executor is full ---------------------

async def test_a_freed_slot_is_offered_at_once_while_a_backlog_waits(api, colonies, namespace, stack, operator):
    count, slots, poll = 300, 16, 30
    ex = await start_executor(api, colonies, namespace, stack, assignTimeoutSeconds=poll,
                              capacity={"cpu": f"{slots * 100}m", "memory": "16Gi"})
    async with recording(api, namespace) as seen:
        processes = [await ex.submit(conditions={"cpu": "100m"}, env={"KWOK_RUN_FOR": "3s"}) for _ in range(count)]
        for p in processes:
            done = await ex.final(p.processid, timeout=600)
            assert done.state is ProcessState.SUCCESS, done.errors
    # Every Job that finished while others waited freed a slot; the next Job must follow it
    # by the next assign, not by the end of a long poll that advertised the room before.
    first_finish: dict[str, float] = {}  # a Job is MODIFIED again after it finished (reported, TTL)
    for e in seen.events:
        if e.kind == "Job" and e.finished:
            first_finish.setdefault(e.uid, e.at)
    finished = sorted(first_finish.values())
    created = sorted(e.at for e in seen.events if e.kind == "Job" and e.type == "ADDED")
    stalls = []
    for i, at in enumerate(finished[:count - slots]):
        refill = created[slots + i] if slots + i < len(created) else None
        if refill is not None and refill - at > poll / 2:
            stalls.append(round(refill - at, 1))
    ideal = count / slots * 3
    print(f"\n{count} processes of 3 s on {slots} slots: drained in {max(created) - min(created):.0f}s "
          f"(ideal {ideal:.0f}s); refills that waited for a long poll: {stalls}")
    assert stalls == []


# --- 17. two executors sharing one executor type ----------------------------------------------

async def test_two_executors_sharing_a_type_run_each_process_exactly_once(api, colonies, namespace, stack, operator):
    first = await start_executor(api, colonies, namespace, stack)
    other_ns = await new_namespace(api)
    second = await start_executor(api, colonies, other_ns, stack, executorType=first.executor_type)
    async with recording(api, namespace, other_ns) as seen:
        processes = await asyncio.gather(*(first.submit(env={"KWOK_RUN_FOR": "2s"}) for _ in range(40)))
        done = [await first.final(p.processid, timeout=180) for p in processes]
    assert {d.state for d in done} == {ProcessState.SUCCESS}
    ids = {await executor_id(first), await executor_id(second)}
    by = {i: sum(d.assignedexecutorid == i for d in done) for i in ids}
    print(f"\n40 processes split between the two executors: {sorted(by.values())}")
    for p in processes:
        assert len(seen.job_uids(p.processid)) == 1, "each process ran in exactly one Job"
    await client.CoreV1Api(api).delete_namespace(other_ns)


async def test_an_unassigned_process_moves_between_two_executors_and_each_stops_its_old_attempt(
        api, colonies, namespace, stack, operator):
    """Across two executors Colonies alone decides who runs an attempt: the one it took an
    attempt from stops that attempt's Job (within its next poll at the latest), and neither
    ever runs two attempts of one process at once."""
    first = await start_executor(api, colonies, namespace, stack)
    other_ns = await new_namespace(api)
    await start_executor(api, colonies, other_ns, stack, executorType=first.executor_type)
    async with recording(api, namespace, other_ns) as seen:
        # pods that never end by themselves, so only Colonies' maxexectime ends an attempt
        processes = [await first.submit(maxexectime=4, maxretries=2, env={"KWOK_RUN_FOR": RUN_LONG})
                     for _ in range(4)]
        for p in processes:
            done = await first.final(p.processid, timeout=180)
            assert done.state is ProcessState.FAILED and done.retries == 2
        await wait_for(lambda: not seen.active_jobs(), 60, "every attempt's Job to be stopped")
    for p in processes:
        assert len(seen.job_uids(p.processid)) == 3
        for ns in (namespace, other_ns):
            assert seen.most_alive_at_once(p.processid, ns) <= 1, f"two attempts at once in {ns}"
    await client.CoreV1Api(api).delete_namespace(other_ns)
