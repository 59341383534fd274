"""The executor's resource budget and what its processes hold of it.

Assign asks Colonies only for what is free (`availablecpu`/`availablemem`), but Colonies
matches a process's per-container cpu/mem, not its total (nodes × containers), and never
GPUs; so a process is admitted here too, before its Job is created. One that does not fit
yet waits for room in its own task, in line: smaller processes that do fit keep starting
around it (backfill) until it has waited `BACKFILL_SECONDS`, after which the room it needs
is no longer offered to newcomers, so it cannot starve.

Under Kueue (spec.kueue) a process's Job waits in Kueue's queue, created suspended: while
queued it holds none of the budget, only one of `queue_limit` places, and newcomers are
offered no more Jobs than there are free places. Once Kueue admits it, its requests are held
like any running Job's, whether they fit or not: Kueue's quota decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

BACKFILL_SECONDS = 60.0  # how long a waiting process lets smaller newcomers start before it


@dataclass(frozen=True)
class Resources:
    cpu_millis: int = 0
    memory_bytes: int = 0
    gpus: int = 0
    jobs: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis + other.cpu_millis, self.memory_bytes + other.memory_bytes,
                         self.gpus + other.gpus, self.jobs + other.jobs)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_millis - other.cpu_millis, self.memory_bytes - other.memory_bytes,
                         self.gpus - other.gpus, self.jobs - other.jobs)

    def fits_in(self, other: Resources) -> bool:
        return (self.cpu_millis <= other.cpu_millis and self.memory_bytes <= other.memory_bytes
                and self.gpus <= other.gpus and self.jobs <= other.jobs)

    def over(self, budget: Resources) -> list[str]:
        """Which dimensions exceed `budget`, as words for an error message."""
        out = []
        if self.cpu_millis > budget.cpu_millis:
            out.append(f"cpu {self.cpu_millis}m > capacity {budget.cpu_millis}m")
        if self.memory_bytes > budget.memory_bytes:
            out.append(f"memory {self.memory_bytes // 2**20}Mi > capacity {budget.memory_bytes // 2**20}Mi")
        if self.gpus > budget.gpus:
            out.append(f"gpu {self.gpus} > capacity {budget.gpus}")
        return out


@dataclass
class _Waiter:
    request: Resources
    since: float
    granted: asyncio.Future[None]


class Capacity:
    """Budget minus what is held; waiters are served in line as room appears, and
    listeners (the assign loop) are woken whenever the free room changes."""

    def __init__(self, budget: Resources, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.used = Resources()
        self._clock = clock
        self._waiters: list[_Waiter] = []
        self._listeners: set[asyncio.Event] = set()
        self.queue_limit: int | None = None  # Kueue's maxQueued; None: no Kueue
        self.queued = 0                      # Jobs waiting for Kueue's admission

    @property
    def free(self) -> Resources:
        return self.budget - self.used

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def offered(self) -> Resources:
        """What newcomers may take: the free room, less what long-waiting processes need."""
        now = self._clock()
        held = Resources()
        for waiter in self._waiters:
            if now - waiter.since >= BACKFILL_SECONDS:
                held = held + waiter.request
        room = self.free - held
        if self.queue_limit is not None:  # a newcomer waits in Kueue's queue first
            room = dataclasses.replace(room, jobs=min(room.jobs, self.queue_limit - self.queued))
        return room

    def listen(self) -> asyncio.Event:
        """An event set whenever the free room changes (the listener clears it)."""
        event = asyncio.Event()
        self._listeners.add(event)
        return event

    def unlisten(self, event: asyncio.Event) -> None:
        self._listeners.discard(event)

    def try_reserve(self, request: Resources) -> bool:
        """Hold `request` now if it fits in what newcomers are offered."""
        if not request.fits_in(self.offered()):
            return False
        self.used = self.used + request
        self._changed()
        return True

    def hold(self, request: Resources) -> None:
        """Hold `request` whether it fits or not: an adopted Job already runs."""
        self.used = self.used + request
        self._changed()

    async def reserve(self, request: Resources) -> None:
        """Hold `request`, waiting in line for room. The caller checks `request.over(budget)` first."""
        if self.try_reserve(request):
            return
        waiter = _Waiter(request, self._clock(), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._changed()  # what is offered to newcomers may shrink once it has waited long
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.granted.done() and not waiter.granted.cancelled():
                self.release(request)  # granted just as it was cancelled: give it back
            raise

    def release(self, request: Resources) -> None:
        self.used = self.used - request
        self._grant()
        self._changed()

    def set_budget(self, budget: Resources) -> None:
        self.budget = budget
        self._grant()
        self._changed()

    def set_queue_limit(self, limit: int | None) -> None:
        self.queue_limit = limit
        self._changed()

    def enqueue(self) -> None:
        """One more Job waits for Kueue (it holds no budget meanwhile)."""
        self.queued += 1
        self._changed()

    def dequeue(self) -> None:
        """A Job stopped waiting for Kueue: admitted (the caller then holds its requests) or ended."""
        self.queued -= 1
        self._changed()

    def tick(self) -> None:
        """Re-evaluate after time passed (a waiter may have stopped letting others pass)."""
        self._changed()

    def _grant(self) -> None:
        """Serve waiters in line; a later one that fits starts before an earlier one that does
        not (backfill), unless an earlier one has waited BACKFILL_SECONDS."""
        now = self._clock()
        blocked = Resources()  # room that long-waiting, still unserved waiters claim
        for waiter in list(self._waiters):
            if waiter.granted.done():
                self._waiters.remove(waiter)
                continue
            if waiter.request.fits_in(self.free - blocked):
                self._waiters.remove(waiter)
                self.used = self.used + waiter.request
                waiter.granted.set_result(None)
            elif now - waiter.since >= BACKFILL_SECONDS:
                blocked = blocked + waiter.request

    def _changed(self) -> None:
        for event in self._listeners:
            event.set()
