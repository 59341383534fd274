"""One asyncio task per process: create (or adopt) its Job, follow it through the shared
watch, ship its logs, and report the end to Colonies exactly once.

The end is decided from cached state only (`diagnosis.job_outcome` / `diagnose`), so a
supervisor makes no periodic requests. Its Kubernetes cost is the Job create and the
"reported" annotation (plus a delete when a Job must be stopped). A "forbidden" from
Colonies means the process is no longer ours (cancelled, unassigned, closed elsewhere):
the Job is deleted and nothing is reported (fencing).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.colonies.models import Process
from colonies_operator.jobs import builder, diagnosis, spec, statuses
from colonies_operator.metrics import Metrics
from colonies_operator.runtime import logs
from colonies_operator.runtime.capacity import Capacity, Resources
from colonies_operator.runtime.kube import Conflict, KubeApi, KubeError
from colonies_operator.runtime.watch import JobWatch

log = logging.getLogger(__name__)

REPORTED_ANNOTATION = "colonyos.io/reported"
TERMINAL_PHASES = ("Succeeded", "Failed")
RECHECK_SECONDS = 30.0  # re-evaluate cached state at least this often (pending grace periods)
DRAIN_PATIENCE = 60.0   # how long reading the end of a finished container's log is retried
SETTLE_SECONDS = 10.0   # how long a finished Job waits for its pods' final status to arrive


class Fenced(Exception):
    """The process stopped being ours (cancelled, unassigned, re-assigned)."""


class End(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FENCED = "fenced"      # the process stopped being ours; nothing reported
    STOPPED = "stopped"    # the operator is stopping; the Job is left for adoption


@dataclass
class ExecutorStats:
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    fenced: int = 0

    def count(self, end: End) -> None:
        if end is End.SUCCEEDED:
            self.succeeded += 1
        elif end is End.FAILED:
            self.failed += 1
        elif end is End.FENCED:
            self.fenced += 1


@dataclass
class Context:
    """What every supervisor of one executor shares."""

    colonies: ColoniesClient
    kube: KubeApi
    watch: JobWatch
    capacity: Capacity
    job_settings: builder.JobSettings
    logs: Any  # config.LogSettings
    pending_grace_seconds: float
    metrics: Metrics = field(default_factory=Metrics)
    stats: ExecutorStats = field(default_factory=ExecutorStats)
    on_change: Callable[[], None] = lambda: None


async def report(call: Callable[[], Awaitable[None]], what: str) -> None:
    """Retry a Colonies report until it lands or is refused for good: a result is never
    dropped because the server was briefly away. Rejections propagate."""
    delay = 1.0
    while True:
        try:
            await call()
            return
        except (errors.ColoniesUnreachable, errors.ColoniesServerError) as exc:
            log.warning("%s failed, retrying in %.0fs: %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


class Supervisor:
    def __init__(self, ctx: Context, process: Process, run: spec.RunSpec, request: Resources,
                 assigned_at: float | None = None, job: dict[str, Any] | None = None,
                 on_created: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        self._on_created = on_created  # called once when creating the Job is over, however it went
        self.job = job  # the Job to create, when the caller built it already
        self.assigned_at = assigned_at  # monotonic time of the assign; None for an adopted Job
        self.process = process
        self.run_spec = run
        self.request = request
        self.job_name = builder.job_name(process.processid, run.attempt)
        self.namespace = ctx.job_settings.namespace
        self.shipper = logs.LogShipper(
            lambda text: ctx.colonies.add_log(process.processid, text),
            batch_bytes=ctx.logs.batch_bytes, flush_seconds=ctx.logs.flush_seconds, max_bytes=ctx.logs.max_bytes,
            on_shipped=ctx.metrics.shipped,
        )
        self.resume = False          # adopted after a restart: skip what Colonies already holds
        self._resume_counts: dict[str, int] | None = None
        self._fenced: str | None = None
        self._closing = False
        self._event: asyncio.Event | None = None
        self._cursors: dict[tuple[str, str], logs.Cursor] = {}
        self._followers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._drained: set[tuple[str, str]] = set()

    @property
    def pid(self) -> str:
        return self.process.processid

    def fence(self, reason: str) -> None:
        """The process is no longer ours: stop, delete the Job, report nothing. Ignored once
        the end is being reported (our own close makes the process look "closed")."""
        if self._closing or self._fenced:
            return
        self._fenced = reason
        if self._event is not None:
            self._event.set()

    async def run(self) -> End:
        """Supervise to the end. The capacity `request` was reserved by the caller; it is released here."""
        event = self._event = self.ctx.watch.subscribe(self.job_name)
        shipping = asyncio.create_task(self.shipper.run(), name=f"logs-{self.job_name}")
        end = End.STOPPED
        try:
            end = await self._supervise(event, shipping)
            return end
        except (errors.Forbidden, Fenced) as exc:
            log.info("process %s is no longer ours (%s); deleting its Job", self.pid[:12], exc)
            await self._job_event("Normal", "Fenced", f"process {self.pid} is no longer this executor's ({exc}); "
                                                      "deleting the Job, reporting nothing")
            await self._delete_job()
            end = End.FENCED
            return end
        finally:
            for task in [*self._followers.values(), shipping]:
                task.cancel()
            await asyncio.gather(*self._followers.values(), shipping, return_exceptions=True)
            self._created()  # ended (or was cancelled) before its Job was created
            self.ctx.watch.unsubscribe(self.job_name)
            await self.ctx.capacity.release(self.request)
            self.ctx.stats.count(end)
            self.ctx.on_change()

    async def _supervise(self, event: asyncio.Event, shipping: asyncio.Task[None]) -> End:
        if self.resume:
            await self._load_resume_point()
        try:
            if self.resume and self.ctx.watch.state(self.job_name)[0] is not None:
                created = None  # adopted: the Job was listed at start; creating it again would only 409
            else:
                created = await self._create_job()
        finally:
            self._created()
        if created is not None:
            return created
        seen_job = False
        settle_by: float | None = None
        while True:
            event.clear()
            if self._fenced:
                raise Fenced(self._fenced)
            if shipping.done() and shipping.exception() is not None:
                raise shipping.exception()  # type: ignore[misc]
            job, pods = self.ctx.watch.state(self.job_name)
            if job is None:
                if seen_job:
                    return await self._fail_with("JobDeleted: the Job was deleted before it finished", pods)
            else:
                seen_job = True
                self._follow_logs(pods)
                outcome = diagnosis.job_outcome(job, pods)
                if outcome is not diagnosis.Outcome.RUNNING and not _pods_settled(pods):
                    # Jobs and Pods come through separate watches: the Job may say "done" before
                    # its pods' final status arrives. Wait for it (bounded): the logs, the exit
                    # code and the output are read from the pods.
                    loop = asyncio.get_running_loop()
                    settle_by = settle_by or loop.time() + SETTLE_SECONDS
                    if loop.time() < settle_by:
                        await self._wait(event, settle_by - loop.time())
                        continue
                if outcome is diagnosis.Outcome.SUCCEEDED:
                    return await self._succeed(pods)
                found = diagnosis.diagnose(job, pods, now=datetime.now(timezone.utc),
                                           pending_grace_seconds=self.ctx.pending_grace_seconds)
                if outcome is diagnosis.Outcome.FAILED or found is not None:
                    found = found or diagnosis.create_failed("the Job failed")
                    return await self._fail_with(found, pods, job_finished=outcome is diagnosis.Outcome.FAILED)
            await self._wait(event, RECHECK_SECONDS)

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            pass

    # --- the Job ---------------------------------------------------------------------------

    def _created(self) -> None:
        callback, self._on_created = self._on_created, None
        if callback is not None:
            callback()

    async def _create_job(self) -> End | None:
        body = self.job or builder.build_job(self.run_spec, self.ctx.job_settings)
        delay = 1.0
        for attempt in range(6):
            try:
                await self.ctx.kube.create_job(self.namespace, body)
                if self.assigned_at is not None:
                    self.ctx.metrics.job_created_seconds.observe(time.monotonic() - self.assigned_at)
                return None
            except Conflict:
                return None  # same deterministic name: created before (e.g. before a restart); adopt it
            except KubeError as exc:
                if exc.status < 500 and exc.status != 429:
                    return await self._fail_with(diagnosis.create_failed(exc.message or str(exc)), [], job_exists=False)
                failure = exc
            except Exception as exc:  # connection trouble: the apiserver may be restarting
                failure = exc  # type: ignore[assignment]
            log.warning("creating Job %s failed (attempt %d): %s", self.job_name, attempt + 1, failure)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)
        return await self._fail_with(diagnosis.create_failed(f"apiserver unavailable: {failure}"), [], job_exists=False)

    async def _delete_job(self) -> None:
        try:
            await self.ctx.kube.delete_job(self.namespace, self.job_name)
        except KubeError as exc:
            log.warning("deleting Job %s failed: %s", self.job_name, exc)

    async def _job_event(self, type_: str, reason: str, message: str) -> None:
        """An Event on the Job, for `kubectl describe job`; best effort."""
        job, _ = self.ctx.watch.state(self.job_name)
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event", "type": type_, "reason": reason, "message": message[:1024],
            "metadata": {"name": f"{self.job_name}.{time.time_ns():x}", "namespace": self.namespace},
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": self.job_name,
                               "namespace": self.namespace, "uid": ((job or {}).get("metadata") or {}).get("uid", "")},
            "source": {"component": "colonies-operator"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            await self.ctx.kube.post_event(self.namespace, event)
        except Exception as exc:
            log.info("Event on Job %s not posted: %s", self.job_name, exc)

    async def _mark_reported(self, how: str) -> None:
        try:
            await self.ctx.kube.annotate_job(self.namespace, self.job_name, {REPORTED_ANNOTATION: how})
        except KubeError as exc:  # the Job may be gone already; the report itself has landed
            log.info("marking Job %s reported failed: %s", self.job_name, exc)

    # --- logs ------------------------------------------------------------------------------

    async def _load_resume_point(self) -> None:
        """After a restart, Colonies is the record of what was shipped: count its lines per
        container, so the follower skips exactly those and nothing is lost or sent twice."""
        _, pods = self.ctx.watch.state(self.job_name)  # listed before adoption; no pods: nothing to follow
        prefixes = [prefix for _, _, prefix in self._containers(pods)]
        entries = await self.ctx.colonies.get_all_logs(self.ctx.job_settings.colony_name, self.pid)
        counts, size, truncated = logs.shipped_so_far([e.message for e in entries], prefixes)
        self._resume_counts = counts
        self.shipper.resume(size, truncated)

    def _containers(self, pods: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, str]]:
        """(pod, container, line prefix) for every container of every pod, in index order."""
        out = []
        ordered = statuses.ordered_pods(pods)
        many = len(ordered) > 1 or any(len(p.get("spec", {}).get("containers") or []) > 1 for p in ordered)
        for pod in ordered:
            index = statuses.completion_index(pod) or "0"
            for container in pod.get("spec", {}).get("containers") or []:
                name = container["name"]
                out.append((pod, name, f"[{index}/{name}] " if many else ""))
        return out

    def _follow_logs(self, pods: list[dict[str, Any]]) -> None:
        """Follow running containers; once a pod is terminal, replace its follower by a drain."""
        for pod, container, prefix in self._containers(pods):
            phase = statuses.phase(pod)
            if phase not in ("Running", *TERMINAL_PHASES):
                continue
            key = (pod["metadata"]["name"], container)
            cursor = self._cursors.get(key)
            if cursor is None:
                skip = self._resume_counts.get(prefix, 0) if self._resume_counts else 0
                cursor = self._cursors[key] = logs.Cursor(skip=skip)
            task = self._followers.get(key)
            if phase == "Running":
                if task is None:
                    self._followers[key] = asyncio.create_task(self._ship(key, cursor, prefix, follow=True))
            elif key not in self._drained:
                if task is not None:
                    task.cancel()  # a follow stream may never end by itself (kwok's never does)
                self._drained.add(key)
                previous = task
                self._followers[key] = asyncio.create_task(self._drain(previous, key, cursor, prefix))

    async def _ship(self, key: tuple[str, str], cursor: logs.Cursor, prefix: str, *, follow: bool) -> None:
        """Follow (until cancelled) or drain one container's log, resuming from the cursor
        after any failure. A drain that keeps failing gives up after DRAIN_PATIENCE seconds
        and says so in the log itself, rather than holding the result back forever."""
        pod, container = key
        delay = 0.5
        give_up = asyncio.get_running_loop().time() + DRAIN_PATIENCE
        while True:
            try:
                # a follow waits (no polling) while too many streams are open; a drain never waits
                async with self.ctx.kube.follow_slots if follow else contextlib.nullcontext():
                    await logs.ship_container_log(self.ctx.kube, self.namespace, pod, container, cursor,
                                                  self.shipper, follow=follow, prefix=prefix)
                if not follow:
                    return
                failure = "the stream ended"
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if exc.status in (400, 404) and not follow:
                    return  # the container never started or the pod is gone: nothing more to read
                failure = str(exc)
            except Exception as exc:  # a dropped stream: resume from the cursor
                failure = f"{type(exc).__name__}: {exc}"
            log.info("log stream of %s/%s: %s; resuming", pod, container, failure)
            if not follow and asyncio.get_running_loop().time() + delay > give_up:
                self.shipper.add(f"{prefix}[colonies-operator: the rest of this log could not be read: {failure}]")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _drain(self, previous: asyncio.Task[None] | None, key: tuple[str, str], cursor: logs.Cursor,
                     prefix: str) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self._ship(key, cursor, prefix, follow=False)

    async def _finish_logs(self, pods: list[dict[str, Any]]) -> None:
        self._follow_logs(pods)  # turns every follower of a terminal pod into a drain
        pending = [t for k, t in self._followers.items() if k in self._drained]
        await asyncio.gather(*pending, return_exceptions=True)
        await report(self.shipper.flush, f"shipping the last log lines of {self.pid[:12]}")

    # --- the end ---------------------------------------------------------------------------

    async def _succeed(self, pods: list[dict[str, Any]]) -> End:
        await self._finish_logs(pods)
        self._closing = True
        output = diagnosis.termination_output(pods)
        for note in output.notes:  # e.g. a termination message Kubernetes cut: said in the log
            self.shipper.add(note)
        if output.notes:
            await report(self.shipper.flush, f"shipping the output notes of {self.pid[:12]}")
        await report(lambda: self.ctx.colonies.close_successful(self.pid, output.values), f"closing {self.pid[:12]}")
        await self._mark_reported("success")
        return End.SUCCEEDED

    async def _fail_with(self, found: diagnosis.Diagnosis | str, pods: list[dict[str, Any]], *,
                         job_finished: bool = True, job_exists: bool = True) -> End:
        if pods:
            await self._finish_logs(pods)
        else:
            await report(self.shipper.flush, f"shipping the last log lines of {self.pid[:12]}")
        self._closing = True
        message = found if isinstance(found, str) else found.error_message(list(self.shipper.tail))
        try:
            await report(lambda: self.ctx.colonies.close_failed(self.pid, [message]), f"failing {self.pid[:12]}")
        except errors.BadRequest:
            raise errors.Forbidden(400, "the process was closed or cancelled elsewhere", "closefailedmsg") from None
        if job_exists:
            reason = "Failed" if isinstance(found, str) else found.reason.value
            await self._job_event("Warning", reason, message.split("\n", 1)[0])
            if job_finished:
                await self._mark_reported("failed")
            else:
                await self._delete_job()  # never leave a pod pending or a container running for nothing
        return End.FAILED


def _pods_settled(pods: list[dict[str, Any]]) -> bool:
    """Every pod is terminal or on its way out (a Job past its deadline deletes its pods)."""
    return all(statuses.phase(p) in TERMINAL_PHASES or p.get("metadata", {}).get("deletionTimestamp") for p in pods)
