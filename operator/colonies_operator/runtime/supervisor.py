"""One asyncio task per process: wait for room, create (or adopt) its Job, follow it through
the shared watch, ship its logs, and report the end to Colonies exactly once.

The end is decided from cached state only (`diagnosis.job_outcome` / `diagnose`), so a
supervisor makes no periodic requests. Its Kubernetes cost is the Job create and the patch
that marks it reported (plus a delete when a Job must be stopped). A "forbidden" from
Colonies means the process is no longer ours (cancelled, unassigned, closed elsewhere):
the Job is deleted and nothing is reported (fencing). A Job Kueue has not admitted yet
(still suspended) is *queued*: it holds a place in Kueue's queue, not the executor's budget,
which it holds from the moment Kueue resumes it. Every supervisor ends with the
process closed or fenced: an unexpected error fails the process with `InternalError(...)`
rather than leaving it RUNNING with nobody watching.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, TypeVar

from colonies_operator.colonies import errors
from colonies_operator.colonies.models import Process, ProcessState, parse_time, same_instant
from colonies_operator.jobs import builder, diagnosis, kueue, spec, statuses
from colonies_operator.runtime import io, jobops, logs, placement, settling, snapshots
from colonies_operator.jobs.resources import Resources
from colonies_operator.runtime.context import Context, End, Fenced, report
from colonies_operator.runtime.ending import Ending
from colonies_operator.runtime.following import LogFollower
from colonies_operator.runtime.kube import Conflict, KubeError
from colonies_operator.runtime.waits import wait_set

log = logging.getLogger(__name__)

RECHECK_SECONDS = 30.0       # re-evaluate cached state at least this often (pending grace periods)
SETTLE_SECONDS = 10.0        # how long a finished Job waits for its pods' final status to arrive
JOB_APPEAR_SECONDS = 30.0    # a created Job not seen by the watch this long is looked up once
T = TypeVar("T")


async def _lines_in_colonies(ctx: Context, process_id: str) -> int:
    entries = await ctx.colonies.get_all_logs(ctx.job_settings.colony_name, process_id)
    return logs.lines_in(entry.message for entry in entries)


class Supervisor(Ending):
    def __init__(self, ctx: Context, process: Process, run: spec.RunSpec, request: Resources,
                 assigned_at: float | None = None, job: dict[str, Any] | None = None,
                 on_created: Callable[[], None] | None = None, *, reserved: bool = True,
                 previous: asyncio.Task[Any] | None = None, adopted: bool = False, queued: bool = False) -> None:
        self.ctx = ctx
        self._on_created = on_created  # called once when creating the Job is over, however it went
        self.job = job  # the Job to create, when the caller built it already
        self.assigned_at = assigned_at  # monotonic time of the assign; None for an adopted Job
        self.process = process
        self.run_spec = run
        self.request = request
        self.reserved = reserved        # the capacity `request` is held (else: wait for it first)
        self.queued = queued            # a place in Kueue's queue is held (the Job waits for admission)
        self.previous = previous        # an older attempt's supervisor to wait out first
        self.adopted = adopted          # the Job exists (listed at start): resume, do not create
        self.job_name = builder.job_name(process.processid, run.attempt)
        self.namespace = ctx.job_settings.namespace
        self.shipper = logs.LogShipper(
            lambda text: ctx.colonies.add_log(process.processid, text),
            batch_bytes=ctx.logs.batch_bytes, flush_seconds=ctx.logs.flush_seconds, max_bytes=ctx.logs.max_bytes,
            on_shipped=ctx.metrics.shipped,
            # not a bound method: the supervisor holds the shipper, and a cycle would keep both
            # (and the process) alive until a full collection, which tune_gc makes rare
            lines_held=functools.partial(_lines_in_colonies, ctx, process.processid),
        )
        self.follower = LogFollower(ctx.kube, self.namespace, run, self.shipper)
        self._fenced: str | None = None
        self._closing = False
        self._event = asyncio.Event()       # fencing or a change of the Job / its pods
        self._watched: list[str] = []      # Job names whose changes set `_event`

    @property
    def pid(self) -> str:
        return self.process.processid

    @property
    def fenced(self) -> bool:
        return bool(self._fenced)

    def fence(self, reason: str) -> bool:
        """The process is no longer ours: stop, delete the Job, report nothing. Ignored (False)
        once the end is being reported (our own close makes the process look "closed")."""
        if self._closing or self._fenced:
            return False
        self._fenced = reason
        self._event.set()
        return True

    async def run(self) -> End:
        """Supervise to the end. The capacity `request` is released here."""
        self._watch(self.job_name)
        shipping = asyncio.create_task(self.shipper.run(), name=f"logs-{self.job_name}")
        end = End.STOPPED
        try:
            try:
                end = await self._supervise(shipping)
            except (errors.Forbidden, errors.NotFound, Fenced) as exc:
                end = await self._fenced_end(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug: say so to the user, stop the Job, never leave it RUNNING
                log.exception("supervisor of %s failed", self.pid[:12])
                end = await self._internal_error(exc)
            await snapshots.release(self.ctx, self.run_spec, end)
        finally:
            await self.follower.stop()
            shipping.cancel()
            await asyncio.gather(shipping, return_exceptions=True)
            self._created()  # ended (or was cancelled) before its Job was created
            for name in self._watched:
                self.ctx.watch.unsubscribe(name, self._event)
            if self.reserved:
                self.ctx.capacity.release(self.request, self.run_spec.profile)
            if self.queued:
                self.ctx.capacity.dequeue()
            log.debug("process %s: %s; its room is free", self.pid[:12], end.value)
            self.ctx.stats.count(end)
            self.ctx.on_change()
        return end

    async def _supervise(self, shipping: asyncio.Task[None]) -> End:
        if self.previous is not None:
            await self._until(asyncio.gather(self.previous, return_exceptions=True))
            await self._still_ours()  # the old attempt may have closed it as it ended
        if not self.reserved and not self.queued:
            await self._until(self.ctx.capacity.reserve(self.request, self.run_spec.profile))
            self.reserved = True
        try:
            if self.adopted:
                await self._load_resume_point()
                await io.ensure_input(self.ctx, self.run_spec, await self._cached_job(self.job_name) or {})
                created_at = None
            else:
                ended = await self._second_look() or await self._make_job()
                if ended is not None:
                    return ended
                created_at = time.monotonic()
        finally:
            self._created()
        return await self._follow(shipping, created_at)

    async def _follow(self, shipping: asyncio.Task[None], created_at: float | None) -> End:
        seen_job = False
        settle_by: float | None = None
        looked_for_events_at: float | None = None
        while True:
            self._event.clear()
            self._check_fenced()
            if shipping.done() and shipping.exception() is not None:
                raise shipping.exception()  # type: ignore[misc]
            job, pods = self.ctx.watch.state(self.job_name)
            if job is None:
                if seen_job:
                    return await self._fail_with("JobDeleted: the Job was deleted before it finished", pods)
                if created_at is not None and time.monotonic() - created_at > JOB_APPEAR_SECONDS:
                    exists = await self._job_exists()  # None: the apiserver is away; ask at the next look
                    if exists is False:
                        return await self._fail_with("JobDeleted: the Job was deleted before the operator saw it", [])
                    if exists:
                        created_at = None  # it exists; the watch will bring it
            else:
                seen_job = True
                self._account(job)
                if placement.job_placed(job, pods):
                    self.ctx.placement.placed(self)
                self.follower.follow(pods)
                now = datetime.now(timezone.utc)
                outcome = diagnosis.job_outcome(job, pods, now=now)
                if outcome is not diagnosis.Outcome.RUNNING and settle_by is None:
                    log.debug("Job %s finished: %s; pods settled: %s", self.job_name, outcome.value, jobops.pods_settled(pods))
                if outcome is not diagnosis.Outcome.RUNNING and not jobops.pods_settled(pods):
                    # Jobs and Pods come through separate watches: the Job may say "done" before
                    # its pods' final status arrives. Wait for it (bounded): the logs, the exit
                    # code and the output are read from the pods.
                    tick = time.monotonic()
                    settle_by = settle_by or tick + SETTLE_SECONDS
                    if tick < settle_by:
                        await self._wait(settle_by - tick)
                        continue
                if outcome is diagnosis.Outcome.SUCCEEDED:
                    return await self._succeed(pods)
                found = diagnosis.diagnose(job, pods, now=now, pending_grace_seconds=self.ctx.pending_grace_seconds,
                                           unschedulable_grace_seconds=self.ctx.unschedulable_grace_seconds)
                if found is None and outcome is diagnosis.Outcome.RUNNING and self._pods_refused_by_now(job, pods, now):
                    if looked_for_events_at is None or time.monotonic() - looked_for_events_at > RECHECK_SECONDS:
                        looked_for_events_at = time.monotonic()
                        found = await self._refusal()
                if outcome is diagnosis.Outcome.FAILED or found is not None:
                    found = found or diagnosis.create_failed("the Job failed")
                    return await self._fail_with(found, pods, job_finished=outcome is diagnosis.Outcome.FAILED)
                await self._wait(self._until_grace_ends(job, pods, now))
                continue
            await self._wait(RECHECK_SECONDS)

    async def _load_resume_point(self) -> None:
        """What Colonies holds of this process's log, read again until it can be: a server away
        (or a pool that is busy) delays the adopted process, never fails it."""
        async with self.ctx.resume_reads:
            await report(lambda: self.follower.load_resume_point(self.ctx.colonies, self.ctx.job_settings.colony_name,
                                                                 self.pid), f"reading the shipped log of {self.pid[:12]}")

    def _account(self, job: dict[str, Any]) -> None:
        """Kueue admitted the Job (resumed it): its requests count from now, its queue place is
        free. Evicted by Kueue (suspended again), or adopted after a restart while it still
        waits (adoption holds every Job's requests): the other way round."""
        waiting = kueue.queued(job)
        if waiting == self.queued:
            return
        if waiting:
            log.info("Job %s: suspended by Kueue again; queued", self.job_name)
            if self.reserved:
                self.reserved = False
                self.ctx.capacity.release(self.request, self.run_spec.profile)
            self.ctx.capacity.enqueue()
        else:
            log.debug("Job %s: admitted by Kueue", self.job_name)
            self.ctx.capacity.dequeue()
            self.ctx.capacity.hold(self.request, self.run_spec.profile)  # Kueue's quota decided: held even over budget
            self.reserved = True
        self.queued = waiting
        self.ctx.on_change()

    async def _wait(self, seconds: float) -> None:
        await wait_set(self._event, seconds)

    def _watch(self, job_name: str) -> None:
        """Wake this supervisor on changes of `job_name` (its own Job, or another attempt's)."""
        if job_name not in self._watched:
            self.ctx.watch.subscribe(job_name, self._event)
            self._watched.append(job_name)

    def _check_fenced(self) -> None:
        if self._fenced:
            raise Fenced(self._fenced)

    async def _until(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, but stop at once (Fenced) when the process stops being ours."""
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            self._event.clear()
            self._check_fenced()
            waiter = asyncio.ensure_future(self._event.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if self._fenced and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise Fenced(self._fenced)
        return task.result()

    async def _still_ours(self) -> None:
        """After an older attempt ended: is this assignment still RUNNING on us?"""
        process = await self.ctx.colonies.get_process(self.pid)
        if (process.state is not ProcessState.RUNNING or process.assignedexecutorid != self.ctx.colonies.id
                or not same_instant(process.starttime, self.process.starttime)):
            raise Fenced(f"it was {process.state.name.lower()} when the older attempt ended")

    # --- the Job ---------------------------------------------------------------------------

    def _created(self) -> None:
        callback, self._on_created = self._on_created, None
        if callback is not None:
            callback()

    async def _second_look(self) -> End | None:
        """Take the process as stored if it may have been handed over before its env was
        (runtime/settling.py); a bad env read then fails it like any bad funcspec."""
        def read() -> Awaitable[Process]:
            return report(lambda: self.ctx.colonies.get_process(self.pid), f"reading {self.pid[:12]} again")

        process = await self._until(settling.settled(self.process, read, self.ctx.env_settle_seconds,
                                                     self.assigned_at))
        if process is self.process:
            return None
        try:
            run = spec.parse_process(process, self.ctx.policy)
            job = builder.build_job(run, self.ctx.job_settings)
        except (spec.SpecError, ValueError) as exc:
            return await self._fail_with(str(exc), [], job_exists=False)
        log.info("process %s: its env arrived after it was assigned; the Job has it", self.pid[:12])
        self.process, self.run_spec, self.job, self.follower.run = process, run, job, run
        return None

    async def _make_job(self) -> End | None:
        """Create this assignment's Job once no other Job of the process runs; None when it exists."""
        body = self.job or builder.build_job(self.run_spec, self.ctx.job_settings)
        delay = 1.0
        failures = 0
        while True:
            await self._others_gone()
            try:
                sent = time.monotonic()
                created = await self.ctx.kube.create_job(self.namespace, body)
                if self.assigned_at is not None:
                    self.ctx.metrics.job_create_sent_seconds.observe(sent - self.assigned_at)
                    self.ctx.metrics.job_created_seconds.observe(time.monotonic() - self.assigned_at)
                await io.ensure_input(self.ctx, self.run_spec, created)
                return None
            except Conflict:
                if await self._conflicting_job_is_ours():
                    # created before (e.g. before a restart): adopt it, with its input
                    await io.ensure_input(self.ctx, self.run_spec, await self._cached_job(self.job_name) or {})
                    return None
                continue  # an older assignment's Job under the same name: it is gone now, create again
            except KubeError as exc:
                if exc.status < 500 and exc.status != 429:
                    return await self._fail_with(diagnosis.create_failed(exc.message or str(exc)), [], job_exists=False)
                failure: Exception = exc
            except Exception as exc:  # connection trouble: the apiserver may be restarting
                failure = exc
            failures += 1
            if failures >= 6:
                return await self._fail_with(diagnosis.create_failed(f"apiserver unavailable: {failure}"), [],
                                             job_exists=False)
            log.warning("creating Job %s failed (attempt %d): %s", self.job_name, failures, failure)
            await self._until(asyncio.sleep(delay))
            delay = min(delay * 2, 15.0)

    def _is_this_assignment(self, job: dict[str, Any]) -> bool:
        meta = job.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        return (not meta.get("deletionTimestamp")
                and annotations.get(builder.EXECUTOR_ID_ANNOTATION) == self.ctx.colonies.id
                and same_instant(parse_time(annotations.get(builder.ASSIGNED_AT_ANNOTATION)), self.process.starttime))

    async def _conflicting_job_is_ours(self) -> bool:
        """A Job of our name exists: ours (adopt it) or an older assignment's (wait it out)."""
        job = await self._until(self._cached_job(self.job_name))
        if job is None:
            return False  # gone meanwhile
        if self._is_this_assignment(job):
            return True
        await self._others_gone(include_own_name=True)
        return False

    async def _cached_job(self, name: str) -> dict[str, Any] | None:
        """The Job as the watch has it; a Job the apiserver just reported may take a moment."""
        for _ in range(50):
            job, _ = self.ctx.watch.state(name)
            if job is not None:
                return job
            await asyncio.sleep(0.1)
        return None

    async def _others_gone(self, include_own_name: bool = False) -> None:
        """Wait until no other Job of this process runs: an older attempt's, or an older
        assignment's under the same name. Unfinished ones nobody stops are deleted; the wait
        ends once their pods are gone (a real kubelet keeps a pod through its grace period)."""
        while True:
            self._event.clear()
            self._check_fenced()
            others = [j for j in self.ctx.watch.jobs_of_process(self.pid)
                      if j["metadata"]["name"] != self.job_name or (include_own_name and not self._is_this_assignment(j))]
            running = [j for j in others if not jobops.done_with(j, self.ctx.watch.state(j["metadata"]["name"])[1])]
            if not running:
                return
            for job in running:
                name = job["metadata"]["name"]
                self._watch(name)
                if not job["metadata"].get("deletionTimestamp"):
                    log.info("process %s: stopping %s, an older attempt's Job, before starting %s",
                             self.pid[:12], name, self.job_name)
                    await self._delete_job(name)
            await self._wait(RECHECK_SECONDS)

    async def _job_exists(self) -> bool | None:
        return await jobops.exists(self.ctx.kube, self.namespace, self.ctx.watch.selector, self.job_name)

    def _until_grace_ends(self, job: dict[str, Any], pods: list[dict[str, Any]], now: datetime) -> float:
        """How long to sleep: RECHECK_SECONDS, or less when a pending grace period ends sooner
        (of the Job while it has no pod, of a pod while it is pending): judged right then."""
        graces = {self.ctx.pending_grace_seconds, self.ctx.unschedulable_grace_seconds or 0.0}
        waits = [RECHECK_SECONDS]
        for obj in [job, *(p for p in pods if statuses.phase(p) == "Pending")]:
            age = statuses.seconds_overdue(statuses.metadata(obj).get("creationTimestamp"), now, 0.0)
            waits += [grace - age + 1.0 for grace in graces  # creation times have whole seconds
                      if age is not None and age < grace]
        return max(0.1, min(waits))

    # --- refused pods --------------------------------------------------------------------------

    def _pods_refused_by_now(self, job: dict[str, Any], pods: list[dict[str, Any]], now: datetime) -> bool:
        """No pod at all, a grace period after the Job was created or resumed (by Kueue: the
        Job controller then sets its startTime anew): the Job controller may be failing to
        create them (quota, LimitRange, Pod Security admission, a webhook). A suspended Job
        has no pods by design, however long it waits."""
        if pods or (job.get("spec") or {}).get("suspend"):
            return False
        since = statuses.status(job).get("startTime") or statuses.metadata(job).get("creationTimestamp")
        return statuses.seconds_overdue(since, now, self.ctx.pending_grace_seconds) is not None

    async def _refusal(self) -> diagnosis.Diagnosis | None:
        """The Job controller's own words, from its FailedCreate Events on this Job."""
        message = await jobops.failed_create_message(self.ctx.kube, self.namespace, self.job_name)
        return diagnosis.pod_create_refused(message) if message is not None else None
