"""Noticing that a process stopped being ours (cancelled, unassigned after its maxexectime,
given to another executor, or re-queued and given back to us as a new assignment), and
finding processes that are ours with nobody running them (orphans).

A cancel is heard within milliseconds through a `/pubsub` subscription to processes of our
executor type entering CANCELLED. Everything else comes from one `getprocessesmsg`
(RUNNING, our executor type, oldest first) per poll interval, whatever the number in
flight; an in-flight process missing from it, older than the newest listed, is read
individually (those are real changes, not polling): WAITING with a higher retries count
was unassigned after its maxexectime, WAITING with the same count was re-queued (its
executor was removed). Exact while at most 100 processes of the type run (the server's page
size); above that the newer ones rely on the 403 that any later report gets.

Why no subscription to WAITING: the server wakes exactly one general listener per event of
a type and state, round-robin, and an assign long poll is such a listener: a WAITING
subscription would take every other submission's wake-up from the executor's own long
poll, which would then sleep to its timeout. (And its unassign events carry the process as
it was before the unassign, retries not yet counted.) With several executors of one type,
each cancel wakes only one of their subscriptions; the others learn at the next poll.

The same list shows orphans: RUNNING on our executor id, with no supervisor (a crash
between the assign reply and the Job create, a lost assign reply). One seen in two polls in
a row (or at start, before anything is assigned) is handed to `on_orphan`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.colonies.models import Process, ProcessState, same_instant

log = logging.getLogger(__name__)

SUBSCRIPTION_SECONDS = 300
POLL_SECONDS = 10.0
SOON_SECONDS = 1.0  # `look_soon`: two polls this far apart (an orphan is one seen in two in a row)
PAGE = 100

Fence = Callable[[str, str], None]  # (process id, reason)


@dataclass(frozen=True)
class Attempt:
    retries: int                    # process.retries when it was assigned to us
    assigned_at: datetime | None    # the server's start time of this assignment


def lost_reason(process: Process, executor_id: str, attempt: Attempt) -> str | None:
    """Why `process` is no longer ours to run, or None while it still is (or cannot be told)."""
    if process.state is ProcessState.CANCELLED:
        return "cancelled"
    if process.state is ProcessState.WAITING:
        if process.retries > attempt.retries:
            return "unassigned by Colonies (maxexectime passed); it waits for a new attempt"
        return None  # an event from its submission, older than our assignment
    if process.state is ProcessState.RUNNING:
        if process.assignedexecutorid != executor_id:
            return "assigned to another executor"
        if attempt.assigned_at is not None and process.starttime is not None and not same_instant(
                process.starttime, attempt.assigned_at):
            return "re-queued and assigned to this executor again, as a new assignment"
    if process.state in (ProcessState.SUCCESS, ProcessState.FAILED):
        return f"already closed as {process.state.name}"
    return None


class Fencing:
    def __init__(self, colonies: ColoniesClient, colony: str, executor_type: str,
                 in_flight: Callable[[], dict[str, Attempt]], fence: Fence,
                 attempt_of: Callable[[str], Attempt | None],
                 on_orphan: Callable[[Process], None] = lambda process: None) -> None:
        self.colonies = colonies
        self.colony = colony
        self.executor_type = executor_type
        self._in_flight = in_flight  # process id → the attempt we run
        # one process's attempt: every event of our executor type is checked, thousands while
        # a backlog is submitted, so this must not build the whole map each time
        self._attempt_of = attempt_of
        self._fence = fence
        self._on_orphan = on_orphan
        self._suspects: set[str] = set()      # orphans seen in the last poll
        self._soon = 0                        # quick polls still to make
        self._woken = asyncio.Event()
        self.polls = 0

    def look_soon(self) -> None:
        """An assign's answer may have been lost (its long poll was ended early): poll twice,
        `SOON_SECONDS` apart, so a process Colonies gave us meanwhile runs within seconds."""
        self._soon = 2
        self._woken.set()

    async def run(self) -> None:
        await asyncio.gather(self._subscribe(ProcessState.CANCELLED), self._poll())

    def check(self, process: Process, *, fresh: bool = False) -> None:
        """Fence the process if it is no longer ours. `fresh`: read just now, not an event
        (a fresh WAITING with the retries count we run means it went back to the queue)."""
        attempt = self._attempt_of(process.processid)
        if attempt is None:
            return
        reason = lost_reason(process, self.colonies.id, attempt)
        if reason is None and fresh and process.state is ProcessState.WAITING:
            reason = "returned to the queue by Colonies (its executor was removed)"
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
            if self._soon:
                self._soon -= 1
                await asyncio.sleep(SOON_SECONDS)
            else:
                self._woken.clear()
                try:
                    await asyncio.wait_for(self._woken.wait(), POLL_SECONDS)
                    continue  # asked to look soon
                except TimeoutError:
                    pass
            try:
                await self.poll_once()
            except errors.ColoniesError as exc:
                log.info("fencing poll failed: %s", exc)

    async def poll_once(self, *, at_start: bool = False) -> None:
        """One look at what runs: fence what is no longer ours, hand over orphans."""
        self.polls += 1
        in_flight = self._in_flight()
        running = await self.colonies.get_processes(self.colony, ProcessState.RUNNING,
                                                    executor_type=self.executor_type, count=PAGE)
        listed = {p.processid: p for p in running}
        suspects = set()
        for process in running:
            if process.processid in in_flight:
                self.check(process, fresh=True)
            elif process.assignedexecutorid == self.colonies.id and self._attempt_of(process.processid) is None:
                suspects.add(process.processid)
                if at_start or process.processid in self._suspects:
                    self._on_orphan(process)
        self._suspects = suspects
        newest = max((p.starttime for p in running if p.starttime), default=None)
        for pid, attempt in in_flight.items():
            if pid in listed:
                continue
            assigned = attempt.assigned_at
            if len(running) >= PAGE and (assigned is None or newest is None or assigned > newest):
                continue  # beyond the page: cannot tell from this list
            try:
                self.check(await self.colonies.get_process(pid), fresh=True)
            except errors.NotFound:
                self._fence(pid, "no longer exists in Colonies")
