"""The executor's resource budget and what its live Jobs hold of it.

Assign asks Colonies only for what is free (`availablecpu`/`availablemem`), but Colonies
matches a process's per-container cpu/mem, not its total (nodes × containers), and never
GPUs; so a process is admitted here too, before its Job is created, and waits for room
when its total does not fit yet.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


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


class Capacity:
    """Budget minus held reservations; waiters wake whenever something is released."""

    def __init__(self, budget: Resources) -> None:
        self.budget = budget
        self.used = Resources()
        self._changed = asyncio.Condition()

    @property
    def free(self) -> Resources:
        return self.budget - self.used

    def room_to_assign(self) -> bool:
        """Whether asking Colonies for more work makes sense now."""
        free = self.free
        if free.jobs <= 0 or free.cpu_millis <= 0 or free.memory_bytes <= 0:
            return False
        return self.budget.gpus == 0 or free.gpus > 0  # GPU executors assign only with a GPU free

    async def wait_for_room(self) -> None:
        async with self._changed:
            await self._changed.wait_for(self.room_to_assign)

    def try_reserve(self, request: Resources) -> bool:
        if not request.fits_in(self.free):
            return False
        self.used = self.used + request
        return True

    async def reserve(self, request: Resources) -> None:
        """Hold `request`, waiting for room. The caller checks `request.over(budget)` first."""
        async with self._changed:
            await self._changed.wait_for(lambda: request.fits_in(self.free))
            self.used = self.used + request

    async def release(self, request: Resources) -> None:
        async with self._changed:
            self.used = self.used - request
            self._changed.notify_all()

    async def set_budget(self, budget: Resources) -> None:
        async with self._changed:
            self.budget = budget
            self._changed.notify_all()
