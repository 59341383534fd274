"""The assign loop: ask Colonies for work while there is room, and keep telling it this
executor is alive.

Every assign in flight advertises part of the room (what `Capacity.offered()` leaves after
the other assigns' claims) and holds that part as a claim until it is answered, so what is
advertised and what is admitted never together exceed the budget:

- one long poll (`assignTimeoutSeconds`) advertises all unclaimed room while nothing waits;
  when room appears during the poll (a Job ended) and the poll advertises less than the
  largest process admitted so far, it is restarted with the new room, so a process that fits
  now starts now, not when the poll times out. Only then: ending a poll can lose its answer
  (the server may assign as the connection closes; that process is then RUNNING on us with
  no reply), so each ended poll asks fencing for a look soon, which runs such a process
  within about two seconds instead of two poll intervals;
- while a backlog drains (the last assign found work at once), up to `SLICES` one-shot
  assigns run at once, each advertising the size of the last process admitted;
- a heartbeat, an assign that can match nothing (`availablecpu: "-1m"`: the server selects
  `cpu <= -1`), whenever nothing was sent for `heartbeatSeconds` (paused, draining, full).
  Colonies refreshes an executor's last-heard time only on assign, and after 600 s of
  silence it removes the executor and re-queues its work.

With `capacity.elastic: N`, every assign in flight also takes one of the N places of
processes without a node (`placement`), so a burst of assigns can never leave more than N
Jobs waiting for one.

Admission is synchronous (`admit(process, release)`): a process that must wait for room
waits in its own task, never here, so this loop never stops polling or heartbeating.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.colonies.models import Process
from colonies_operator.metrics import Metrics
from colonies_operator.jobs.resources import Resources
from colonies_operator.runtime.capacity import Capacity
from colonies_operator.runtime.placement import Placement

log = logging.getLogger(__name__)

SLICES = 4              # one-shot assigns in flight at once while a backlog drains
CREATES_IN_FLIGHT = 16  # assign no faster than Jobs get created: assigned → created stays short
NOTHING = ("-1m", "-1Mi")  # what a heartbeat advertises: no process can match it
MIB = 2**20

Admit = Callable[[Process, Callable[[], None]], None]  # (process, release the create slot)


@dataclass
class AssignSettings:
    colony: str
    timeout_seconds: int = 20
    heartbeat_seconds: float = 60.0
    paused: bool = False


@dataclass
class Health:
    """What the resource reports and the liveness probe reads."""

    registered: bool = False
    assigning: bool = False                # the loop runs (the watch listed, adoption is done)
    colonies_ok: bool = True
    problem: str = ""
    colony_paused: bool = False            # the colony's assignments are paused on the server
    paused: bool = False                   # spec.paused in effect: no assign in flight
    last_assign_time: float | None = None  # wall clock of the last assign answer
    last_loop_time: float = 0.0            # monotonic; the liveness check reads this


def has_room(room: Resources, budget: Resources) -> bool:
    if room.jobs <= 0 or room.cpu_millis <= 0 or room.memory_bytes <= 0:
        return False
    return budget.gpus == 0 or room.gpus > 0  # a GPU executor assigns only with a GPU free


class Assigner:
    def __init__(self, colonies: ColoniesClient, capacity: Capacity, admit: Admit, *,
                 settings: Callable[[], AssignSettings], health: Health, metrics: Metrics,
                 on_forbidden: Callable[[], Awaitable[None]], on_change: Callable[[], None] = lambda: None,
                 on_abandoned: Callable[[], None] = lambda: None,
                 placement: Placement | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.colonies = colonies
        self.capacity = capacity
        self.placement = placement or Placement()
        self._admit = admit
        self._settings = settings
        self.health = health
        self.metrics = metrics
        self._on_forbidden = on_forbidden
        self._on_change = on_change
        self._on_abandoned = on_abandoned  # a long poll was ended early: its answer may be lost
        self._clock = clock
        self.draining = False
        self._halted = False              # stop() was called: run() returns
        self._claimed = Resources()
        self._poll: asyncio.Task[None] | None = None
        self._poll_claim = Resources()
        self._restart = asyncio.Event()   # the long poll in flight is stale: end it
        self._shots: set[asyncio.Task[None]] = set()
        self._backlog = False
        self._estimate: Resources | None = None
        self._largest: Resources | None = None  # per dimension, the most one admitted process asked for
        self._creating = 0                # assigns whose Job is not created yet
        self._last_sent = clock()
        self._retry_at = 0.0              # after a failure, no assign before this
        self._delay = 1.0
        self._wake = asyncio.Event()
        self._registering = asyncio.Lock()

    @property
    def stopped(self) -> bool:
        return self._settings().paused or self.draining

    @property
    def in_flight(self) -> int:
        return len(self._shots) + (self._poll is not None)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """End `run()` (after cancelling what is in flight)."""
        self._halted = True
        self._wake.set()

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        room_changed = self.capacity.listen()
        try:
            while not self._halted:
                now = self._clock()
                self.health.last_loop_time = now
                self._wake.clear()
                room_changed.clear()
                self._update_paused()
                if not self.stopped and now >= self._retry_at:
                    self._start_assigns()
                due = self._last_sent + self._settings().heartbeat_seconds - now
                if due <= 0 and not self.in_flight:
                    await self._heartbeat()
                    continue
                waits = [asyncio.ensure_future(e.wait()) for e in (self._wake, room_changed)]
                timeout = max(min(due if due > 0 else self._settings().heartbeat_seconds,
                                  self._retry_at - now if self._retry_at > now else float("inf"), 30.0), 0.01)
                try:
                    await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            self.capacity.unlisten(room_changed)
            tasks = [t for t in (self._poll, *self._shots) if t is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _update_paused(self) -> None:
        """spec.paused takes effect once no assign is in flight (Ready: Pausing → Paused)."""
        if self.stopped and self._poll is not None:
            self._restart.set()  # a long poll must not take work the executor will not run
        paused = self._settings().paused and not self.in_flight
        if paused != self.health.paused:
            self.health.paused = paused
            self._on_change()

    def _start_assigns(self) -> None:
        budget = self.capacity.budget
        while self._creating < CREATES_IN_FLIGHT:
            slots = self.placement.slots()
            if slots is not None and slots - self.in_flight <= 0:
                return  # capacity.elastic: enough wait for a node (each assign in flight may add one)
            room = self.capacity.offered() - self._claimed
            if not has_room(room, budget):
                return
            if self._poll is not None:
                if self._largest is None or not self._largest.fits_in(self._poll_claim):
                    # Room appeared while the long poll waits with too little for what runs
                    # here: restart it with all of it.
                    self._restart.set()
                return
            if self._backlog and len(self._shots) < SLICES:
                size = self._estimate if self._estimate and self._estimate.fits_in(room) else _claim(room)
                self._launch(self._one_shot(size), size, shot=True)
            elif not self._backlog and not self._shots:
                self._launch(self._long_poll(_claim(room)), _claim(room), shot=False)
                return
            else:
                return

    def _launch(self, coroutine: Awaitable[None], claim: Resources, *, shot: bool) -> None:
        self._claimed = self._claimed + claim
        self._creating += 1
        self._last_sent = self._clock()
        task = asyncio.ensure_future(coroutine)
        if shot:
            self._shots.add(task)
        else:
            self._poll, self._poll_claim = task, claim
            self._restart.clear()

        def done(t: asyncio.Task[None]) -> None:
            self._claimed = self._claimed - claim
            if shot:
                self._shots.discard(t)
            elif self._poll is t:
                self._poll = None
            self._wake.set()
            if not t.cancelled() and t.exception() is not None:
                log.error("assign task failed", exc_info=t.exception())

        task.add_done_callback(done)

    # --- one assign each -------------------------------------------------------------------------

    async def _long_poll(self, claim: Resources) -> None:
        timeout = self._settings().timeout_seconds
        call = asyncio.ensure_future(self._assign(claim, timeout))
        restart = asyncio.ensure_future(self._restart.wait())
        try:
            await asyncio.wait({call, restart}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the loop is stopping: take the call down with us
            call.cancel()
            await asyncio.gather(call, return_exceptions=True)
            raise
        finally:
            restart.cancel()
        if not call.done():
            call.cancel()  # the server stops waiting when the connection closes
            self._on_abandoned()
        try:
            process = await call
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            process = None
        except errors.ColoniesError as exc:
            await self._failed(exc, long_poll=True)
            process = None
        self._answered(process, long_poll=True)

    async def _one_shot(self, size: Resources) -> None:
        try:
            process = await self._assign(size, -1)
        except errors.ColoniesError as exc:
            await self._failed(exc, long_poll=False)
            process = None
        self._answered(process, long_poll=False)

    async def _assign(self, claim: Resources, timeout: int) -> Process | None:
        started = self._clock()
        log.debug("assign (timeout %s) advertising %dm / %d bytes", timeout, claim.cpu_millis, claim.memory_bytes)
        try:
            process = await self.colonies.assign(
                self._settings().colony, timeout, available_cpu=f"{max(claim.cpu_millis, 0)}m",
                available_mem=f"{-(-max(claim.memory_bytes, 0) // 1024)}Ki")
        except BaseException:
            self._release_slot()
            raise
        self.health.last_assign_time = time.time()
        log.debug("assign (timeout %s) answered: %s", timeout, process.processid[:12] if process else "nothing")
        if process is not None:
            self.metrics.assign_seconds.observe(self._clock() - started)
            self._hand_over(process)
        else:
            self._release_slot()
        self._ok()
        return process

    def _hand_over(self, process: Process) -> None:
        """Admit at once, before the claim is released: the admitted process holds its room."""
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release_slot()

        try:
            self._admit(process, release)
        except Exception:  # admission never raises by design; never lose the slot if it did
            log.exception("admitting %s failed", process.processid[:12])
            release()

    def _answered(self, process: Process | None, *, long_poll: bool) -> None:
        if process is not None:
            self._backlog = True  # more may be waiting: drain with one-shots
        elif not long_poll:
            self._backlog = False  # nothing of that size waits: back to one long poll

    def note_admitted(self, request: Resources) -> None:
        """The size the next one-shots advertise while a backlog drains."""
        self._estimate = request
        big = self._largest or request
        self._largest = Resources(max(big.cpu_millis, request.cpu_millis), max(big.memory_bytes, request.memory_bytes),
                                  max(big.gpus, request.gpus), 1)

    def _release_slot(self) -> None:
        self._creating -= 1
        self._wake.set()

    # --- heartbeat and failures --------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        self._last_sent = self._clock()
        try:
            process = await self.colonies.assign(self._settings().colony, -1,
                                                 available_cpu=NOTHING[0], available_mem=NOTHING[1])
        except errors.AssignmentsPaused:
            self._colony_paused(True)  # heard all the same: the server marks us alive first
            return
        except errors.Forbidden as exc:
            await self._failed(exc, long_poll=False)
            return
        except errors.ColoniesError as exc:
            self._problem(f"heartbeat assign failed: {exc}")
            return
        self.health.last_assign_time = time.time()
        self._ok()
        if process is not None:  # the server matched it anyway: run it rather than drop it
            self._creating += 1
            self._hand_over(process)

    async def _failed(self, exc: errors.ColoniesError, *, long_poll: bool) -> None:
        if isinstance(exc, errors.AssignmentsPaused):
            self._colony_paused(True)
            if not long_poll:  # a one-shot is answered at once: let the next long poll wait it out
                self._backlog = False
            return
        if isinstance(exc, errors.Forbidden):
            self._problem(f"Colonies refused assign ({exc.message}); registering again")
            self._backoff()
            async with self._registering:
                await self._on_forbidden()
            return
        if isinstance(exc, (errors.ColoniesUnreachable, errors.ColoniesServerError)):
            self._problem(f"Colonies unreachable: {exc}")
            self._backoff()
            return
        self._problem(f"assign failed: {exc}")
        self._backoff()

    def _backoff(self) -> None:
        self._retry_at = self._clock() + self._delay
        self._delay = min(self._delay * 2, 30.0)
        self._backlog = False

    def _ok(self) -> None:
        self._delay = 1.0
        self._colony_paused(False)
        if not self.health.colonies_ok:
            self.health.colonies_ok, self.health.problem = True, ""
            self._on_change()

    def _colony_paused(self, paused: bool) -> None:
        if self.health.colony_paused != paused:
            self.health.colony_paused = paused
            self._on_change()

    def _problem(self, problem: str) -> None:
        log.warning("%s", problem)
        changed = self.health.problem != problem
        self.health.colonies_ok, self.health.problem = False, problem
        if changed:
            self._on_change()


def _claim(room: Resources) -> Resources:
    """A claim on all of `room` for one process (one Job)."""
    return Resources(room.cpu_millis, room.memory_bytes, room.gpus, 1)
