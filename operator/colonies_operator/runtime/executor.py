"""`ExecutorRuntime`: one ColonyExecutor's life — register with Colonies, adopt Jobs left
by an earlier run, then assign processes while capacity allows and supervise each.

Plain asyncio: the kopf edge constructs it with a parsed config and keys and awaits
`run()`; tests drive it the same way without kopf.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient, Connection
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import ExecutorState, Process, ProcessState
from colonies_operator.config import ExecutorConfig
from colonies_operator.jobs import builder, spec
from colonies_operator.metrics import Metrics
from colonies_operator.runtime.capacity import Capacity, Resources
from colonies_operator.runtime.fencing import Attempt, Fencing
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.supervisor import (
    REPORTED_ANNOTATION, Context, End, ExecutorStats, Supervisor, report,
)
from colonies_operator.runtime.watch import JobWatch

log = logging.getLogger(__name__)

FUNCTION_NAME = "execute"
HEARTBEAT_SECONDS = 300  # assign at least this often: Colonies deletes executors silent for 600 s
ASSIGN_SLICES = 4        # assigns in flight at once while a backlog drains (DESIGN §2.4)
ADOPT_CONCURRENCY = 32   # Colonies lookups in flight while adopting Jobs after a restart
CREATES_IN_FLIGHT = 16   # assign no faster than Jobs get created: assigned → created stays short
MIB = 2**20


@dataclass
class Health:
    registered: bool = False
    colonies_ok: bool = True
    problem: str = ""
    last_assign_time: float | None = None  # wall clock of the last assign answer
    last_loop_time: float = 0.0            # monotonic; the liveness check reads this
    paused: bool = False                   # paused in effect: no assign poll in flight


def request_of(job: dict) -> Resources:
    cpu, mem, gpus = builder.job_request_totals(job)
    return Resources(cpu, mem, gpus, 1)


class ExecutorRuntime:
    def __init__(
        self, config: ExecutorConfig, *, connection: Connection, colony_key: Key, executor_key: Key,
        kube: KubeApi, watch: JobWatch, on_change: Callable[[], None] = lambda: None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.owner = connection.client(colony_key)
        self.me: ColoniesClient = connection.client(executor_key)
        self.kube = kube
        self.watch = watch
        self.capacity = Capacity(config.budget)
        self.stats = ExecutorStats()
        self.health = Health()
        self._on_change = on_change
        self._config_changed = asyncio.Event()
        self._supervisors: dict[str, asyncio.Task[End]] = {}
        self._running: dict[str, Supervisor] = {}  # process id → its supervisor (not rejects)
        # Concurrent assigns: while a backlog drains, up to ASSIGN_SLICES one-shot assigns are
        # in flight, each advertising one "slice" the size of the last process admitted and
        # holding it as a claim until its process is reserved, so that what is advertised and
        # what is reserved never exceed the budget together.
        self._estimate: Resources | None = None
        self._claimed = Resources()
        self._slices = 0
        self._no_slices = asyncio.Event()
        self._no_slices.set()
        self._backlog = asyncio.Event()  # set while assigns keep finding work at once
        # Back-pressure: every assign holds one of these until its process's Job is created
        # (or it returned nothing). A burst then waits in Colonies, not assigned and unstarted.
        self._creates = asyncio.Semaphore(CREATES_IN_FLIGHT)
        self.job_settings = config.job_settings(self.me.id)

    @property
    def executor_id(self) -> str:
        return self.me.id

    def _context(self) -> Context:
        return Context(colonies=self.me, kube=self.kube, watch=self.watch, capacity=self.capacity,
                       job_settings=self.job_settings, logs=self.config.logs,
                       pending_grace_seconds=self.config.pending_grace_seconds, stats=self.stats,
                       metrics=self.metrics, on_change=self._changed)

    def _changed(self) -> None:
        self.stats.in_flight = len(self._supervisors)
        self._on_change()

    async def update_config(self, config: ExecutorConfig) -> None:
        """Apply a changed spec: budget, pause and limits take effect at the next assign."""
        self.config = config
        self.job_settings = config.job_settings(self.me.id)
        await self.capacity.set_budget(config.budget)
        self._config_changed.set()

    # --- registration ------------------------------------------------------------------------

    async def register(self) -> None:
        """Idempotent: an executor already registered under this name with our id is kept."""
        c = self.config
        try:
            existing = await self.me.get_executor(c.colony_name, c.executor_name)
            # a removed executor stays listed, UNREGISTERED: it must be added again
            current = existing.executorid == self.me.id and existing.state is not ExecutorState.UNREGISTERED
        except errors.ColoniesRejected:  # "not a member": not registered (or removed as stale)
            existing, current = None, False
        if not current:
            try:
                await self._add_executor()
            except errors.BadRequest as exc:
                if "already exists" not in exc.message:
                    raise
                log.info("executor name %s held by another id; replacing it", c.executor_name)
                await self.owner.remove_executor(c.colony_name, c.executor_name)
                await self._add_executor()
        if existing is None or not current or existing.state is not ExecutorState.APPROVED:
            await self.owner.approve_executor(c.colony_name, c.executor_name)
        functions = await self.me.get_functions(c.colony_name, c.executor_name)
        if not any(f.get("funcname") == FUNCTION_NAME for f in functions):
            await self.me.add_function(c.colony_name, c.executor_name, FUNCTION_NAME, c.executor_type)
        self.health.registered = True

    async def _add_executor(self) -> None:
        c = self.config
        await self.owner.add_executor(
            c.colony_name, self.me.id, c.executor_name, c.executor_type, location=c.location_name,
            hardware=c.capabilities.get("hardware") or (), software=c.capabilities.get("software") or ())

    async def unregister(self) -> None:
        await self.owner.remove_executor(self.config.colony_name, self.config.executor_name)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Register, adopt, then assign until cancelled. Supervisors outlive nothing: they are
        cancelled with the runtime, and their Jobs wait for adoption by the next run."""
        fencing: asyncio.Task[None] | None = None
        helpers: list[asyncio.Task[None]] = []
        try:
            await self.register()
            await self.watch.start()
            fencing = asyncio.create_task(self.fencing().run(), name=f"fencing-{self.config.executor_name}")
            await self.adopt()
            helpers = [asyncio.create_task(self._slice_loop(), name=f"assign-{self.config.executor_name}-{i}")
                       for i in range(ASSIGN_SLICES - 1)]
            await self._assign_loop()
        finally:
            for task in helpers:
                task.cancel()
            if fencing is not None:
                fencing.cancel()
            tasks = list(self._supervisors.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _assign_loop(self) -> None:
        delay = 1.0
        while True:
            self.health.last_loop_time = time.monotonic()
            if self.health.paused != self.config.paused:
                await self._no_slices.wait()
                self.health.paused = self.config.paused  # only now: no assign poll is in flight
                self._on_change()
            if self.config.paused:
                self._config_changed.clear()
                try:
                    await asyncio.wait_for(self._config_changed.wait(), HEARTBEAT_SECONDS / 2)
                except TimeoutError:
                    await self._heartbeat()
                continue
            process: Process | None = None
            slot = False  # holding one of the creates in flight for `process`
            try:
                try:
                    await asyncio.wait_for(self.capacity.wait_for_room(), HEARTBEAT_SECONDS / 2)
                    slice_ = self._slice()
                    if slice_ is not None:
                        await self._assign_slice(slice_)  # admits what it gets
                    else:
                        await self._no_slices.wait()  # advertise exactly what is free: no claims in flight
                        await self._creates.acquire()
                        slot = True
                        process = await self._assign(self.capacity.free)
                finally:
                    if slot and process is None:
                        self._creates.release()
                        slot = False
            except TimeoutError:
                process = await self._heartbeat()
            except (errors.ColoniesUnreachable, errors.ColoniesServerError) as exc:
                self._set_problem(f"Colonies unreachable: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            except errors.Forbidden as exc:
                self._set_problem(f"Colonies refused assign ({exc.message}); registering again")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                await self._try_register()
                continue
            delay = 1.0
            if process is not None:
                await self.admit(process, self._creates.release if slot else None)
                self._backlog.set()  # more may be waiting: drain them with slices

    def _slice(self) -> Resources | None:
        """What one more concurrent assign may advertise now, or None: only while a backlog
        drains, with no GPU budget (Colonies does not match GPUs), when the last admitted
        process's request still fits in what is free and not claimed by other assigns."""
        estimate = self._estimate
        if estimate is None or not self._backlog.is_set() or self.config.paused or self.config.budget.gpus:
            return None
        if not estimate.fits_in(self.capacity.free - self._claimed):
            return None
        return estimate

    async def _assign_slice(self, slice_: Resources) -> None:
        """One immediate assign advertising `slice_`, claimed until its process is admitted.
        A miss (nothing that small is waiting) ends the backlog: back to one long poll."""
        await self._creates.acquire()
        if self._slice() != slice_:  # room or backlog changed while waiting for a create slot
            self._creates.release()
            self._backlog.clear()
            return
        self._claimed = self._claimed + slice_
        self._slices += 1
        self._no_slices.clear()
        release: Callable[[], None] | None = self._creates.release
        try:
            started = time.monotonic()
            process = await self.me.assign(
                self.config.colony_name, -1, available_cpu=f"{max(slice_.cpu_millis, 0)}m",
                available_mem=f"{-(-max(slice_.memory_bytes, 0) // 1024)}Ki")
            self.health.last_assign_time = time.time()
            if process is None:
                self._backlog.clear()
                return
            self.metrics.assign_seconds.observe(time.monotonic() - started)
            release = None  # the supervisor releases it once its Job is created
            await self.admit(process, self._creates.release)
        finally:
            if release is not None:
                release()
            self._claimed = self._claimed - slice_
            self._slices -= 1
            if not self._slices:
                self._no_slices.set()

    async def _slice_loop(self) -> None:
        """A helper assign loop: idle unless a backlog drains."""
        while True:
            await self._backlog.wait()
            slice_ = self._slice()
            if slice_ is None:
                self._backlog.clear()  # no room for a slice: the main loop takes over
                continue
            try:
                await self._assign_slice(slice_)
            except errors.ColoniesError:  # the main loop reports and backs off
                self._backlog.clear()

    async def _assign(self, free: Resources) -> Process | None:
        started = time.monotonic()
        process = await self.me.assign(
            self.config.colony_name, self.config.assign_timeout_seconds,
            available_cpu=f"{max(free.cpu_millis, 0)}m", available_mem=f"{max(free.memory_bytes, 0) // MIB}Mi")
        self.health.last_assign_time = time.time()
        if process is not None:
            self.metrics.assign_seconds.observe(time.monotonic() - started)
        if not self.health.colonies_ok:
            self.health.colonies_ok, self.health.problem = True, ""
            self._on_change()
        return process

    async def _heartbeat(self) -> Process | None:
        """A zero-capacity assign keeps the executor alive in Colonies while it is full."""
        try:
            return await self.me.assign(self.config.colony_name, -1, available_cpu="0m", available_mem="0Mi")
        except errors.ColoniesError as exc:
            self._set_problem(f"heartbeat assign failed: {exc}")
            return None

    async def _try_register(self) -> None:
        try:
            await self.register()
        except errors.ColoniesError as exc:
            self._set_problem(f"registering with Colonies failed: {exc}")

    def _set_problem(self, problem: str) -> None:
        log.warning("%s/%s: %s", self.config.namespace, self.config.resource_name, problem)
        changed = self.health.problem != problem
        self.health.colonies_ok, self.health.problem = False, problem
        if changed:
            self._on_change()

    # --- fencing -----------------------------------------------------------------------------

    def fencing(self) -> Fencing:
        return Fencing(self.me, self.config.colony_name, self.config.executor_type, self.in_flight, self.fence,
                       attempt_of=self.attempt_of)

    def in_flight(self) -> dict[str, Attempt]:
        return {pid: _attempt(s) for pid, s in self._running.items()}

    def attempt_of(self, process_id: str) -> Attempt | None:
        s = self._running.get(process_id)
        return _attempt(s) if s is not None else None

    def fence(self, process_id: str, reason: str) -> None:
        supervisor = self._running.get(process_id)
        if supervisor is not None:
            log.info("process %s: %s; stopping its Job", process_id[:12], reason)
            supervisor.fence(reason)

    # --- admitting a process -----------------------------------------------------------------

    async def admit(self, process: Process, on_created: Callable[[], None] | None = None) -> None:
        """Validate, reserve capacity (waiting for it if need be), and start a supervisor.
        `on_created` is called once the process's Job was created, or it never will be."""
        assigned_at = time.monotonic()
        handed = False
        try:
            await self._retire_previous_attempt(process)
            try:
                run = spec.parse_process(process, self.config.policy)
                job = builder.build_job(run, self.job_settings)
                request = request_of(job)
            except (spec.SpecError, ValueError) as exc:
                self._spawn(process.processid, self._reject(process, str(exc)))
                return
            over = request.over(self.config.budget)
            if over:
                self._spawn(process.processid, self._reject(
                    process, "invalid funcspec: conditions ask for more than this executor can ever run: "
                    + ", ".join(over)))
                return
            await self.capacity.reserve(request)
            self._estimate = request
            self._supervise(Supervisor(self._context(), process, run, request, assigned_at, job=job,
                                       on_created=on_created))
            handed = True
        finally:
            if not handed and on_created is not None:
                on_created()

    async def _retire_previous_attempt(self, process: Process) -> None:
        """Colonies gave us a process we still run an older attempt of: that attempt was
        unassigned. Stop it (delete its Job) before the new one starts: never two at once."""
        old = self._running.get(process.processid)
        task = self._supervisors.get(process.processid)
        if old is not None and task is not None:
            old.fence(f"re-assigned as attempt {process.retries}")
            await asyncio.gather(task, return_exceptions=True)

    def _supervise(self, supervisor: Supervisor) -> None:
        pid = supervisor.pid
        self._running[pid] = supervisor
        self._spawn(pid, supervisor.run())
        self._supervisors[pid].add_done_callback(
            lambda _: self._running.pop(pid, None) if self._running.get(pid) is supervisor else None)

    async def _reject(self, process: Process, message: str) -> End:
        log.info("process %s rejected: %s", process.processid[:12], message)
        try:
            await report(lambda: self.me.close_failed(process.processid, [message]), "failing a bad funcspec")
            end = End.FAILED
        except errors.ColoniesRejected:
            end = End.FENCED
        self.stats.count(end)
        return end

    def _spawn(self, process_id: str, coroutine) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coroutine, name=f"process-{process_id[:12]}")
        self._supervisors[process_id] = task
        self._changed()

        def done(t: asyncio.Task[End]) -> None:
            self._supervisors.pop(process_id, None)
            self._changed()
            if not t.cancelled() and t.exception() is not None:
                log.error("supervisor of %s crashed", process_id[:12], exc_info=t.exception())

        task.add_done_callback(done)

    # --- adoption ----------------------------------------------------------------------------

    async def adopt(self) -> None:
        """Take back this executor's unreported Jobs (from the watch's initial LIST): supervise
        the ones whose attempt is still ours; mark the ones closed before a crash as reported
        (never report twice); delete the ones that stopped being ours.

        Every Job is looked up first, and only then do the adopted supervisors start: each one
        reads its shipped log back from Colonies and opens a log stream, work that would slow
        the remaining lookups down (1,000 Jobs after a SIGKILL: all re-adopted 3.1 s after
        liveness this way, 6.9 s interleaved)."""
        label = builder.label_value(self.config.executor_name)
        gate = asyncio.Semaphore(ADOPT_CONCURRENCY)  # one Colonies lookup per Job: not one after another
        adopted: list[Supervisor] = []

        async def one(job: dict) -> None:
            async with gate:
                supervisor = await self._adopt_job(job)
            if supervisor is not None:
                adopted.append(supervisor)

        await asyncio.gather(*(one(job) for job in self.watch.jobs_of_executor(label)))
        for supervisor in adopted:
            self._supervise(supervisor)

    async def _adopt_job(self, job: dict) -> Supervisor | None:
        meta = job.get("metadata", {})
        annotations = meta.get("annotations") or {}
        pid = annotations.get(builder.PROCESS_ID_ANNOTATION)
        if not pid or annotations.get(REPORTED_ANNOTATION) or pid in self._supervisors:
            return None
        attempt = int((meta.get("labels") or {}).get(builder.ATTEMPT_LABEL) or 0)
        try:
            process = await self.me.get_process(pid)
        except errors.NotFound:
            await self.kube.delete_job(self.config.namespace, meta["name"])
            return None
        mine = process.assignedexecutorid == self.me.id and process.retries == attempt
        if process.state is ProcessState.RUNNING and mine:
            return self._adopt(process, job)
        if process.state in (ProcessState.SUCCESS, ProcessState.FAILED) and process.assignedexecutorid == self.me.id:
            outcome = "success" if process.state is ProcessState.SUCCESS else "failed"
            await self.kube.annotate_job(self.config.namespace, meta["name"], {REPORTED_ANNOTATION: outcome})
        else:
            log.info("Job %s belongs to a process that is no longer ours; deleting it", meta["name"])
            await self.kube.delete_job(self.config.namespace, meta["name"])
        return None

    def _adopt(self, process: Process, job: dict) -> Supervisor | None:
        try:
            run = spec.parse_process(process, self.config.policy)
        except spec.SpecError as exc:
            self._spawn(process.processid, self._reject(process, str(exc)))
            return None
        request = request_of(job)
        self.capacity.used = self.capacity.used + request  # already running: held even over budget
        supervisor = Supervisor(self._context(), process, run, request)
        supervisor.resume = True
        return supervisor

    async def stop_and_fail_in_flight(self, reason: str) -> None:
        """The resource is being deleted: fail what runs (the executor is about to vanish,
        so nobody could report it later), delete its Jobs, and unregister."""
        for pid, task in list(self._supervisors.items()):
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            try:
                await self.me.close_failed(pid, [reason])
            except errors.ColoniesError as exc:
                log.info("failing %s on executor removal: %s", pid[:12], exc)
        for job in self.watch.jobs_of_executor(builder.label_value(self.config.executor_name)):
            await self.kube.delete_job(self.config.namespace, job["metadata"]["name"])
        await self.unregister()


def _attempt(supervisor: Supervisor) -> Attempt:
    return Attempt(supervisor.process.retries, supervisor.process.starttime)
