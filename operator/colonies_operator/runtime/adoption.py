"""After a restart: take back this executor's Jobs, and the processes that are ours in
Colonies but have no Job (orphans).

Jobs are this executor's by the executor id on them, not by name (names can be shared
across namespaces and clusters). A Job belongs to one assignment of its process (the
server's start time on it); only the assignment that is still RUNNING on us is resumed.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from colonies_operator.colonies import errors
from colonies_operator.colonies.models import Process, ProcessState, parse_time, same_instant
from colonies_operator.jobs import builder, diagnosis, spec
from colonies_operator.runtime import jobops
from colonies_operator.runtime.admission import reject, request_of
from colonies_operator.runtime.context import End, report
from colonies_operator.runtime.supervisor import Supervisor

if TYPE_CHECKING:
    from colonies_operator.runtime.executor import ExecutorRuntime

log = logging.getLogger(__name__)

ADOPT_CONCURRENCY = 32  # Colonies lookups in flight while adopting Jobs after a restart


async def adopt(rt: ExecutorRuntime) -> None:
    """Supervise the unreported Jobs whose assignment is still ours; mark the ones closed
    before a crash as reported (never report twice); delete the ones that stopped being ours.

    Every Job is looked up first, and only then do the adopted supervisors start: each one
    reads its shipped log back from Colonies and opens a log stream, work that would slow
    the remaining lookups down (1,000 Jobs after a SIGKILL: all re-adopted 3.1 s after
    liveness this way, 6.9 s interleaved)."""
    gate = asyncio.Semaphore(ADOPT_CONCURRENCY)  # one Colonies lookup per Job: not one after another
    adopted: list[Supervisor] = []

    async def one(job: dict[str, Any]) -> None:
        async with gate:
            supervisor = await _adopt_job(rt, job)
        if supervisor is not None:
            adopted.append(supervisor)

    await asyncio.gather(*(one(job) for job in rt.watch.jobs_of_executor(rt.me.id)))
    for supervisor in adopted:
        rt.supervise(supervisor)
    await retire_earlier_identities(rt)


def _of_this_resource(rt: ExecutorRuntime) -> list[dict[str, Any]]:
    label = builder.label_value(rt.config.resource_name)
    return [j for j in rt.watch.jobs.values() if (j["metadata"].get("labels") or {}).get(builder.RESOURCE_LABEL) == label]


def made_by_this_resource(rt: ExecutorRuntime, executor_id: str) -> bool:
    """Whether Jobs of this resource carry `executor_id`: an identity it had before."""
    return any((j["metadata"].get("annotations") or {}).get(builder.EXECUTOR_ID_ANNOTATION) == executor_id
               for j in _of_this_resource(rt))


async def retire_earlier_identities(rt: ExecutorRuntime) -> None:
    """Jobs this resource made under an identity it no longer has: its key or executor name
    was edited while the operator was down, or the operator restarted while the old identity
    drained. Nobody can report for their processes any more (this runtime signs with another
    key), so the old registration is removed, as the colony owner, which re-queues them to run
    again, and their Jobs are stopped. Nothing is stranded; they run from the start."""
    stale = [j for j in _of_this_resource(rt)
             if (j["metadata"].get("annotations") or {}).get(builder.EXECUTOR_ID_ANNOTATION) not in (None, rt.me.id)
             and not jobops.reported(j)]
    identities = {(j["metadata"]["annotations"].get(builder.EXECUTOR_NAME_ANNOTATION, ""),
                   j["metadata"]["annotations"][builder.EXECUTOR_ID_ANNOTATION]) for j in stale}
    for name, executor_id in identities:
        if name and await rt.registration.remove_earlier(name, executor_id):
            log.info("removed the earlier registration %s (%s…) of this resource: its processes go back "
                     "to the queue", name, executor_id[:12])
    for job in stale:
        await jobops.delete(rt.kube, rt.config.namespace, job["metadata"]["name"])


def same_assignment(job: dict[str, Any], process: Process) -> bool:
    """Whether `job` runs the assignment `process` is in now (Jobs made before the start time
    was recorded on them fall back to the retries count)."""
    meta = job.get("metadata") or {}
    stamp = (meta.get("annotations") or {}).get(builder.ASSIGNED_AT_ANNOTATION)
    if stamp is not None:
        return same_instant(parse_time(stamp), process.starttime)
    return int((meta.get("labels") or {}).get(builder.ATTEMPT_LABEL) or 0) == process.retries


async def _adopt_job(rt: ExecutorRuntime, job: dict[str, Any]) -> Supervisor | None:
    meta = job.get("metadata", {})
    annotations = meta.get("annotations") or {}
    pid = annotations.get(builder.PROCESS_ID_ANNOTATION)
    if not pid or jobops.reported(job) or pid in rt.supervisors:
        return None
    try:
        process = await rt.me.get_process(pid)
    except errors.NotFound:
        await rt.kube.delete_job(rt.config.namespace, meta["name"])
        return None
    ours = process.assignedexecutorid == rt.me.id and same_assignment(job, process)
    if process.state is ProcessState.RUNNING and ours and not meta.get("deletionTimestamp"):
        return _resume(rt, process, job)
    # the end as the supervisor judged it: by the pods, when the Job controller is behind
    pods = rt.watch.state(meta["name"])[1]
    finished = diagnosis.job_outcome(job, pods, now=datetime.now(timezone.utc)) is not diagnosis.Outcome.RUNNING
    if process.state in (ProcessState.SUCCESS, ProcessState.FAILED) and ours and finished:
        outcome = "success" if process.state is ProcessState.SUCCESS else "failed"
        await rt.kube.patch_job(rt.config.namespace, meta["name"],
                                jobops.reported_patch(outcome, rt.job_settings.ttl_seconds_after_finished))
    else:
        log.info("Job %s belongs to a process that is no longer ours; deleting it", meta["name"])
        await rt.kube.delete_job(rt.config.namespace, meta["name"])
    return None


def _resume(rt: ExecutorRuntime, process: Process, job: dict[str, Any]) -> Supervisor | None:
    try:
        run = spec.parse_process(process, rt.config.policy)
    except spec.SpecError as exc:
        reject(rt, process, str(exc))
        return None
    request = request_of(job, rt.config.gpu_resource_name)
    rt.capacity.hold(request, run.profile)  # already running: held even over budget
    return Supervisor(rt.context(), process, run, request, adopted=True)


async def take_orphan(rt: ExecutorRuntime, process: Process) -> End:
    """A process RUNNING on us that no supervisor runs: run it, unless it had started (then
    it may have done part of its work: fail it rather than run it twice)."""
    pid = process.processid
    job = next((j for j in rt.watch.jobs_of_process(pid)
                if (j["metadata"].get("annotations") or {}).get(builder.EXECUTOR_ID_ANNOTATION) == rt.me.id
                and same_assignment(j, process) and not j["metadata"].get("deletionTimestamp")), None)
    if job is not None and not jobops.reported(job):
        supervisor = _resume(rt, process, job)
        if supervisor is not None:
            rt.supervise(supervisor)
        return End.STOPPED
    since = int(process.starttime.timestamp() * 1_000_000_000) if process.starttime else 0
    printed = await rt.me.get_logs(rt.config.colony_name, pid, count=1, since=since)
    if printed:
        message = ("Orphaned(its Job is gone): this assignment had started (it has log lines) and nothing "
                   "watched it to its end, so it is not run a second time; submit it again")
        log.info("process %s: %s", pid[:12], message)
        try:
            await report(lambda: rt.me.close_failed(pid, [message]), f"failing orphan {pid[:12]}")
        except errors.ColoniesRejected:
            return End.FENCED
        rt.stats.count(End.FAILED)
        return End.FAILED
    log.info("process %s runs on this executor without a Job (an assign reply lost, or a crash before "
             "the Job was created): running it", pid[:12])
    rt.admit(process)
    return End.STOPPED
