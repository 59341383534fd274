"""A process Colonies assigned to us → a supervisor, or a rejection that names the field.

Synchronous, so the assign loop can hand a process over the moment its answer arrives:
what the process needs is reserved here when it fits, and otherwise its supervisor waits
for room in its own task (the assign loop never waits for room).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from colonies_operator.colonies import errors
from colonies_operator.colonies.models import Process
from colonies_operator.jobs import builder, kueue, spec
from colonies_operator.jobs.resources import Resources
from colonies_operator.runtime.context import End, report
from colonies_operator.runtime.supervisor import Supervisor

if TYPE_CHECKING:
    from colonies_operator.runtime.executor import ExecutorRuntime

log = logging.getLogger(__name__)


def request_of(job: dict, gpu_resource_name: str = "nvidia.com/gpu") -> Resources:
    """What a Job takes from the executor's capacity: its pods' requests, and one Job."""
    cpu, mem, gpus = builder.job_request_totals(job, gpu_resource_name)
    return Resources(cpu, mem, gpus, 1)


def admit(rt: ExecutorRuntime, process: Process, on_created: Callable[[], None] | None = None) -> None:
    """Validate, reserve capacity if it fits (else the supervisor waits for it), and start a
    supervisor. `on_created` is called once the process's Job was created, or never will be."""
    assigned_at = time.monotonic()
    pid = process.processid
    try:
        run = spec.parse_process(process, rt.config.policy)
        job = builder.build_job(run, rt.job_settings)
        request = request_of(job, rt.config.gpu_resource_name)
    except (spec.SpecError, ValueError) as exc:
        reject(rt, process, str(exc), on_created)
        return
    over = request.over(rt.config.budget)
    pool = rt.config.profile_budgets.get(run.profile)
    if not over and pool is not None and request.over(pool):
        over = [f"{o} of profile {run.profile!r}" for o in request.over(pool)]
    if over:
        reject(rt, process, "invalid funcspec: conditions ask for more than this executor can ever run: "
               + ", ".join(over), on_created)
        return
    previous = None
    old = rt.running.get(pid)
    if old is not None:
        # Colonies gave us a process we still run an older attempt of: that attempt was
        # unassigned (or re-queued). Stop it first: never two at once.
        old.fence(f"re-assigned as attempt {process.retries}")
        previous = rt.supervisors.get(pid)
    elif pid in rt.supervisors:
        previous = rt.supervisors[pid]  # e.g. an orphan being looked at: let it finish first
    queued = kueue.queued(job)  # Kueue admits it later: it holds a queue place, not the budget
    if queued:
        rt.capacity.enqueue()
    reserved = previous is None and not queued and rt.capacity.try_reserve(request, run.profile)
    rt.assigner.note_admitted(request)
    rt.supervise(Supervisor(rt.context(), process, run, request, assigned_at, job=job, on_created=on_created,
                            reserved=reserved, previous=previous, queued=queued))


def reject(rt: ExecutorRuntime, process: Process, message: str, on_created: Callable[[], None] | None = None) -> None:
    if on_created is not None:
        on_created()  # no Job will be created
    rt.spawn(process.processid, _reject(rt, process, message))


async def _reject(rt: ExecutorRuntime, process: Process, message: str) -> End:
    log.info("process %s rejected: %s", process.processid[:12], message)
    try:
        await report(lambda: rt.me.close_failed(process.processid, [message]), "failing a bad funcspec")
        end = End.FAILED
    except errors.ColoniesRejected:
        end = End.FENCED
    rt.stats.count(end)
    return end
