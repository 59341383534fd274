"""Noticing that a process stopped being ours: cancelled, unassigned after its
maxexectime, or assigned to another executor.

Primary: two `/pubsub` subscriptions per executor (processes of our executor type entering
CANCELLED and WAITING) tell within milliseconds. Fallback, in case a subscription is down:
one `getprocessesmsg` (RUNNING, our executor type, oldest first) per poll interval, whatever
the number of processes in flight; an in-flight process missing from it, older than the
newest listed, is looked at individually (those are real changes, not polling). Exact while
at most 100 processes of the type run (the server's page size); above that the newer ones
rely on the subscriptions and on the 403 that any later report gets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.colonies.models import Process, ProcessState

log = logging.getLogger(__name__)

SUBSCRIPTION_SECONDS = 300
POLL_SECONDS = 30.0
PAGE = 100

Fence = Callable[[str, str], None]  # (process id, reason)


@dataclass(frozen=True)
class Attempt:
    retries: int                    # process.retries when it was assigned to us
    assigned_at: datetime | None    # the server's start time of this attempt


def lost_reason(process: Process, executor_id: str, attempt: Attempt) -> str | None:
    """Why `process` is no longer ours to run, or None while it still is."""
    if process.state is ProcessState.CANCELLED:
        return "cancelled"
    if process.state is ProcessState.WAITING:
        # a late event from its submission says WAITING too, but with the same retries
        if process.retries > attempt.retries:
            return "unassigned by Colonies (maxexectime passed); it waits for a new attempt"
        return None
    if process.state is ProcessState.RUNNING and process.assignedexecutorid != executor_id:
        return "assigned to another executor"
    if process.state in (ProcessState.SUCCESS, ProcessState.FAILED):
        return f"already closed as {process.state.name}"
    return None


class Fencing:
    def __init__(self, colonies: ColoniesClient, colony: str, executor_type: str,
                 in_flight: Callable[[], dict[str, Attempt]], fence: Fence,
                 attempt_of: Callable[[str], Attempt | None]) -> None:
        self.colonies = colonies
        self.colony = colony
        self.executor_type = executor_type
        self._in_flight = in_flight  # process id → the attempt we run
        # one process's attempt: every event of our executor type is checked, thousands while
        # a backlog is submitted, so this must not build the whole map each time
        self._attempt_of = attempt_of
        self._fence = fence
        self.polls = 0

    async def run(self) -> None:
        await asyncio.gather(self._subscribe(ProcessState.CANCELLED), self._subscribe(ProcessState.WAITING),
                             self._poll())

    def check(self, process: Process) -> None:
        attempt = self._attempt_of(process.processid)
        if attempt is not None:
            reason = lost_reason(process, self.colonies.id, attempt)
            if reason:
                self._fence(process.processid, reason)

    async def _subscribe(self, state: ProcessState) -> None:
        delay = 1.0
        while True:
            try:
                async for process in self.colonies.subscribe_processes(
                        self.colony, self.executor_type, state, timeout=SUBSCRIPTION_SECONDS):
                    self.check(process)
                delay = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server restarting, a dropped socket: subscribe again
                log.info("subscription to %s processes failed (%s); again in %.0fs", state.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.poll_once()
            except errors.ColoniesError as exc:
                log.info("fencing poll failed: %s", exc)

    async def poll_once(self) -> None:
        in_flight = self._in_flight()
        if not in_flight:
            return
        self.polls += 1
        running = await self.colonies.get_processes(self.colony, ProcessState.RUNNING,
                                                    executor_type=self.executor_type, count=PAGE)
        listed = {p.processid: p for p in running}
        for process in running:
            self.check(process)
        newest = max((p.starttime for p in running if p.starttime), default=None)
        for pid, attempt in in_flight.items():
            if pid in listed:
                continue
            assigned = attempt.assigned_at
            if len(running) >= PAGE and (assigned is None or newest is None or assigned > newest):
                continue  # beyond the page: cannot tell from this list
            try:
                self.check(await self.colonies.get_process(pid))
            except errors.NotFound:
                self._fence(pid, "no longer exists in Colonies")
