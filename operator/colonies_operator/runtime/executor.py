"""`ExecutorRuntime`: one executor identity's life — register with Colonies, adopt Jobs left
by an earlier run, assign processes while capacity allows, and supervise each; drain when
the identity changes, and fail what runs when the ColonyExecutor is deleted.

Plain asyncio: the resource layer constructs it with a parsed config and keys and awaits
`run()`; tests drive it the same way without kopf. The jobs of the parts live next to it:
`assigning` (the assign loop), `admission` (a process → a supervisor), `adoption` (Jobs
and orphans after a restart), `registration`, `fencing`, `supervisor`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient, Connection
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import Process
from colonies_operator.config import ExecutorConfig
from colonies_operator.metrics import Metrics
from colonies_operator.runtime import admission, adoption
from colonies_operator.runtime.assigning import Assigner, AssignSettings, Health
from colonies_operator.runtime.capacity import Capacity
from colonies_operator.runtime.demand import Demand
from colonies_operator.runtime.fencing import Attempt, Fencing
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.placement import Placement
from colonies_operator.runtime.registration import Identity, NameConflict, Registration
from colonies_operator.runtime.context import Context, End, ExecutorStats, report
from colonies_operator.runtime.supervisor import Supervisor
from colonies_operator.runtime.watch import JobWatch

log = logging.getLogger(__name__)

REMOVAL_CONCURRENCY = 64  # Colonies closes and Job deletes in flight at once when a resource is deleted


def identity_of(config: ExecutorConfig) -> Identity:
    return Identity(config.colony_name, config.executor_name, config.executor_type, config.location_name)


class ExecutorRuntime:
    def __init__(
        self, config: ExecutorConfig, *, connection: Connection, colony_key: Key, executor_key: Key,
        kube: KubeApi, watch: JobWatch, capacity: Capacity | None = None,
        on_change: Callable[[], None] = lambda: None, metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.owner = connection.client(colony_key)
        self.me: ColoniesClient = connection.client(executor_key)
        self.reader = connection.client(colony_key.derive("reader"))
        self.kube = kube
        self.watch = watch
        self.capacity = capacity or Capacity(config.budget, pools=config.profile_budgets)
        self.capacity.set_queue_limit(config.kueue.max_queued if config.kueue else None)
        self.placement = Placement(config.elastic, on_change=lambda: self.assigner.wake())
        self.demand = Demand(self.me, config.colony_name, config.executor_type, config.executor_name,
                             config.location_name, interval=config.waiting_poll_seconds, on_change=on_change)
        self.stats = ExecutorStats()
        self.health = Health()
        self.registration = Registration(self.owner, self.me, self.reader, identity_of(config))
        self._on_change = on_change
        self.supervisors: dict[str, asyncio.Task[End]] = {}  # process id → its task (rejects too)
        self.running: dict[str, Supervisor] = {}              # process id → its supervisor
        self._idle = asyncio.Event()
        self._idle.set()
        self.job_settings = config.job_settings(self.me.id)
        self.assigner = Assigner(self.me, self.capacity, self.admit, settings=self._assign_settings,
                                 health=self.health, metrics=self.metrics, on_forbidden=self._registered_again,
                                 on_change=on_change, placement=self.placement,
                                 on_abandoned=lambda: self.fencing.look_soon())
        self.fencing = Fencing(self.me, config.colony_name, config.executor_type, self.in_flight, self.fence,
                               attempt_of=self.attempt_of, on_orphan=self._orphan)
        self._fatal: BaseException | None = None
        self.started_at = time.monotonic()

    @property
    def executor_id(self) -> str:
        return self.me.id

    def _assign_settings(self) -> AssignSettings:
        c = self.config
        return AssignSettings(c.colony_name, c.assign_timeout_seconds, c.heartbeat_seconds, c.paused)

    def context(self) -> Context:
        return Context(colonies=self.me, kube=self.kube, watch=self.watch, capacity=self.capacity,
                       job_settings=self.job_settings, logs=self.config.logs,
                       pending_grace_seconds=self.config.pending_grace_seconds, stats=self.stats,
                       policy=self.config.policy, env_settle_seconds=self.config.env_settle_seconds,
                       unschedulable_grace_seconds=self.config.elastic_pending_seconds if self.config.elastic else None,
                       placement=self.placement,
                       metrics=self.metrics, on_change=self._changed)

    def _changed(self) -> None:
        self.stats.in_flight = len(self.supervisors)
        self._on_change()

    async def update_config(self, config: ExecutorConfig) -> None:
        """Apply a changed spec of the same identity: budget, pause, limits and capabilities."""
        capabilities_changed = config.capabilities != self.config.capabilities
        self.config = config
        self.job_settings = config.job_settings(self.me.id)
        self.capacity.set_budget(config.budget, config.profile_budgets)
        self.capacity.set_queue_limit(config.kueue.max_queued if config.kueue else None)
        self.placement.elastic = config.elastic
        self.demand.set_interval(config.waiting_poll_seconds)
        self.assigner.wake()
        if capabilities_changed:
            try:
                await self.registration.update_capabilities(**_capabilities(config))
            except errors.ColoniesError as exc:
                log.warning("updating the capabilities of %s failed: %s", config.executor_name, exc)

    # --- the run ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Register, adopt, then assign until cancelled. Supervisors are cancelled with the
        runtime, and their Jobs wait for adoption by the next run."""
        fencing: asyncio.Task[None] | None = None
        demand: asyncio.Task[None] | None = None
        try:
            await self.watch.start()
            await self._register()
            self.health.registered = True
            self._on_change()
            await adoption.adopt(self)
            await self.fencing.poll_once(at_start=True)  # orphans, before anything is assigned
            fencing = asyncio.create_task(self.fencing.run(), name=f"fencing-{self.config.executor_name}")
            demand = asyncio.create_task(self.demand.run(), name=f"demand-{self.config.executor_name}")
            self.health.assigning = True
            self._on_change()
            await self.assigner.run()
            if self._fatal is not None:
                raise self._fatal
        finally:
            self.health.assigning = False
            for task in (fencing, demand):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            tasks = list(self.supervisors.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _register(self) -> None:
        """Register; a name held by an earlier identity of this very resource (its key was
        edited while the operator was down: its Jobs carry that id) is taken back."""
        try:
            await self.registration.register(**_capabilities(self.config))
        except NameConflict as conflict:
            if not adoption.made_by_this_resource(self, conflict.holder.executorid):
                raise
            await self.registration.remove_earlier(self.config.executor_name, conflict.holder.executorid)
            await self.registration.register(**_capabilities(self.config))

    async def _registered_again(self) -> None:
        """Colonies refused an assign: the executor was removed (by hand, or after 600 s of
        silence) or not approved. Register again, unless another executor took the name."""
        try:
            await self.registration.register(**_capabilities(self.config))
        except NameConflict as exc:
            # Our registration is gone and so is our right to report: what runs was re-queued.
            for supervisor in list(self.running.values()):
                supervisor.fence("the executor was removed from Colonies and its name taken")
            self._fatal = exc
            self.assigner.stop()
        except errors.ColoniesError as exc:
            log.warning("registering %s again failed: %s", self.config.executor_name, exc)

    # --- in flight ------------------------------------------------------------------------------

    def in_flight(self) -> dict[str, Attempt]:
        return {pid: _attempt(s) for pid, s in self.running.items()}

    def attempt_of(self, process_id: str) -> Attempt | None:
        s = self.running.get(process_id)
        return _attempt(s) if s is not None else None

    def fence(self, process_id: str, reason: str) -> None:
        supervisor = self.running.get(process_id)
        if supervisor is not None and supervisor.fence(reason):
            log.info("process %s: %s; stopping its Job", process_id[:12], reason)

    def admit(self, process: Process, on_created: Callable[[], None] | None = None) -> None:
        """A process Colonies assigned to us → a supervisor (or a rejection), at once."""
        admission.admit(self, process, on_created)

    def supervise(self, supervisor: Supervisor) -> None:
        pid = supervisor.pid
        self.running[pid] = supervisor
        self.placement.admitted(supervisor)  # at once: the assign loop counts it before its task runs
        task = self.spawn(pid, supervisor.run())

        def done(_: asyncio.Task[End]) -> None:
            self.placement.placed(supervisor)
            if self.running.get(pid) is supervisor:
                del self.running[pid]

        task.add_done_callback(done)

    def spawn(self, process_id: str, coroutine: Any) -> asyncio.Task[End]:
        task = asyncio.create_task(coroutine, name=f"process-{process_id[:12]}")
        self.supervisors[process_id] = task
        self._idle.clear()
        self._changed()

        def done(t: asyncio.Task[End]) -> None:
            if self.supervisors.get(process_id) is t:
                del self.supervisors[process_id]
            if not self.supervisors:
                self._idle.set()
            self._changed()
            if not t.cancelled() and t.exception() is not None:
                log.error("supervisor of %s crashed", process_id[:12], exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def _orphan(self, process: Process) -> None:
        if process.processid not in self.supervisors:
            self.spawn(process.processid, adoption.take_orphan(self, process))

    # --- the end of an identity ------------------------------------------------------------------

    async def drain(self) -> None:
        """Take nothing new (heartbeats go on) and wait until everything in flight has ended."""
        self.assigner.draining = True
        self.assigner.wake()
        await self._idle.wait()

    async def remove(self, reason: str, running: asyncio.Task[Any] | None = None) -> None:
        """The resource is deleted: stop `running` (this runtime's `run()`), fail what ran (the
        executor is about to vanish, so nobody could report it later), delete its Jobs, and
        unregister. Concurrent throughout: kopf gives a deleted resource's daemon half a minute."""
        started = time.monotonic()
        pids = list(self.supervisors)
        names = {j["metadata"]["name"] for j in self.watch.jobs_of_executor(self.me.id)}
        names |= {s.job_name for s in self.running.values()}
        if running is not None:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        gate = asyncio.Semaphore(REMOVAL_CONCURRENCY)

        async def fail(pid: str) -> None:
            async with gate:
                try:
                    await report(lambda: self.me.close_failed(pid, [reason]), f"failing {pid[:12]}")
                except errors.ColoniesRejected as exc:
                    log.info("failing %s on executor removal: %s", pid[:12], exc)

        async def delete(name: str) -> None:
            async with gate:
                try:
                    await self.kube.delete_job(self.config.namespace, name)
                except Exception as exc:
                    log.warning("deleting Job %s on executor removal failed: %s", name, exc)

        await asyncio.gather(*(fail(pid) for pid in pids), *(delete(name) for name in names))
        await self.registration.unregister()
        log.info("executor %s removed: %d processes failed and %d Jobs deleted in %.1fs",
                 self.config.executor_name, len(pids), len(names), time.monotonic() - started)


def _attempt(supervisor: Supervisor) -> Attempt:
    return Attempt(supervisor.process.retries, supervisor.process.starttime)


def _capabilities(config: ExecutorConfig) -> dict[str, Any]:
    caps = config.capabilities
    return {"hardware": list(caps.get("hardware") or ()), "software": list(caps.get("software") or ())}
