"""The executor's resource budget and what its processes hold of it.

Assign asks Colonies only for what is free (`availablecpu`/`availablemem`), but Colonies
matches a process's per-container cpu/mem, not its total (nodes × containers), and never
GPUs; so a process is admitted here too, before its Job is created. One that does not fit
yet waits for room in its own task, in line: smaller processes that do fit keep starting
around it (backfill) until it has waited `BACKFILL_SECONDS`, after which the room it needs
is no longer offered to newcomers, so it cannot starve.

A profile (spec.profiles) may have a budget of its own, a pool inside the executor's: a
process of that profile needs room in both. One waiting only for its pool's room holds
nothing back from the others.

Under Kueue (spec.kueue) a process's Job waits in Kueue's queue, created suspended: while
queued it holds none of the budget, only one of `queue_limit` places, and newcomers are
offered no more Jobs than there are free places. Once Kueue admits it, its requests are held
like any running Job's, whether they fit or not: Kueue's quota decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from colonies_operator.jobs.resources import Resources

BACKFILL_SECONDS = 60.0  # how long a waiting process lets smaller newcomers start before it


@dataclass
class _Waiter:
    request: Resources
    since: float
    granted: asyncio.Future[None]
    pool: str = ""


class Capacity:
    """Budget minus what is held; waiters are served in line as room appears, and
    listeners (the assign loop) are woken whenever the free room changes."""

    def __init__(self, budget: Resources, clock: Callable[[], float] = time.monotonic,
                 pools: Mapping[str, Resources] | None = None) -> None:
        self.budget = budget
        self.used = Resources()
        self.pools = dict(pools or {})  # profile → its budget, for the profiles that have one
        self.pool_used: dict[str, Resources] = {}
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

    def pool_free(self, pool: str) -> Resources | None:
        """The room left in `pool`; None when it has no budget of its own."""
        if pool not in self.pools:
            return None
        return self.pools[pool] - self.pool_used.get(pool, Resources())

    def _fits_pool(self, request: Resources, pool: str) -> bool:
        free = self.pool_free(pool)
        return free is None or request.fits_in(free)

    def _claims(self, waiter: _Waiter, now: float) -> bool:
        """Whether a waiter has waited long enough to hold room back from newcomers: only
        for room of the executor's, not while its own pool is what is full."""
        return now - waiter.since >= BACKFILL_SECONDS and self._fits_pool(waiter.request, waiter.pool)

    def offered(self) -> Resources:
        """What newcomers may take: the free room, less what long-waiting processes need."""
        now = self._clock()
        held = Resources()
        for waiter in self._waiters:
            if self._claims(waiter, now):
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

    def _take(self, request: Resources, pool: str) -> None:
        self.used = self.used + request
        if pool:
            self.pool_used[pool] = self.pool_used.get(pool, Resources()) + request

    def try_reserve(self, request: Resources, pool: str = "") -> bool:
        """Hold `request` now if it fits in what newcomers are offered (and in its pool)."""
        if not (request.fits_in(self.offered()) and self._fits_pool(request, pool)):
            return False
        self._take(request, pool)
        self._changed()
        return True

    def hold(self, request: Resources, pool: str = "") -> None:
        """Hold `request` whether it fits or not: an adopted Job already runs."""
        self._take(request, pool)
        self._changed()

    async def reserve(self, request: Resources, pool: str = "") -> None:
        """Hold `request`, waiting in line for room. The caller checks `request.over(budget)` first."""
        if self.try_reserve(request, pool):
            return
        waiter = _Waiter(request, self._clock(), asyncio.get_running_loop().create_future(), pool)
        self._waiters.append(waiter)
        self._changed()  # what is offered to newcomers may shrink once it has waited long
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.granted.done() and not waiter.granted.cancelled():
                self.release(request, pool)  # granted just as it was cancelled: give it back
            raise

    def release(self, request: Resources, pool: str = "") -> None:
        self.used = self.used - request
        if pool:
            self.pool_used[pool] = self.pool_used[pool] - request
        self._grant()
        self._changed()

    def set_budget(self, budget: Resources, pools: Mapping[str, Resources] | None = None) -> None:
        self.budget = budget
        self.pools = dict(pools or {})
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
            if waiter.request.fits_in(self.free - blocked) and self._fits_pool(waiter.request, waiter.pool):
                self._waiters.remove(waiter)
                self._take(waiter.request, waiter.pool)
                waiter.granted.set_result(None)
            elif self._claims(waiter, now):
                blocked = blocked + waiter.request

    def _changed(self) -> None:
        for event in self._listeners:
            event.set()
