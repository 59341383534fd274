"""A process handed over while its submission was still being stored is read once more.

Colonies v1.9.12 stores a submission in two statements: the process row, then its env as
attributes (pkg/database/postgresql/processes.go, AddProcess). An assign that runs between
the two hands the process over with no env at all, and a program run without the variables
it was given does the wrong thing quietly. Seen in the test stack as a pod that ran
`echo hello` instead of what its env asked for, about once in a thousand processes.

The env is one INSERT, so a process that arrives with any env has all of it. One that arrives
with none, assigned within `settle` seconds of its submission (both times are the server's),
may be in that gap: it is read again once `settle` has passed since its submission, before
its Job is built. A process assigned later than that, or with env, costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from colonies_operator.colonies.models import Process, same_instant


def wait_before_second_look(process: Process, settle: float, since_assigned: float) -> float | None:
    """Seconds to wait before reading `process` again, or None when it needs no second look.

    `since_assigned`: seconds (on our clock) since the assign's answer arrived."""
    if settle <= 0 or process.spec.raw.get("env") or not process.submissiontime or not process.starttime:
        return None
    gap = (process.starttime - process.submissiontime).total_seconds()
    if not 0 <= gap < settle:
        return None
    return max(0.0, settle - gap - since_assigned)


async def settled(process: Process, read: Callable[[], Awaitable[Process]], settle: float,
                  assigned_at: float | None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Process:
    """`process` as fully stored: read again if it may have come before its env, else as is.

    A read that shows another assignment (the process was re-queued meanwhile) is not taken:
    fencing deals with that, and the env of one submission never changes."""
    if assigned_at is None:  # adopted: its Job was built from a process read long ago
        return process
    wait = wait_before_second_look(process, settle, time.monotonic() - assigned_at)
    if wait is None:
        return process
    await sleep(wait)
    again = await read()
    if again.spec.raw.get("env") and same_instant(again.starttime, process.starttime):
        return again
    return process
