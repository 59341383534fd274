"""Demand: how many WAITING processes in Colonies this executor could take, polled at a
bounded rate, for autoscalers (a Prometheus gauge, `status.waiting`).

One `getprocessesmsg` (WAITING, our executor type, at most `PAGE`) per poll. The server
filters only by executor type, so the listed processes are filtered here the way its
assign matches them: not waiting for workflow parents, `executornames` empty or naming
this executor (or `*`), `locationname` empty or ours (case-insensitively). cpu and memory
are not filtered: a process too big for the free room now is still demand.

The server lists at most `PAGE` processes, oldest priority first, and has no offset to page
with: when it lists that many, `capped` is set and the count is a lower bound (a count of
100 means "100 or more").

A failed poll keeps the last count and marks it `stale`; the poller never raises, so it
never takes the executor down with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.colonies.models import Process, ProcessState
from colonies_operator.config.executor import MIN_WAITING_POLL_SECONDS as MIN_POLL_SECONDS

log = logging.getLogger(__name__)

PAGE = 100               # the server's most per getprocessesmsg


@dataclass(frozen=True)
class Waiting:
    count: int      # WAITING processes this executor could take, among those listed
    capped: bool    # the server listed its most: there may be more than `count`
    stale: bool     # the last poll failed: `count` is from an earlier one


def could_take(process: Process, executor_name: str, location: str) -> bool:
    """Whether Colonies' assign would give `process` (of our type) to this executor."""
    conditions = process.spec.conditions
    if process.waitforparents:
        return False
    names = conditions.executornames
    if names and executor_name not in names and "*" not in names:
        return False
    return not conditions.locationname or conditions.locationname.lower() == location.lower()


class Demand:
    def __init__(self, colonies: ColoniesClient, colony: str, executor_type: str, executor_name: str,
                 location: str = "", *, interval: float = 10.0, on_change: Callable[[], None] = lambda: None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.colonies = colonies
        self.colony, self.executor_type = colony, executor_type
        self.executor_name, self.location = executor_name, location
        self.waiting: Waiting | None = None  # None until a poll has answered
        self.polls = 0
        self._on_change = on_change
        self._sleep = sleep
        self.interval = 0.0
        self.set_interval(interval)

    def set_interval(self, seconds: float) -> None:
        """Poll every `seconds` (never more often than MIN_POLL_SECONDS); 0 stops polling and
        forgets the count, which would only grow old."""
        self.interval = max(seconds, MIN_POLL_SECONDS) if seconds > 0 else 0.0
        if not self.interval and self.waiting is not None:
            self._set(None)

    async def run(self) -> None:
        """Poll, then sleep `interval`, until cancelled: polls are at least `interval` apart."""
        while True:
            if self.interval:
                await self.poll_once()
            await self._sleep(self.interval or MIN_POLL_SECONDS)

    async def poll_once(self) -> None:
        self.polls += 1
        try:
            listed = await self.colonies.get_processes(self.colony, ProcessState.WAITING,
                                                       executor_type=self.executor_type, count=PAGE)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Colonies away, or a reply we cannot read: keep the last count
            log.info("polling the WAITING processes of %s failed: %s", self.executor_type, exc)
            if self.waiting is not None and not self.waiting.stale:
                self._set(Waiting(self.waiting.count, self.waiting.capped, stale=True))
            return
        count = sum(could_take(p, self.executor_name, self.location) for p in listed)
        self._set(Waiting(count, capped=len(listed) >= PAGE, stale=False))

    def _set(self, waiting: Waiting | None) -> None:
        changed = waiting != self.waiting
        self.waiting = waiting
        if changed:
            self._on_change()
